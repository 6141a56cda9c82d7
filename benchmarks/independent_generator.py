"""A second generator of null and alternative studies, written for the calibration benchmark apart
from analysis/simulate.py (which copies the research note's reference generator), so that the
primary tests are not checked only on the data they were tuned on.

What differs on purpose: each participant gets a fresh random balanced permutation of conditions
over the source digits (no Latin square, so source effects do not cancel within lists); image-side
variance is larger than participant variance; ratings come from a probit latent variable on a
5-point scale with uneven cut points (the model fits a logit); labels from a multinomial choice
among target, true and other digits; some answers are lost at random and some sessions end early.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

GENERATED_CONDITIONS = ("normal", "adversarial", "gradreg", "distilled")
CUTS_5 = np.array([-1.6, -0.5, 0.2, 1.3])  # probit cut points of a 1..5 rating


@dataclass(frozen=True)
class World:
    """Condition effects (GENERATED_CONDITIONS order; latent probit scale for ratings, log-odds for the target
    label) and standard deviations of the random effects."""

    rating: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0)
    target: tuple[float, ...] = (-1.2, -1.2, -1.2, -1.2)
    sd_participant: float = 0.45
    sd_source: float = 0.75
    sd_image: float = 0.45          # each attacked image within its source
    sd_participant_condition: float = 0.2
    lost_share: float = 0.03        # answers lost at random
    early_end_share: float = 0.1    # sessions that stop after a random share of their trials


NULL_WORLD = World()
# gradreg − normal: +0.18 probit (≈ +0.3 logit) on ratings, +0.5 log-odds on the target label.
ALTERNATIVE_WORLD = World(rating=(0.0, 0.0, 0.18, 0.0), target=(-1.2, -1.2, -0.7, -1.2))


def study(world: World, participants: int = 48, sources: int = 64, seed: int = 0) -> pd.DataFrame:
    """One study in the analysis's answer format (columns of `analysis.loading.answers_frame` that
    the primary path uses): a label row and a rating row per trial, minus the lost ones."""
    n_cond = len(GENERATED_CONDITIONS)
    if sources % n_cond:
        raise ValueError(f"sources must be a multiple of {n_cond} (got {sources})")
    rng = np.random.default_rng([seed, 2026])
    balanced = np.repeat(np.arange(n_cond), sources // n_cond)
    cond = np.concatenate([rng.permutation(balanced) for _ in range(participants)])
    part = np.repeat(np.arange(participants), sources)
    source = np.tile(np.arange(sources), participants)
    image = source * n_cond + cond

    def effects(scale: float) -> np.ndarray:
        return (scale * rng.normal(0, world.sd_participant, participants)[part]
                + scale * rng.normal(0, world.sd_source, sources)[source]
                + scale * rng.normal(0, world.sd_image, sources * n_cond)[image]
                + scale * rng.normal(0, world.sd_participant_condition, (participants, n_cond))[part, cond])

    latent = np.asarray(world.rating)[cond] + effects(1.0) + rng.normal(0, 1, len(part))
    rating = 1 + np.searchsorted(CUTS_5, latent)
    # Label choice: target vs true vs one of the other eight digits, multinomial logit (logistic scale ≈ 1.7 × probit).
    eta_target = np.asarray(world.target)[cond] + effects(1.7)
    eta_true = 0.8 + effects(1.7)
    weights = np.column_stack([np.exp(eta_target), np.exp(eta_true), np.ones(len(part))])
    choice = (rng.random(len(part))[:, None] > np.cumsum(weights / weights.sum(1, keepdims=True), 1)).sum(1)

    trials = pd.DataFrame({
        "participant_id": [f"ind-p{p:03d}" for p in part],
        "stimulus_id": [f"ind-s{i:04d}" for i in image],
        "source_id": [f"ind-src{s:03d}" for s in source],
        "condition": np.asarray(GENERATED_CONDITIONS)[cond],
        "norm_l2": np.round(rng.gamma(9.0, 0.6, sources * n_cond)[image], 3),
        "order": np.concatenate([rng.permutation(sources) for _ in range(participants)]),
    })
    labels = trials.assign(task="label", target=(choice == 0).astype(float), true=(choice == 1).astype(float), rating=np.nan)
    ratings = trials.assign(task="rate", target=np.nan, true=np.nan, rating=rating.astype(float))
    answers = pd.concat([labels, ratings], ignore_index=True)
    # Sessions that end early keep only their first trials; other answers are lost one by one.
    stops = rng.random(participants) < world.early_end_share
    kept_trials = np.where(stops, rng.integers(sources // 4, sources, participants), sources)
    part_index = answers["participant_id"].str[5:].astype(int).to_numpy()
    keep = (answers["order"].to_numpy() < kept_trials[part_index]) & (rng.random(len(answers)) >= world.lost_share)
    return answers.loc[keep].drop(columns="order").reset_index(drop=True)
