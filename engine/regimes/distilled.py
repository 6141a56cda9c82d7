"""`distilled`: defensive distillation (Papernot et al., IEEE S&P 2016).

A teacher trained at temperature T, then a student trained at T on the teacher's soft labels.
Both networks output raw logits, so the student *is* the T = 1 model that is attacked. At T = 50
the logits must grow ~50× to become confident; the demo's few hundred steps reach the saturated
softmax (and the gradient masking the paper reports) only at a higher learning rate than the
other regimes use (docs/engine.md).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from engine.architectures import fresh
from engine.models import eval_mode
from engine.regimes.base import Params, Regime, register


class DistilledParams(Params):
    temperature: float = Field(50.0, gt=0, description="teacher and student train at T; the student is used at T = 1")
    lr: float = Field(3e-2, gt=0, description="learning rate of teacher and student, in place of train.lr")


def tempered_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, temperature: float) -> torch.Tensor:
    """CE of softmax(logits / T) against hard labels (teacher) or soft labels (student)."""
    return F.cross_entropy(model(x) / temperature, y)


def soft_labels(teacher: nn.Module, x: torch.Tensor, temperature: float, batch: int = 1000) -> torch.Tensor:
    """softmax(z / T) of the trained teacher (eval mode) on every training image."""
    with torch.no_grad(), eval_mode(teacher):
        return torch.cat([F.softmax(teacher(xb) / temperature, 1) for xb in x.split(batch)])


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg, params: DistilledParams, seed: int,
        progress: bool) -> list[float]:
    from engine.training import fit_loss  # the shared mini-batch loop
    device = next(model.parameters()).device
    loss = lambda m, xb, yb: tempered_loss(m, xb, yb, params.temperature)  # noqa: E731
    teacher = fresh(model).to(device)  # the student's architecture, options, image shape and classes
    fit_loss(teacher, loss, x, y, cfg, seed, progress, desc="distilled teacher", lr=params.lr)
    targets = soft_labels(teacher, x.to(device), params.temperature).cpu()
    return fit_loss(model, loss, x, targets, cfg, seed, progress, desc="distilled student", lr=params.lr)


REGIME = register(Regime(name="distilled", summary="teacher and student at temperature T, the student used at T = 1",
                         paper="Papernot, McDaniel, Wu, Jha & Swami, IEEE S&P 2016", params=DistilledParams, fit=fit,
                         presets={"paper": {"lr": 2e-4}}))
