"""Simulated studies with known effects: test data until real exports exist, calibration, power.

The random-number stream is fixed draw for draw (docs/analysis.md, "Oracles"), so `simulate_answers("nested", seed=1)` is the reference data set whose
lme4 / statsmodels numbers the oracle tests check. Labels come from a sequential logistic model
(target or not; among the rest, true class or other), ratings from a cumulative-logit latent
variable; random effects for participants, participant × condition, source digits and, in the
matched layout, the adversarial image within its source.

Two layouts: `matched` (the platform's default: every source digit is attacked against every
model; each participant sees each source once, conditions rotated by a Latin square) and
`nested` (each image made against one model; every participant sees every image).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd

# Generator order of the conditions (the reference generator: standard, adversarially trained, gradient-regularised, distilled).
SIMULATED_CONDITIONS = ("normal", "adversarial", "gradreg", "distilled")
THRESHOLDS_7 = np.array([-2.0, -1.0, -0.3, 0.3, 1.0, 2.0])  # latent cut points of the 1..7 rating
# Typical L2 norms of iterated-TGSM images per attacked model (the replicated paper: normal 4.3, gradreg 11.1).
MEAN_L2 = {"normal": 4.3, "adversarial": 6.0, "distilled": 5.0, "gradreg": 11.1, "gradreg-uniform": 10.0}


@dataclass(frozen=True)
class Effects:
    """Fixed effects per condition (in SIMULATED_CONDITIONS order) and random-effect SDs, logit scale."""

    b_target: tuple[float, ...] = (-1.5, -0.7, -1.0, -1.5)
    b_true: tuple[float, ...] = (0.3, -0.2, 0.0, 0.3)
    b_rating: tuple[float, ...] = (0.0, 0.5, 0.3, 0.0)
    sd_p: float = 0.8          # participant intercept, labels
    sd_i: float = 0.8          # source-digit (nested: image) intercept, labels
    sd_pslope: float = 0.3     # participant × condition
    sd_islope: float = 0.5     # image within source (matched layout only)
    sd_p_rating: float = 1.0
    sd_i_rating: float = 0.7

    def null(self) -> "Effects":
        """Same variances, no condition effect (every condition gets the first condition's value)."""
        return replace(self, b_target=(self.b_target[0],) * len(self.b_target),
                       b_true=(self.b_true[0],) * len(self.b_true), b_rating=(self.b_rating[0],) * len(self.b_rating))


ALTERNATIVE = Effects()  # gradreg − normal: +0.5 logit (target label), +0.3 latent logit (rating)
NULL = ALTERNATIVE.null()


def simulate_answers(layout: str = "matched", participants: int = 60, sources: int = 80,
                     effects: Effects = ALTERNATIVE, seed: int = 0) -> pd.DataFrame:
    """One simulated study in the analysis's answer format (see `analysis.loading.answers_frame`).

    `sources` is the number of source digits: in the matched layout each is attacked against all
    four models (4 × sources images, each participant sees every source once); in the nested layout
    it is the number of images, sources / 4 per condition, and every participant sees all of them.
    """
    n_cond = len(SIMULATED_CONDITIONS)
    if sources % n_cond:
        raise ValueError(f"sources must be a multiple of {n_cond} (got {sources})")
    rng = np.random.default_rng(seed)
    if layout == "nested":
        n_items = sources
        item_cond = np.repeat(np.arange(n_cond), sources // n_cond)
        part = np.repeat(np.arange(participants), n_items)
        item = np.tile(np.arange(n_items), participants)
        cond, source = item_cond[item], item
    elif layout == "matched":
        part = np.repeat(np.arange(participants), sources)
        source = np.tile(np.arange(sources), participants)
        cond = (source + part % n_cond) % n_cond  # Latin square: list = participant mod 4
        item = source * n_cond + cond
        n_items = sources * n_cond
        item_cond = np.arange(n_items) % n_cond
    else:
        raise ValueError(f"layout must be 'matched' or 'nested', not {layout!r}")

    def linear_predictor(b: tuple[float, ...], sd_p: float, sd_i: float) -> np.ndarray:
        u_p = rng.normal(0, sd_p, participants)
        u_pc = rng.normal(0, effects.sd_pslope, (participants, n_cond))
        u_src = rng.normal(0, sd_i, source.max() + 1)
        eta = np.asarray(b)[cond] + u_p[part] + u_pc[part, cond] + u_src[source]
        if layout == "matched":
            eta = eta + rng.normal(0, effects.sd_islope, n_items)[item]
        return eta

    eta_target = linear_predictor(effects.b_target, effects.sd_p, effects.sd_i)
    eta_true = linear_predictor(effects.b_true, effects.sd_p, effects.sd_i)
    is_target = rng.random(len(eta_target)) < 1 / (1 + np.exp(-eta_target))
    is_true = rng.random(len(eta_true)) < 1 / (1 + np.exp(-eta_true))
    eta_rating = linear_predictor(effects.b_rating, effects.sd_p_rating, effects.sd_i_rating)
    latent = eta_rating + rng.logistic(0, 1, len(eta_rating))
    rating = 1 + (latent[:, None] > THRESHOLDS_7[None, :]).sum(1)

    # Everything below uses its own stream so the draws above stay those the oracle values were computed on.
    extra = np.random.default_rng([seed, 7])
    true_label = source % 10
    target_label = (true_label + 1) % 10
    other_label = (true_label + 2 + extra.integers(0, 8, len(part))) % 10
    response_label = np.where(is_target, target_label, np.where(is_true, true_label, other_label))
    conditions = np.asarray(SIMULATED_CONDITIONS)[cond]
    item_l2 = np.array([MEAN_L2[c] for c in np.asarray(SIMULATED_CONDITIONS)[item_cond]])
    item_l2 = item_l2 * np.exp(extra.normal(0, 0.15, n_items))
    trials = pd.DataFrame({
        "participant_id": np.char.add("sim-p", np.char.zfill(part.astype(str), 4)),
        "stimulus_id": np.char.add(np.char.add(np.char.add("stim-", np.char.zfill(item.astype(str), 4)), "-"), conditions),
        "source_id": np.char.add("src-", np.char.zfill(source.astype(str), 4)),
        "condition": conditions,
        "norm_l2": item_l2[item].round(3),
        "true_label": true_label, "target_label": target_label,
    })
    labels = trials.assign(task="label", response_label=response_label, rating=np.nan,
                           rt_ms=np.exp(extra.normal(7.2, 0.4, len(part))).round(1))
    ratings = trials.assign(task="rate", response_label=np.nan, rating=rating.astype(float),
                            rt_ms=np.exp(extra.normal(7.4, 0.4, len(part))).round(1))
    answers = pd.concat([labels, ratings], ignore_index=True)
    answers["target"] = np.where(answers["task"] == "label", (answers["response_label"] == answers["target_label"]).astype(float), np.nan)
    answers["true"] = np.where(answers["task"] == "label", (answers["response_label"] == answers["true_label"]).astype(float), np.nan)
    answers.attrs.update(layout=layout, seed=seed, effects=asdict(effects), rating_min=1, rating_max=7)
    return answers


def to_responses(answers: pd.DataFrame, study_id: str = "sim") -> pd.DataFrame:
    """Expand simulated answers to full rows of the response contract (what an export would hold)."""
    rng = np.random.default_rng(answers.attrs.get("seed", 0))
    n = len(answers)
    # Randomised image order within each participant; each image's rating trial follows its label
    # trial (simulate_answers stacks all label rows, then the rating rows in the same order).
    key = np.tile(rng.random(n // 2), 2)
    slot = answers.assign(_key=key).groupby(["participant_id", "task"])["_key"].rank(method="first").astype(int) - 1
    order = 2 * slot + (answers["task"] == "rate").astype(int)
    start = pd.Timestamp("2026-11-25T09:00:00Z") + pd.to_timedelta(
        answers["participant_id"].factorize()[0] * 3600, unit="s")
    presented = start + pd.to_timedelta(order * 4, unit="s")
    responded = presented + pd.to_timedelta(answers["rt_ms"], unit="ms")
    stamp = "%Y-%m-%dT%H:%M:%S.%fZ"
    lists = answers.groupby("participant_id")["condition"].transform("first")
    return pd.DataFrame({
        "schema_version": "1.0", "study_id": study_id,
        "participant_id": answers["participant_id"],
        "session_id": answers["participant_id"].str.replace("sim-p", "sess-", regex=False),
        "assignment_list": "list-" + lists.astype(str),
        "trial_index": order, "block": "main", "task": answers["task"],
        "is_practice": False, "is_catch": False,
        "stimulus_id": answers["stimulus_id"], "source_id": answers["source_id"], "condition": answers["condition"],
        "attack": "itgsm", "true_label": answers["true_label"], "target_label": answers["target_label"],
        "norm_l0": (answers["norm_l2"] * 40).round().astype(int), "norm_l2": answers["norm_l2"],
        "norm_linf": np.minimum(1.0, answers["norm_l2"] / 20).round(3),
        "response_label": answers["response_label"].astype("Int64"),
        "response_rating": answers["rating"].astype("Int64"),
        "rating_min": answers.attrs.get("rating_min", 1), "rating_max": answers.attrs.get("rating_max", 7),
        "rt_ms": answers["rt_ms"],
        "presented_at": presented.dt.strftime(stamp), "responded_at": responded.dt.strftime(stamp),
        "received_at": (responded + pd.Timedelta(milliseconds=40)).dt.strftime(stamp),
        "session_state": "completed", "catch_failed": 0,
        "withdrawn": False, "is_bot": False, "is_pilot": False,
    })


def simulate(layout: str = "matched", participants: int = 60, sources: int = 80,
             effects: Effects = ALTERNATIVE, seed: int = 0) -> pd.DataFrame:
    """A simulated export: rows of the response contract."""
    return to_responses(simulate_answers(layout, participants, sources, effects, seed))
