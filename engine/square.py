"""Square attack, L∞ (Andriushchenko, Croce, Flammarion & Hein, "Square Attack: a query-efficient
black-box adversarial attack via random search", ECCV 2020, arXiv 1912.00049).

Shapes: x (N, C, H, W) in [0, 1], labels y (N,); returns the adversarial batch and per-image
`fooled` flags. Gradient-free: the model is only queried (forward passes), in eval mode.

Random search on the margin loss m(v) = z_y(v) − max_{i≠y} z_i(v), minimised; an image is fooled
once m ≤ 0. Start: vertical stripes, x⁰ = clip(x ± ε) with one random sign per column and channel.
Query k proposes x̃ = clip(P_ε(xᵏ + δ)), δ = ±2ε on an s×s square (one random sign per channel)
and 0 elsewhere, and keeps it if the margin falls. The square's side s = round(√(p·H·W)) shrinks
with p: p_init = 0.8 halved at fixed fractions of the query budget (AutoAttack's schedule rescaled
to 10,000 queries). As in AutoAttack's implementation (and torchattacks.Square, decision for
decision equal here: tests/engine/test_ensemble.py) one square position and sign is drawn per
query for the whole batch; each image alone still sees the paper's distribution of proposals.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from engine.attacks import HIGH, LOW, eval_mode

P_INIT = 0.8
# (last rescaled iteration, divisor of p_init) of AutoAttack's schedule for 10,000 queries.
SCHEDULE = [(10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64), (6000, 128), (8000, 256)]


def square_fraction(i: int, queries: int) -> float:
    """p, the share of the image a square covers, at query i of `queries`."""
    it = int(i / queries * 10000)
    return P_INIT / next((div for last, div in SCHEDULE if it <= last), 512)


def margin(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    logits = model(x)
    rows = torch.arange(len(x), device=x.device)
    z_y = logits[rows, y].clone()
    logits[rows, y] = -math.inf
    return z_y - logits.max(1).values


def _sign(shape: list[int], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    return torch.sign(2 * torch.rand(shape, generator=generator, device=device) - 1)


def _offset(span: int, generator: torch.Generator | None, device: torch.device) -> int:
    return int((span * torch.rand([1], generator=generator, device=device)).long())


def square(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, queries: int = 5000,
           generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Square attack with `queries` proposals at most; draws from `generator` (global RNG when None).

    Returns (best point of each image, fooled).
    """
    x = x.detach()
    n, (c, h, w) = len(x), x.shape[1:]
    with torch.no_grad(), eval_mode(model):
        best = (x + eps * _sign([n, c, 1, w], generator, x.device)).clamp(LOW, HIGH)
        lowest = margin(model, best, y)
        for i in range(queries):
            idx = (lowest > 0).nonzero().squeeze(1)
            if len(idx) == 0:
                break
            s = max(int(round(math.sqrt(square_fraction(i, queries) * (c * h * w) / c))), 1)
            top, left = _offset(h - s, generator, x.device), _offset(w - s, generator, x.device)
            delta = torch.zeros(c, h, w, device=x.device)
            delta[:, top:top + s, left:left + s] = 2.0 * eps * _sign([c, 1, 1], generator, x.device)
            xi = x[idx]
            proposal = torch.min(torch.max(best[idx] + delta, xi - eps), xi + eps).clamp(LOW, HIGH)
            m = margin(model, proposal, y[idx])
            keep = m < lowest[idx]
            lowest[idx[keep]] = m[keep]
            best[idx[keep]] = proposal[keep]
    return best, lowest <= 0
