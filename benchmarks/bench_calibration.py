"""Calibration of the rating (and label) contrasts on null studies from two generators, with power
beside R's clmm on the same alternative studies.

Generators: the project's (analysis/simulate.py, matched layout, 60 participants × 80 sources,
Latin square) and benchmarks/independent_generator.py (48 × 64, random balanced permutations,
image variance above participant variance, probit ratings on a 5-point scale, lost answers and
early-ended sessions). Every study runs the report's primary path (analysis.calibration), so the
rates are those of the report's p-values.

quick: 100 null studies per generator, 50 alternative, no clmm; full: 500 null (MC SE 1 point at 5 %), 100 alternative,
clmm on the first 6 alternative studies of each generator, in a thread beside the Python fits
(clmm with crossed random effects takes 30–100 s per fit on these shared cores). Target (issue 17): every primary rating contrast
rejects a true null in 3.1–6.9 % of ≥ 500 studies.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor

import pandas as pd

from analysis.calibration import primary_tests, rejection_band, summarise
from analysis.inference import detect_layout
from analysis.rcheck import fit_in_r, r_available
from analysis.simulate import ALTERNATIVE, NULL, simulate_answers
from benchmarks import independent_generator as independent
from benchmarks.results import Entry, write_section

QUICK_TIER = False  # minutes of model fits; `--only calibration` runs it
TIERS = {"quick": {"null": 100, "alternative": 50, "clmm": 0}, "full": {"null": 500, "alternative": 100, "clmm": 6}}
GENERATORS = {
    "project": lambda null, seed: simulate_answers("matched", 60, 80, NULL if null else ALTERNATIVE, seed),
    "independent": lambda null, seed: independent.study(independent.NULL_WORLD if null else independent.ALTERNATIVE_WORLD, seed=seed),
}
WORKERS = 2


def one_study(job: tuple[str, bool, int]) -> list[dict[str, object]]:
    generator, null, seed = job
    answers = GENERATORS[generator](null, seed)
    return [{"generator": generator, "seed": seed, "kind": "primary", "test": f"{r.outcome}: {r.contrast}", "p": r.p}
            for r in primary_tests(answers).itertuples()]


def pvalues(generator: str, null: bool, studies: int) -> pd.DataFrame:
    jobs = [(generator, null, seed) for seed in range(studies)]
    with ProcessPoolExecutor(WORKERS) as pool:
        rows = [row for rows in pool.map(one_study, jobs, chunksize=max(1, studies // (4 * WORKERS))) for row in rows]
    return pd.DataFrame(rows)


def clmm_power(generator: str, studies: int) -> tuple[float, float] | None:
    """clmm's rejection rate of gradreg − normal on the first `studies` alternative studies, and seconds per fit."""
    if studies == 0 or not r_available():
        return None
    stacked = pd.concat([GENERATORS[generator](False, s).assign(replicate=s) for s in range(studies)])
    fixed = fit_in_r(stacked, detect_layout(stacked[stacked["replicate"] == 0]), ("rating",), timeout=3600)
    gradreg = fixed[fixed["condition"] == "gradreg"]
    return float((gradreg["p"] < 0.05).mean()), float(gradreg["seconds"].mean())


def calibration_entries(cfg: dict[str, int], low: float, high: float, clmm: dict[str, Future]) -> list[Entry]:
    """Null rejection rates per generator and contrast, and rating power beside clmm's."""
    n, entries, alternative = cfg["null"], [], {}
    for generator in GENERATORS:
        null = summarise(pvalues(generator, True, n))
        for row in null.itertuples():
            inside = "inside" if low <= row.rejection_rate <= high else "OUTSIDE"
            target = f"{low:.1%}–{high:.1%} ({n} studies)" if row.test.startswith("rating") else "— (labels: information)"
            entries.append(Entry(f"{generator} generator, null rejection rate, {row.test}",
                                 f"{row.rejection_rate:.3f} (MC SE {row.mc_se:.3f}; KS uniform p = {row.ks_uniform_p:.2g}); {inside}",
                                 target=target))
        alternative[generator] = pvalues(generator, False, cfg["alternative"])
    for generator in GENERATORS:  # clmm's results last: its fits run while the pool works through both generators
        ours = alternative[generator].query("test == 'rating: gradreg − normal'").sort_values("seed")
        power = float((ours["p"] < 0.05).mean())
        r = clmm[generator].result()
        if r is None:
            entries.append(Entry(f"{generator} generator, power, rating: gradreg − normal ({cfg['alternative']} studies)", f"{power:.3f}",
                                 peer="R clmm: not run in this tier" if cfg["clmm"] == 0 else "R not installed"))
        else:
            same = float((ours["p"].iloc[: cfg["clmm"]] < 0.05).mean())
            entries.append(Entry(f"{generator} generator, power, rating: gradreg − normal, first {cfg['clmm']} studies "
                                 f"(all {cfg['alternative']}: {power:.3f})", f"{same:.3f}",
                                 peer=f"R clmm {r[0]:.3f} on the same {cfg['clmm']} studies ({r[1]:.0f} s per fit)",
                                 ratio=f"Δ = {same - r[0]:+.3f}"))
    return entries


def run(tier: str) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    cfg = TIERS[tier]
    n = cfg["null"]
    low, high = (0.031, 0.069) if n >= 500 else rejection_band(n)
    started = time.perf_counter()
    with ThreadPoolExecutor(1) as r_thread:  # one Rscript at a time, beside the process pool
        clmm = {g: r_thread.submit(clmm_power, g, cfg["clmm"]) for g in GENERATORS}
        entries = calibration_entries(cfg, low, high, clmm)
    seconds = time.perf_counter() - started
    studies = 2 * (n + cfg["alternative"])
    entries.append(Entry(f"wall seconds per study (both primary models, {WORKERS} workers; clmm beside them)", f"{seconds / studies:.2f}"))
    write_section(f"analysis: calibration of the rating tests, two generators ({n} null studies each)", entries,
                  command=f"nice -n 10 python -m benchmarks --only calibration --tier {tier}",
                  notes="Primary path of the report (analysis.calibration.primary_tests): two-way cluster-robust "
                        "logistic GLM / proportional-odds model over participant × source digit, jackknife-type "
                        "(leave-one-cluster-out) meats, t(G − 1) reference, unadjusted p of single contrasts. "
                        "Project generator: analysis/simulate.py, matched layout, 60 participants × 80 sources, Latin square. "
                        "Independent generator: benchmarks/independent_generator.py, 48 × 64, random balanced permutations, "
                        "SDs participant 0.45 < source 0.75 (+ image 0.45, participant × condition 0.2), probit 5-point ratings, "
                        "3 % answers lost, 10 % of sessions ended early. Before (statsmodels' CGM covariance, G/(G − 1)-scaled "
                        "raw meats), the first 300 independent null studies rejected at 3.3 / 7.0 / 6.7 % (rating: adversarial / "
                        "distilled / gradreg − normal), t statistics' SD 0.98–1.07. Alternative: gradreg − normal +0.3 latent logit "
                        "(project) / +0.18 probit (independent). clmm (ordinal, crossed random intercepts for participant, "
                        f"source and image) ran only on the first {cfg['clmm']} alternative studies of each generator (seconds "
                        "per fit in the peer column, on 2 shared cores): too few to tell the two tests' power apart.")
