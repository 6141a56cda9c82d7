"""Per-condition descriptives with two-way ("pigeonhole") bootstrap intervals.

Each bootstrap replicate resamples participants with replacement and, independently, image units
(source digits in the matched layout; images, stratified by condition, in the nested one) and keeps
every (participant*, unit*) cell (Owen 2007). Resampling participants only would treat the images
as fixed and give intervals that are far too narrow. A replicate's mean is a ratio of weighted sums,
so all replicates come from two matrix products instead of B passes over the data.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.inference import Layout, ordered_conditions

STATISTICS = {  # column of the answers frame -> what its mean is called in the tables
    "target": "target-label rate",
    "true": "true-label rate",
    "rating": "mean rating",
    "rt_ms": "mean reaction time (ms)",
    "norm_l2": "mean L2 norm (per answer)",
}


def bootstrap_weights(answers: pd.DataFrame, layout: Layout, replicates: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(participant codes, unit codes, participant weights B×P, unit weights B×U).

    Units that occur under the same set of conditions form one stratum and are resampled within
    it, so a nested-layout replicate keeps each condition's number of images."""
    rng = np.random.default_rng(seed)
    p_codes, participants = pd.factorize(answers["participant_id"])
    u_codes, units = pd.factorize(answers[layout.unit])
    w_p = rng.multinomial(len(participants), np.full(len(participants), 1 / len(participants)), size=replicates).astype(float)
    strata = answers.groupby(u_codes)["condition"].agg(lambda c: tuple(sorted(set(c))))
    w_u = np.zeros((replicates, len(units)))
    for _, members in strata.groupby(strata).groups.items():
        members = np.asarray(members)
        w_u[:, members] = rng.multinomial(len(members), np.full(len(members), 1 / len(members)), size=replicates)
    return p_codes, u_codes, w_p, w_u


def two_way_bootstrap(answers: pd.DataFrame, column: str, layout: Layout, replicates: int = 1000,
                      seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """Mean of `column` per condition with a percentile interval from the two-way bootstrap."""
    p_codes, u_codes, w_p, w_u = bootstrap_weights(answers, layout, replicates, seed)
    values = answers[column].to_numpy(float)
    rows = []
    for condition in ordered_conditions(answers["condition"]):
        keep = (answers["condition"].to_numpy() == condition) & ~np.isnan(values)
        if not keep.any():
            continue
        sums = np.zeros((w_p.shape[1], w_u.shape[1]))
        counts = np.zeros_like(sums)
        np.add.at(sums, (p_codes[keep], u_codes[keep]), values[keep])
        np.add.at(counts, (p_codes[keep], u_codes[keep]), 1.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            boot = ((w_p @ sums) * w_u).sum(1) / ((w_p @ counts) * w_u).sum(1)
        low, high = np.nanpercentile(boot, [50 * (1 - level), 50 * (1 + level)])
        rows.append({"condition": condition, "statistic": STATISTICS.get(column, column), "column": column,
                     "estimate": values[keep].mean(), "ci_low": low, "ci_high": high, "answers": int(keep.sum())})
    return pd.DataFrame(rows)


def condition_summary(answers: pd.DataFrame, layout: Layout, replicates: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Long table: one row per condition × statistic, with counts of participants and images."""
    parts = [two_way_bootstrap(answers, column, layout, replicates, seed) for column in STATISTICS]
    table = pd.concat([p for p in parts if len(p)], ignore_index=True)
    counts = answers.groupby("condition").agg(participants=("participant_id", "nunique"), images=("stimulus_id", "nunique"),
                                              sources=("source_id", "nunique"))
    return table.join(counts, on="condition")


def rating_distribution(answers: pd.DataFrame) -> pd.DataFrame:
    """Counts per scale point per condition (all scale points, also unused ones), plus median."""
    ratings = answers.dropna(subset=["rating"])
    lo, hi = answers.attrs.get("rating_min", ratings["rating"].min()), answers.attrs.get("rating_max", ratings["rating"].max())
    table = pd.crosstab(ratings["condition"], ratings["rating"].astype(int)).reindex(columns=range(int(lo), int(hi) + 1), fill_value=0)
    table = table.reindex(ordered_conditions(ratings["condition"]))
    table["n"] = table.sum(axis=1)
    table["median"] = ratings.groupby("condition")["rating"].median()
    return table
