"""Monte-Carlo checks of the primary tests on simulated studies: type-I error, power, negative control.

Every replicate runs exactly the report's primary path (layout detection, model fit, planned
contrasts, Holm), so a calibration failure means the report's p-values are wrong. The negative
control is the participant-aggregated paired t — the fixed-image analysis — which must fail.
Replicates run in a process pool; each is seeded, so results do not depend on the worker count.
"""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from functools import partial

import numpy as np
import pandas as pd
from scipy import stats

from analysis.inference import OUTCOMES, detect_layout, fit_model, contrast_table, planned_contrasts
from analysis.robustness import paired_t, participant_means
from analysis.simulate import NULL, Effects, simulate_answers

PRIMARY = [o for o in OUTCOMES if o.name in ("target", "rating")]


def primary_tests(answers: pd.DataFrame) -> pd.DataFrame:
    """The report's primary family per outcome: each defended condition vs normal, Holm-adjusted."""
    layout = detect_layout(answers)
    tables = []
    for outcome in PRIMARY:
        fit = fit_model(answers, outcome, layout)
        tables.append(contrast_table(fit, [k for k in planned_contrasts(fit.conditions) if k.family == "primary"]))
    return pd.concat(tables, ignore_index=True)


def replicate(seed: int, layout: str, participants: int, sources: int, effects: Effects) -> list[dict[str, object]]:
    answers = simulate_answers(layout, participants, sources, effects, seed)
    rows = [{"seed": seed, "test": f"{r.outcome}: {r.contrast}", "kind": "primary", "p": r.p, "p_holm": r.p_holm}
            for r in primary_tests(answers).itertuples()]
    for outcome in PRIMARY:  # negative control: average over images, then paired t (images fixed)
        wide = participant_means(answers, outcome.name)
        p = paired_t(wide["gradreg"], wide["normal"])["p"]
        rows.append({"seed": seed, "test": f"{outcome.name}: gradreg − normal", "kind": "participant-aggregated paired t",
                     "p": p, "p_holm": np.nan})
    return rows


def negative_control(studies: int, layout: str = "nested", participants: int = 60, sources: int = 80,
                     effects: Effects = NULL, first_seed: int = 0, alpha: float = 0.05) -> dict[str, float]:
    """Rejection rate of the participant-aggregated paired t (gradreg − normal) per primary outcome.

    In the nested layout it must be far above α: if not, the generator has lost its image variance
    and a passing calibration would prove nothing. (In the matched layout counterbalancing cancels
    the source effects and the inflation is small, ~0.08.)"""
    rejections = {o.name: 0 for o in PRIMARY}
    for seed in range(first_seed, first_seed + studies):
        answers = simulate_answers(layout, participants, sources, effects, seed)
        for outcome in rejections:
            wide = participant_means(answers, outcome)
            rejections[outcome] += paired_t(wide["gradreg"], wide["normal"])["p"] < alpha
    return {outcome: count / studies for outcome, count in rejections.items()}


def run_replicates(studies: int, layout: str = "matched", participants: int = 60, sources: int = 80,
                   effects: Effects = NULL, first_seed: int = 0, workers: int | None = None) -> pd.DataFrame:
    """One row per study × test with its p-value."""
    work = partial(replicate, layout=layout, participants=participants, sources=sources, effects=effects)
    seeds = range(first_seed, first_seed + studies)
    workers = workers or min(os.cpu_count() or 1, 4)
    if workers == 1:
        results = map(work, seeds)
    else:
        with ProcessPoolExecutor(workers) as pool:
            results = list(pool.map(work, seeds, chunksize=max(1, studies // (4 * workers))))
    return pd.DataFrame([row for rows in results for row in rows])


def rejection_band(studies: int, alpha: float = 0.05, level: float = 0.95) -> tuple[float, float]:
    """Central binomial interval of the rejection rate of a calibrated test over `studies` replicates."""
    low, high = stats.binom.interval(level, studies, alpha)
    return low / studies, high / studies


def summarise(pvalues: pd.DataFrame, alpha: float = 0.05, column: str = "p") -> pd.DataFrame:
    """Rejection rate, its Monte-Carlo SE and a Kolmogorov–Smirnov test of uniform p-values."""
    rows = []
    for (kind, test), group in pvalues.groupby(["kind", "test"], sort=False):
        p = group[column].to_numpy(float)
        rate = float(np.mean(p < alpha))
        rows.append({"kind": kind, "test": test, "studies": len(p), "rejection_rate": rate,
                     "mc_se": float(np.sqrt(rate * (1 - rate) / len(p))), "ks_uniform_p": float(stats.kstest(p, "uniform").pvalue)})
    return pd.DataFrame(rows)
