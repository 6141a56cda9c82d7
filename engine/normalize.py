"""Input normalisation as part of the model, so every attack works in pixel space [0, 1].

A network trained on standardised inputs (x − mean) / std is wrapped: the wrapper takes pixels,
so ε, step sizes and the clip to [0, 1] mean the same for every model, and a perturbation is
one a participant sees. mean and std are per channel (one value for all, or one per channel)
and travel in the checkpoint as buffers.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class Normalized(nn.Module):
    """`model((x - mean) / std)` for pixels x in [0, 1] of shape N×C×H×W."""

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)
