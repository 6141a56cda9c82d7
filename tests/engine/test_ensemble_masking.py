"""`engine evaluate`'s ensemble rows flag a gradient-masked model and leave an ordinary one unflagged and ranked."""
from __future__ import annotations

import csv
import subprocess
import sys

import torch
from torch import nn

from engine import checkpoints
from engine.data import load_dataset
from engine.ensemble import EnsembleSettings
from engine.evaluate import aggregate
from engine.masking import ensemble_counts, ensemble_markdown, masking_reasons, zero_gradient_count
from engine.models import CNN
from tinycnn import digits, model  # noqa: F401  (fixture)

SMALL = EnsembleSettings(apgd_steps=10, targets=3, fab_steps=5, square_queries=50)


class Saturated(nn.Module):
    """The same classifier with its logits multiplied by 10⁴: every decision unchanged, the softmax saturated
    (the cross-entropy gradient underflows to exactly zero), as in defensive distillation read at T = 1."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) * 1e4


def test_saturated_model_is_flagged_and_not_ranked_ordinary_one_is_ranked(model):
    _, _, x, y = digits()
    keep = torch.randperm(len(y), generator=torch.Generator().manual_seed(1))[:32]
    x, y = x[keep], y[keep]
    models = {"ordinary": model, "saturated": Saturated(model)}
    assert zero_gradient_count(model, x, y) == 0 and zero_gradient_count(models["saturated"], x, y) > 16
    rows = aggregate([ensemble_counts(models, x, y, [0.1], SMALL, progress=False)], len(y))
    at = {(r["evaluated"], r["attack"]): r["accuracy"] for r in rows}
    # The DLR attacks see through the saturation: the ensemble is about as strong on both models,
    # while APGD-CE alone is much weaker on the saturated one.
    assert abs(at[("saturated", "ensemble")] - at[("ordinary", "ensemble")]) <= 0.1
    assert at[("saturated", "apgd-ce")] - at[("saturated", "ensemble")] >= 0.2
    reasons = masking_reasons(rows)
    assert reasons["ordinary"] == []
    assert len(reasons["saturated"]) == 2 and "exactly-zero" in reasons["saturated"][0] and "APGD-CE alone" in reasons["saturated"][1]
    section = ensemble_markdown(rows)
    assert "| saturated |" in section and "FLAGGED" in section.split("| saturated |")[1].split("\n")[0]
    assert "Most robust first (mean ensemble-robust accuracy over ε; gradient-masked models are not ranked): ordinary. " \
           "Not ranked, gradient-masked: saturated." in section


def test_engine_evaluate_reports_the_ensemble_beside_pgd(tmp_path):
    ds = load_dataset()
    path = tmp_path / "normal.pt"
    torch.manual_seed(0)
    checkpoints.save(CNN(16, 32, 128).eval(), {"condition": "normal", "architecture": "demo", "dataset_sha256": ds.sha256,
                                                "id": "normal-untrained"}, path)
    proc = subprocess.run([sys.executable, "-m", "engine", "evaluate", "--checkpoints", str(path), "--limit", "8", "--pgd-eps", "0.3",
                           "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "## White-box PGD" in summary and "## White-box AutoAttack ensemble" in summary
    assert "| normal | " in summary.split("## White-box AutoAttack ensemble")[1] and "ensemble ε = 0.3" in proc.stdout
    with open(tmp_path / "out" / "robustness.csv") as fh:
        attacks = {row["attack"] for row in csv.DictReader(fh)}
    assert {"pgd", "apgd-ce", "ensemble", "zero-gradient"} <= attacks
