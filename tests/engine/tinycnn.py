"""Fast, deterministic attack fixtures: a tiny BatchNorm CNN briefly trained on embedded digits, and
a small ResNet from MONAI (a maintained library) briefly trained on the worked example's RGB shapes."""
from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine import architectures, imports
from engine.data import Dataset, from_arrays, load_dataset
from engine.models import build_model

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
# MONAI's ResNet-10 at a quarter of its width (0.3 M parameters), 2-D, as docs/examples/resnet.toml names ResNet-18.
RESNET = "monai.networks.nets:resnet10"
RESNET_OPTIONS = architectures.ModelOptions(kwargs={"spatial_dims": 2, "n_input_channels": 3, "num_classes": 10, "widen_factor": 0.25},
                                            mean=[0.3], std=[0.3])


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


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int = 0, steps: int = 60) -> nn.Module:
    """`steps` Adam steps on random batches of 64 of (x, y); the model comes back in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        batch = torch.randint(len(x), (64,), generator=generator)
        optimiser.zero_grad()
        F.cross_entropy(model(x[batch]), y[batch]).backward()
        optimiser.step()
    return model.eval()


@cache
def trained_tiny_cnn(seed: int = 0, steps: int = 60) -> nn.Module:
    """Trained for `steps` Adam steps of 64 digits (~1 s): confident enough that attacks mean something."""
    x, y, _, _ = digits()
    return fit(tiny_cnn(seed), x, y, seed, steps)


@cache
def trained_demo_cnn(seed: int = 0, steps: int = 60) -> nn.Module:
    """The zoo's built-in `demo` architecture, trained like the tiny CNN (~2 s)."""
    x, y, _, _ = digits()
    torch.manual_seed(seed)
    return fit(build_model("demo"), x, y, seed, steps)


@pytest.fixture(scope="module")
def model() -> nn.Module:
    """The trained tiny CNN, as a fixture (import it into a test module to use it)."""
    return trained_tiny_cnn()


@cache
def shapes(per_class: int = 20) -> Dataset:
    """Ten classes of docs/examples/make_shapes.py's 16×16 RGB shapes, drawn in memory from its seed."""
    draw = imports.resolve(f"{EXAMPLES / 'make_shapes.py'}:draw")[0]
    names = imports.resolve(f"{EXAMPLES / 'make_shapes.py'}:SHAPES")[0]
    rng = np.random.default_rng(0)
    images = np.stack([np.asarray(draw(name, rng)) for name in names for _ in range(per_class)]).transpose(0, 3, 1, 2)
    return from_arrays("shapes10", "make_shapes.py", images, np.repeat(np.arange(len(names)), per_class), tuple(names))


@cache
def trained_resnet(seed: int = 0, steps: int = 30) -> nn.Module:
    """MONAI's small ResNet as the engine builds it (normalisation wrapped in), `steps` Adam steps on the shapes."""
    ds = shapes()
    torch.manual_seed(seed)
    return fit(architectures.build(RESNET, RESNET_OPTIONS, ds.train.x.shape[1:], len(ds.classes)), ds.train.x, ds.train.y, seed, steps)
