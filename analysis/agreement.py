"""Krippendorff's alpha per condition (nominal for labels, ordinal for ratings) with bootstrap over images.

Written out rather than taken from the `krippendorff` package because the coincidence matrix is a
sum of per-image matrices: a bootstrap over images is then one weighted sum per replicate instead
of a full recomputation. Raters are participants, units are images; the oracle tests pin the
published values of Krippendorff (2011). Alpha describes the images (how much people agree on
them); it is not a test of conditions.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.inference import ordered_conditions


def unit_coincidences(counts: np.ndarray) -> np.ndarray:
    """Per-unit coincidence matrices (units × values × values) from value counts per unit; units
    with fewer than two values are not pairable and contribute zeros."""
    m = counts.sum(1)
    pairable = m >= 2
    outer = counts[:, :, None] * counts[:, None, :] - counts[:, :, None] * np.eye(counts.shape[1])[None]
    return np.where(pairable[:, None, None], outer / np.where(pairable, m - 1, 1)[:, None, None], 0.0)


def alpha_from_coincidences(o: np.ndarray, level: str) -> np.ndarray:
    """Alpha for one coincidence matrix (V × V) or a stack of them (B × V × V); values in ascending order."""
    o = o if o.ndim == 3 else o[None]
    n_c = o.sum(2)
    n = n_c.sum(1)
    v = o.shape[1]
    if level == "nominal":
        delta = np.broadcast_to(1.0 - np.eye(v), o.shape)
    elif level == "ordinal":
        cum = np.cumsum(n_c, 1)
        lo, hi = np.minimum.outer(np.arange(v), np.arange(v)), np.maximum.outer(np.arange(v), np.arange(v))
        between = cum[:, hi] - cum[:, lo] + n_c[:, lo]  # sum of n_g for g from lo to hi
        delta = (between - (n_c[:, :, None] + n_c[:, None, :]) / 2) ** 2
    else:
        raise ValueError(f"level must be 'nominal' or 'ordinal', not {level!r}")
    observed = (o * delta).sum((1, 2))
    expected = (n_c[:, :, None] * n_c[:, None, :] * delta).sum((1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1 - (n - 1) * observed / expected


def krippendorff_alpha(reliability_data: np.ndarray, level: str) -> float:
    """Alpha from a raters × units matrix (NaN = missing), the layout of Krippendorff (2011)."""
    data = np.asarray(reliability_data, float)
    values = np.unique(data[~np.isnan(data)])
    counts = np.stack([(data == v).sum(0) for v in values], axis=1)  # units × values
    return float(alpha_from_coincidences(unit_coincidences(counts).sum(0), level)[0])


def alpha_by_condition(answers: pd.DataFrame, column: str, level: str, replicates: int = 1000,
                       seed: int = 0, interval: float = 0.95) -> pd.DataFrame:
    """Alpha per condition over its images, with a percentile interval from resampling images."""
    rng = np.random.default_rng(seed)
    data = answers.dropna(subset=[column])
    rows = []
    for condition in ordered_conditions(data["condition"]):
        subset = data[data["condition"] == condition]
        counts = pd.crosstab(subset["stimulus_id"], subset[column]).sort_index(axis=1).to_numpy(float)
        per_unit = unit_coincidences(counts)
        weights = rng.multinomial(len(counts), np.full(len(counts), 1 / len(counts)), size=replicates).astype(float)
        boot = alpha_from_coincidences(np.einsum("bu,uvw->bvw", weights, per_unit), level)
        low, high = np.nanpercentile(boot, [50 * (1 - interval), 50 * (1 + interval)])
        rows.append({"condition": condition, "measure": column, "level": level,
                     "alpha": float(alpha_from_coincidences(per_unit.sum(0), level)[0]), "ci_low": low, "ci_high": high,
                     "images": len(counts), "raters": subset["participant_id"].nunique()})
    return pd.DataFrame(rows)
