"""Simulation-based power over a grid of participant counts × source-image counts.

In crossed designs power is bounded by the number of images, not of participants (Westfall, Kenny
& Judd 2014): adding people shrinks only the participant part of the standard error. Each cell
simulates studies like the one at hand — its layout, the assumed smallest effect of interest for
every defended model vs normal, and variance components estimated from the data (labels) or the
research note's defaults — and runs the report's primary path, counting Holm-adjusted rejections.
"""
from __future__ import annotations

import argparse
import warnings
from dataclasses import replace

import numpy as np
import pandas as pd
from statsmodels.genmod.bayes_mixed_glm import BinomialBayesMixedGLM

from analysis.calibration import run_replicates
from analysis.html_report import Section
from analysis.inference import Layout
from analysis.simulate import SIMULATED_CONDITIONS, Effects
from analysis.tables import plain_table

MIN_PILOT_PARTICIPANTS, MIN_PILOT_UNITS = 10, 8


def label_variance_components(answers: pd.DataFrame, layout: Layout) -> dict[str, float] | None:
    """Participant and image-unit SDs of the target label on the logit scale from a pilot / bot run.

    Point estimates of the variational Bayes GLMM only: they are close to glmer's here, whereas its
    posterior SDs are far too small for inference, which is why this is the only use made of it."""
    data = answers.dropna(subset=["target"])
    data = data[data["condition"] != "clean"]
    if data["participant_id"].nunique() < MIN_PILOT_PARTICIPANTS or data[layout.unit].nunique() < MIN_PILOT_UNITS:
        return None
    model = BinomialBayesMixedGLM.from_formula("target ~ C(condition)", {"p": "0 + C(participant_id)", "u": f"0 + C({layout.unit})"}, data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = model.fit_vb()
    sd_p, sd_u = np.exp(result.vcp_mean)
    return {"sd_p": float(sd_p), "sd_i": float(sd_u)}


def assumed_effects(target_effect: float, rating_effect: float, estimated: dict[str, float] | None) -> Effects:
    """Every defended model differs from normal by the smallest effect of interest (conditional logit scale)."""
    base = Effects()
    b_target = tuple(base.b_target[0] + (0.0 if c == "normal" else target_effect) for c in SIMULATED_CONDITIONS)
    b_rating = tuple(base.b_rating[0] + (0.0 if c == "normal" else rating_effect) for c in SIMULATED_CONDITIONS)
    return replace(base, b_target=b_target, b_true=(base.b_true[0],) * len(SIMULATED_CONDITIONS), b_rating=b_rating, **(estimated or {}))


def power_grid(layout: str, participants: list[int], sources: list[int], effects: Effects, studies: int,
               seed: int = 0, alpha: float = 0.05) -> pd.DataFrame:
    """Share of studies in which each primary contrast is significant after Holm, per grid cell."""
    rows = []
    for n_p in participants:
        for n_s in sources:
            pvalues = run_replicates(studies, layout, n_p, n_s, effects, first_seed=seed)
            primary = pvalues[pvalues["kind"] == "primary"]
            for test, group in primary.groupby("test", sort=False):
                rows.append({"participants": n_p, "sources": n_s, "test": test, "power": float((group["p_holm"] < alpha).mean()),
                             "studies": len(group)})
    return pd.DataFrame(rows)


def binding_constraint(grid: pd.DataFrame) -> list[str]:
    """Per contrast: does adding sources or adding participants raise power more, across the grid?"""
    lines = []
    p_lo, p_hi, s_lo, s_hi = grid["participants"].min(), grid["participants"].max(), grid["sources"].min(), grid["sources"].max()
    for test, g in grid.groupby("test", sort=False):
        at = g.set_index(["participants", "sources"])["power"]
        gain_people, gain_images = at[(p_hi, s_hi)] - at[(p_lo, s_hi)], at[(p_hi, s_hi)] - at[(p_hi, s_lo)]
        noise = 2 * np.sqrt(2 * 0.25 / g["studies"].min())  # ~2 Monte-Carlo SEs of a difference of two rates
        if abs(gain_images - gain_people) < noise:
            verdict = "the grid cannot tell which binds (the difference is within Monte-Carlo error; simulate more studies)"
        else:
            verdict = ("the number of source images" if gain_images > gain_people else "the number of participants") + " is the binding constraint"
        lines.append(f"{test}: going from {p_lo} to {p_hi} participants adds {gain_people:+.2f} power, from {s_lo} to {s_hi} "
                     f"sources {gain_images:+.2f}; {verdict}.")
    return lines


def power_section(args: argparse.Namespace, answers: pd.DataFrame, layout: Layout) -> Section:
    if args.power_label_sds:
        sd_p, sd_i = (float(v) for v in args.power_label_sds.split(","))
        estimated, origin = {"sd_p": sd_p, "sd_i": sd_i}, f"label SDs as given (participant {sd_p:.2f}, image unit {sd_i:.2f})"
    else:
        estimated = label_variance_components(answers, layout)
        origin = (f"label SDs estimated from these data (participant {estimated['sd_p']:.2f}, image unit {estimated['sd_i']:.2f}; "
                  "variational GLMM point estimates)" if estimated else "label SDs from the research note's defaults (too little data to estimate)")
    effects = assumed_effects(args.power_target_effect, args.power_rating_effect, estimated)
    participants = [int(v) for v in args.power_participants.split(",")]
    sources = [int(v) for v in args.power_sources.split(",")]
    grid = power_grid(layout.name, participants, sources, effects, args.power_studies, args.seed)
    wide = grid.pivot_table(index=["participants", "sources"], columns="test", values="power", sort=False).reset_index()
    intro = (f"{args.power_studies} simulated {layout.name}-layout studies per cell. Assumed effect of every defended model vs normal: "
             f"{args.power_target_effect:+.2f} log-odds (target label), {args.power_rating_effect:+.2f} latent logits (rating); "
             f"{origin}; rating SDs participant {effects.sd_p_rating}, image {effects.sd_i_rating}. Power = share of studies in which "
             "the Holm-adjusted primary contrast is significant at .05.\n\n" + "\n".join(binding_constraint(grid)))
    return Section("Power", intro, [plain_table(wide, "power", "Simulated power per primary contrast", digits=2)])
