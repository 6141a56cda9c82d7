"""Adversarial attacks: one function each, batched tensors in and out.

Every attack puts the model in eval mode (BatchNorm running statistics, no dropout), restores
the mode it found, and clips pixels to the data range [0, 1]. Update rules follow the papers
and torchattacks' conventions (checked bit for bit in tests/engine/test_attack_conformance.py).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

LOW, HIGH = 0.0, 1.0


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def loss_gradient(model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """∇ₓ of the summed cross-entropy (summed so each example's gradient is its own)."""
    x = x.detach().clone().requires_grad_(True)
    loss = F.cross_entropy(model(x), labels, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    return grad


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """Goodfellow et al. 2015: x' = clip(x + ε·sign(∇ₓ CE(y, f(x))))."""
    with eval_mode(model):
        return (x + eps * loss_gradient(model, x, y).sign()).clamp(LOW, HIGH).detach()


def tgsm(model: nn.Module, x: torch.Tensor, target: torch.Tensor, eps: float) -> torch.Tensor:
    """Targeted gradient sign (Kurakin et al. 2016): x' = clip(x − ε·sign(∇ₓ CE(t, f(x))))."""
    with eval_mode(model):
        return (x - eps * loss_gradient(model, x, target).sign()).clamp(LOW, HIGH).detach()


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, step: float, steps: int,
        random_start: bool = True, seed: int | None = None) -> torch.Tensor:
    """L∞ PGD (Madry et al. 2018), in torchattacks' order: step, project onto the ε-ball, clip."""
    x = x.detach()
    adv = x.clone()
    if random_start:
        generator = torch.Generator(device=x.device)
        if seed is not None:
            generator.manual_seed(seed)
        noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) * 2 * eps - eps
        adv = (adv + noise).clamp(LOW, HIGH)
    with eval_mode(model):
        for _ in range(steps):
            adv = adv + step * loss_gradient(model, adv, y).sign()
            adv = (x + (adv - x).clamp(-eps, eps)).clamp(LOW, HIGH).detach()
    return adv
