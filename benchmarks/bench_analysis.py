"""Calibration of the analysis's primary tests on simulated studies (matched layout, 60 participants,
80 source digits, 4 conditions): type-I error under the null, power under a known effect beside
R's glmer / clmm on the same replicates, the negative control, and the default report's run time.

quick: 100 null + 100 alternative studies (glmer on 30 of them); full: 500 + 500 (glmer on 100,
clmm on 20) plus 500 null studies in the nested layout. Target (issue 7): each primary test rejects
a true null in 3.1–6.9 % of 500 studies. Negative control: the participant-aggregated paired t on
nested-layout null studies must fail the band.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from analysis.calibration import negative_control, run_replicates, summarise
from analysis.inference import detect_layout
from analysis.rcheck import fit_in_r, r_available
from analysis.simulate import ALTERNATIVE, NULL, simulate, simulate_answers
from benchmarks.results import Entry, write_section

REPO = Path(__file__).resolve().parent.parent
TIERS = {"quick": {"studies": 100, "glmer": 30, "clmm": 0, "nested": False},
         "full": {"studies": 500, "glmer": 100, "clmm": 20, "nested": True}}
DESIGN = {"layout": "matched", "participants": 60, "sources": 80}


def r_power(studies: int, outcome: str) -> tuple[float, float] | None:
    """R's rejection rate (gradreg − normal, α = .05) on the first `studies` alternative replicates, and seconds per fit."""
    if studies == 0 or not r_available():
        return None
    stacked = pd.concat([simulate_answers(**DESIGN, effects=ALTERNATIVE, seed=s).assign(replicate=s) for s in range(studies)])
    fixed = fit_in_r(stacked, detect_layout(stacked[stacked["replicate"] == 0]), (outcome,), timeout=3600)
    gradreg = fixed[fixed["condition"] == "gradreg"]
    return float((gradreg["p"] < 0.05).mean()), float(gradreg["seconds"].mean())


def report_seconds() -> float:
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp, "responses.csv")
        simulate(**DESIGN, seed=123).to_csv(csv, index=False)
        started = time.perf_counter()
        subprocess.run([sys.executable, "analysis/report.py", str(csv), "--out", str(Path(tmp, "out"))], cwd=REPO, check=True,
                       capture_output=True)
        return time.perf_counter() - started


def run(tier: str) -> None:
    cfg = TIERS[tier]
    n = cfg["studies"]
    band = "3.1–6.9 % (500 studies)" if n >= 500 else "1–10 % (fast band)"
    started = time.perf_counter()
    null = summarise(run_replicates(n, effects=NULL, **DESIGN))
    null_seconds = time.perf_counter() - started
    alternative = run_replicates(n, effects=ALTERNATIVE, **DESIGN)
    entries = []
    for row in null.itertuples():
        target = band if row.kind == "primary" else "— (counterbalanced: small inflation expected)"
        entries.append(Entry(f"null rejection rate, {row.kind}, {row.test}", f"{row.rejection_rate:.3f} (MC SE {row.mc_se:.3f}; "
                             f"KS uniform p = {row.ks_uniform_p:.2g})", target=target))
    for outcome, rate in negative_control(n, "nested").items():
        entries.append(Entry(f"negative control, nested layout: participant-aggregated paired t, {outcome}: gradreg − normal",
                             f"{rate:.3f}", target="must fail the band (> 0.10)"))
    if cfg["nested"]:
        for row in summarise(run_replicates(n, "nested", 60, 80, NULL)).query("kind == 'primary'").itertuples():
            entries.append(Entry(f"null rejection rate, nested layout (20 images per condition), {row.test}",
                                 f"{row.rejection_rate:.3f} (MC SE {row.mc_se:.3f}; KS uniform p = {row.ks_uniform_p:.2g})",
                                 peer="reference simulation: glmer 0.070, two-way GLM 0.070", target="— (information)"))
    for outcome, label, r_studies in (("target", "glmer", cfg["glmer"]), ("rating", "clmm", cfg["clmm"])):
        test = f"{outcome}: gradreg − normal"
        ours = alternative[(alternative["kind"] == "primary") & (alternative["test"] == test)].sort_values("seed")
        power = float((ours["p"] < 0.05).mean())
        r = r_power(r_studies, outcome)
        if r is None:
            entries.append(Entry(f"power, {test} (+{0.5 if outcome == 'target' else 0.3} conditional logit)", f"{power:.3f}",
                                 peer=f"R {label}: not run in this tier" if r_studies == 0 else "R not installed"))
        else:
            same = float((ours["p"].iloc[:r_studies] < 0.05).mean())
            entries.append(Entry(f"power, {test}, first {r_studies} studies (all {n}: {power:.3f})", f"{same:.3f}",
                                 peer=f"R {label} {r[0]:.3f} ({r[1]:.1f} s per fit)", ratio=f"Δ = {same - r[0]:+.3f}",
                                 target="abs(Δ) ≤ 0.05"))
    entries.append(Entry("seconds per simulated study (both primary models, 2 workers)", f"{null_seconds / n:.2f}"))
    entries.append(Entry("default report, 60 participants × 80 sources × 4 conditions", f"{report_seconds():.1f} s", target="≤ 60 s"))
    # One section per tier (titled by its study count), so a quick run does not erase the full one.
    write_section(f"analysis: calibration of the primary tests ({n} studies)", entries, command=f"python -m benchmarks --only analysis --tier {tier}",
                  notes=f"Matched layout, {n} null studies (all conditions equal) and {n} alternative studies (gradreg − normal "
                        "= +0.5 logit for the target label, +0.3 for the latent rating), generator of "
                        "analysis/simulate.py (docs/analysis.md). Primary = two-way cluster-robust logistic GLM / proportional-odds "
                        "model (participant × source digit), t(G − 1) reference, unadjusted p of single contrasts. Negative control: "
                        "participant-aggregated paired t (images treated as fixed). Timings on a machine shared with other jobs.")
