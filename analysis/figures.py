"""Report figures (PNG and SVG): rates and mean ratings with intervals, rating distributions,
per-image legitimacy against perturbation size. Headless (Agg backend)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from analysis.inference import ordered_conditions  # noqa: E402
from contracts import CLEAN, CONDITIONS  # noqa: E402

# One colour per condition of the shared vocabulary, in its order (clean last, in grey).
PALETTE = {c: "#7f7f7f" if c == CLEAN else plt.get_cmap("tab10")(i) for i, c in enumerate(CONDITIONS)}


def save(fig: plt.Figure, out: Path, name: str) -> list[Path]:
    paths = [out / f"{name}.png", out / f"{name}.svg"]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    plt.close(fig)
    return paths


def condition_intervals(summary: pd.DataFrame, out: Path) -> list[Path]:
    """One panel per statistic (target / true rate, mean rating): estimate and two-way bootstrap CI."""
    columns = [c for c in ("target", "true", "rating") if c in set(summary["column"])]
    fig, axes = plt.subplots(1, len(columns), figsize=(4.2 * len(columns), 3.4), squeeze=False)
    for ax, column in zip(axes[0], columns):
        part = summary[summary["column"] == column]
        x = np.arange(len(part))
        for i, row in enumerate(part.itertuples()):
            ax.errorbar(i, row.estimate, yerr=[[row.estimate - row.ci_low], [row.ci_high - row.estimate]], fmt="o",
                        color=PALETTE.get(row.condition, "black"), capsize=4)
        ax.set_xticks(x, part["condition"], rotation=30, ha="right")
        ax.set_title(part["statistic"].iloc[0])
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Per condition, 95% two-way bootstrap intervals (participants and images resampled)", fontsize=9)
    fig.tight_layout()
    return save(fig, out, "fig_condition_intervals")


def primary_effects(primary: pd.DataFrame, out: Path) -> list[Path]:
    """The answer at a glance: each primary contrast's response-scale difference with its 95% interval,
    one panel per outcome; filled when significant after Holm."""
    outcomes = list(dict.fromkeys(primary["outcome"]))
    fig, axes = plt.subplots(1, len(outcomes), figsize=(3.6 * len(outcomes), 0.9 + 0.42 * primary["contrast"].nunique()), squeeze=False)
    for ax, outcome in zip(axes[0], outcomes):
        part = primary[(primary["outcome"] == outcome) & primary["diff"].notna()]
        scale = 1 if outcome == "rating" else 100
        y = np.arange(len(part))
        for i, row in enumerate(part.itertuples()):
            color = PALETTE.get(row.contrast.split(" − ")[0], "black")
            ax.errorbar(scale * row.diff, i, xerr=[[scale * (row.diff - row.diff_low)], [scale * (row.diff_high - row.diff)]],
                        fmt="o", color=color, mfc=color if row.p_holm < 0.05 else "white", capsize=3)
        ax.axvline(0, color="#555", lw=0.8)
        ax.set_yticks(y, part["contrast"])
        ax.invert_yaxis()
        ax.set_xlabel("scale points" if outcome == "rating" else "percentage points")
        ax.set_title({"target": "target-label rate", "true": "true-label rate", "rating": "legitimacy rating"}.get(outcome, outcome), fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("Primary contrasts: difference with 95% CI (filled: significant after Holm)", fontsize=9)
    fig.tight_layout()
    return save(fig, out, "fig_primary_effects")


def rating_distribution(distribution: pd.DataFrame, out: Path) -> list[Path]:
    """Stacked proportions of each scale point per condition."""
    points = [c for c in distribution.columns if isinstance(c, (int, np.integer))]
    shares = distribution[points].div(distribution[points].sum(axis=1), axis=0)
    fig, ax = plt.subplots(figsize=(6.5, 0.5 + 0.55 * len(shares)))
    left = np.zeros(len(shares))
    colors = plt.cm.RdYlBu_r(np.linspace(0.1, 0.9, len(points)))
    for point, color in zip(points, colors):
        ax.barh(shares.index, shares[point], left=left, color=color, label=str(point))
        left += shares[point].to_numpy()
    ax.invert_yaxis()
    ax.set_xlabel("share of ratings")
    ax.legend(title="rating", ncol=len(points), bbox_to_anchor=(0.5, 1.02), loc="lower center", fontsize=8, frameon=False)
    return save(fig, out, "fig_rating_distribution")


def legitimacy_vs_l2(answers: pd.DataFrame, out: Path) -> list[Path]:
    """One point per image: mean legitimacy rating against the image's L2 perturbation norm."""
    per_image = answers.dropna(subset=["rating"]).groupby(["stimulus_id", "condition"]).agg(
        rating=("rating", "mean"), norm_l2=("norm_l2", "first")).reset_index()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for condition in ordered_conditions(per_image["condition"]):
        part = per_image[per_image["condition"] == condition]
        ax.scatter(part["norm_l2"], part["rating"], s=14, alpha=0.7, color=PALETTE.get(condition, "black"), label=condition)
    ax.set_xlabel("L2 norm of the perturbation")
    ax.set_ylabel("mean legitimacy rating of the image")
    ax.legend(fontsize=8, frameon=False)
    ax.grid(alpha=0.3)
    return save(fig, out, "fig_legitimacy_vs_l2")
