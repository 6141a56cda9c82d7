"""A tiny BatchNorm CNN, briefly trained on embedded digits: fast, deterministic attack fixtures."""
from __future__ import annotations

from functools import cache

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine.data import load_dataset


def tiny_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 8, 5, padding=2, bias=False), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 7 * 7, 10),
    )


@cache
def digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train x, train y, test x, test y) of the embedded data set."""
    ds = load_dataset()
    return ds.train.x, ds.train.y, ds.test.x, ds.test.y


@cache
def trained_tiny_cnn(seed: int = 0, steps: int = 60) -> nn.Module:
    """Trained for `steps` Adam steps of 64 digits (~1 s): confident enough that attacks mean something."""
    model = tiny_cnn(seed)
    x, y, _, _ = digits()
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        batch = torch.randint(len(x), (64,), generator=generator)
        optimiser.zero_grad()
        F.cross_entropy(model(x[batch]), y[batch]).backward()
        optimiser.step()
    return model.eval()


@pytest.fixture(scope="module")
def model() -> nn.Module:
    """The trained tiny CNN, as a fixture (import it into a test module to use it)."""
    return trained_tiny_cnn()
