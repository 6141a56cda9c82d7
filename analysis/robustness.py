"""Aggregate tests beside the primary models: by image (robustness) and by participant (images fixed).

By-image (F2) tests treat images as the sample: in the matched layout a Wilcoxon signed-rank test
over source digits (each source is its own control), in the nested layout a Mann–Whitney U test
between the images of two conditions. In simulation they were calibrated (type-I 0.05–0.07) but
ignore participant × condition variance: a robustness check, not the decision.

By-participant tests average over images and so treat the shown images as fixed — the
"language-as-fixed-effect" fallacy (type-I 0.36–0.75 in the nested layout). They answer only "would
these very images show the effect in new people?" and are labelled so; the calibration test uses
the paired t as its negative control.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from analysis.inference import Contrast, Layout, estimable, holm_within, not_estimable_note

DECIMALS = 10  # differences are rounded before ranking: 3.65-3.55 and 3.05-2.95 differ in binary floating point


def wilcoxon_paired(x: np.ndarray, y: np.ndarray) -> dict[str, float | str]:
    """Signed-rank test of x − y with zeros dropped; matched-pairs rank-biserial r as effect size.

    The method is chosen here, not by scipy's release-dependent "auto": the exact distribution
    without ties or zeros up to 50 pairs, the exhaustive permutation distribution with ties or
    zeros up to 13 pairs, otherwise the normal approximation without continuity correction."""
    d = np.round(np.asarray(x, float) - np.asarray(y, float), DECIMALS)
    nonzero = d[d != 0]
    ties = len(nonzero) < len(d) or len(np.unique(np.abs(nonzero))) < len(nonzero)
    ranks = stats.rankdata(np.abs(nonzero))
    r_plus, r_minus = ranks[nonzero > 0].sum(), ranks[nonzero < 0].sum()
    if ties and len(d) <= 13:
        statistic, p, name = min(r_plus, r_minus), sign_flip_p(ranks, r_plus), "exact permutation"
    else:
        res = stats.wilcoxon(d, zero_method="wilcox", correction=False, method="exact" if not ties and len(d) <= 50 else "asymptotic")
        statistic, p, name = res.statistic, res.pvalue, "exact" if not ties and len(d) <= 50 else "asymptotic"
    return {"statistic": float(statistic), "p": float(p), "n": int(len(d)),
            "effect": float((r_plus - r_minus) / (r_plus + r_minus)) if len(nonzero) else 0.0,
            "effect_name": "rank-biserial r", "test": f"Wilcoxon signed-rank ({name}, zeros dropped)"}


def sign_flip_p(ranks: np.ndarray, r_plus: float) -> float:
    """Two-sided p of the signed-rank sum over all 2ⁿ sign assignments of the (mid)ranks, what
    scipy's `PermutationMethod` computes, enumerated at once (scipy's took ~2 s a call). Doubled
    midranks are integers, so ties compare exactly."""
    doubled = np.rint(2 * np.asarray(ranks)).astype(np.int64)
    signs = (np.arange(2 ** len(doubled))[:, None] >> np.arange(len(doubled))) & 1
    null = signs @ doubled
    observed = round(2 * r_plus)
    return float(min(1.0, 2 * min(np.mean(null <= observed), np.mean(null >= observed))))


def mann_whitney(x: np.ndarray, y: np.ndarray) -> dict[str, float | str]:
    """U test of x against y (asymptotic, continuity-corrected); rank-biserial r = 2·U/(n·m) − 1."""
    res = stats.mannwhitneyu(x, y, alternative="two-sided", method="asymptotic", use_continuity=True)
    return {"statistic": float(res.statistic), "p": float(res.pvalue), "n": int(len(x) + len(y)),
            "effect": float(2 * res.statistic / (len(x) * len(y)) - 1), "effect_name": "rank-biserial r",
            "test": "Mann–Whitney U (asymptotic, continuity-corrected)"}


def paired_t(x: np.ndarray, y: np.ndarray) -> dict[str, float | str]:
    res = stats.ttest_rel(x, y)
    d = np.asarray(x, float) - np.asarray(y, float)
    return {"statistic": float(res.statistic), "p": float(res.pvalue), "n": int(len(d)),
            "effect": float(d.mean() / d.std(ddof=1)), "effect_name": "d_z", "test": "paired t"}


def by_image(answers: pd.DataFrame, outcome: str, layout: Layout, contrasts: list[Contrast]) -> pd.DataFrame:
    """F2: per-image means compared between conditions (paired by source in the matched layout)."""
    data = answers.dropna(subset=[outcome])
    # Images are averaged first, then per unit. In the nested layout the unit is the image itself:
    # grouping by it twice would make two index levels of one name, which pandas cannot tell apart.
    keys = list(dict.fromkeys(["condition", layout.unit, "stimulus_id"]))
    per_image = data.groupby(keys)[outcome].mean()
    per_unit = per_image.groupby(level=["condition", layout.unit]).mean().unstack("condition")
    rows = []
    for k in contrasts:
        if not estimable(k, list(per_unit.columns)):
            rows.append({"outcome": outcome, "family": k.family, "contrast": f"{k.a} − {k.b}", "p": np.nan,
                         "test": not_estimable_note(k, list(per_unit.columns))})
            continue
        if layout.name == "matched":
            pair = per_unit[[k.a, k.b]].dropna()
            res = wilcoxon_paired(pair[k.a], pair[k.b])
        else:
            res = mann_whitney(per_unit[k.a].dropna(), per_unit[k.b].dropna())
        rows.append({"outcome": outcome, "family": k.family, "contrast": f"{k.a} − {k.b}", **res})
    return holm_within(pd.DataFrame(rows), ["outcome", "family"])


def participant_means(answers: pd.DataFrame, outcome: str) -> pd.DataFrame:
    """Participants × conditions table of mean outcome (images averaged away)."""
    return answers.dropna(subset=[outcome]).groupby(["participant_id", "condition"])[outcome].mean().unstack("condition")


def by_participant(answers: pd.DataFrame, outcome: str, contrasts: list[Contrast]) -> pd.DataFrame:
    """Paired t and Wilcoxon on participant means: images fixed, not a test about images in general."""
    wide = participant_means(answers, outcome)
    rows = []
    for k in contrasts:
        if not estimable(k, list(wide.columns)):
            rows += [{"outcome": outcome, "family": k.family, "contrast": f"{k.a} − {k.b}", "p": np.nan, "test": test,
                      "note": not_estimable_note(k, list(wide.columns))} for test in ("paired t", "Wilcoxon signed-rank")]
            continue
        pair = wide[[k.a, k.b]].dropna()
        for res in (paired_t(pair[k.a], pair[k.b]), wilcoxon_paired(pair[k.a], pair[k.b])):
            rows.append({"outcome": outcome, "family": k.family, "contrast": f"{k.a} − {k.b}", **res})
    return holm_within(pd.DataFrame(rows), ["outcome", "family", "test"])
