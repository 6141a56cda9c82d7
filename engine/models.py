"""The model zoo's architectures, by name: `paper` (Ross & Doshi-Velez's MNIST CNN) and `demo` (a small one).

Both are the same network at different widths: conv 5×5 → BN → ReLU → maxpool 2, twice, then
FC → BN → ReLU → dropout → FC 10. As in the paper (TensorFlow's batch_norm with center=True,
scale=False): layers before a BN have no bias, and BN has a learned shift but no learned scale.
Weights are Glorot-uniform.

Two choices make the gradreg regime's double backward cheaper without changing the function
(benchmarks/RESULTS.md, "Training speed"): BN gets no scale tensor at all rather than a frozen one
(PyTorch's BN double backward then skips its scale terms), and each max-pool runs before its ReLU
(max and ReLU are both monotone, so the outputs and their gradients are the same, and the ReLU
and its double backward see a quarter of the values).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

# Bumped whenever a change makes older checkpoints unloadable (2: BN without a scale tensor), so
# the zoo's cache retrains instead of failing on a stale file.
MODEL_REVISION = 2

# name: (conv1 channels, conv2 channels, hidden units)
ARCHITECTURES = {"paper": (32, 64, 1024), "demo": (16, 32, 128)}


class ShiftOnlyBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm with a learned shift and no scale, for 2-d (N, C) and 4-d (N, C, H, W) inputs."""

    def __init__(self, features: int):
        super().__init__(features, affine=False)
        self.bias = nn.Parameter(torch.zeros(features))

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() not in (2, 4):
            raise ValueError(f"expected a 2-d or 4-d input, got {input.dim()}-d")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        return F.batch_norm(input, self.running_mean, self.running_var, None, self.bias,
                            self.training, self.momentum, self.eps)


class CNN(nn.Sequential):
    def __init__(self, c1: int, c2: int, hidden: int, dropout: float = 0.5, classes: int = 10,
                 input_shape: tuple[int, int, int] = (1, 28, 28)):
        channels, height, width = input_shape
        super().__init__(
            nn.Conv2d(channels, c1, 5, padding=2, bias=False), ShiftOnlyBatchNorm(c1), nn.MaxPool2d(2), nn.ReLU(),
            nn.Conv2d(c1, c2, 5, padding=2, bias=False), ShiftOnlyBatchNorm(c2), nn.MaxPool2d(2), nn.ReLU(),
            nn.Flatten(),
            nn.Linear(c2 * (height // 4) * (width // 4), hidden, bias=False), ShiftOnlyBatchNorm(hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, classes),
        )
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)


def build_model(architecture: str, input_shape: tuple[int, int, int] = (1, 28, 28), classes: int = 10) -> CNN:
    """A built-in network for C×H×W images (H and W at least 4) and `classes` classes; a user's are in engine/architectures.py."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; choose one of {', '.join(ARCHITECTURES)}")
    return CNN(*ARCHITECTURES[architecture], classes=classes, input_shape=input_shape)


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode (BatchNorm running statistics, no dropout) inside, the mode it had restored after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted labels (argmax of the logits) and their softmax probabilities (eval mode, in batches), on the CPU."""
    device = next(model.parameters()).device
    labels, confidences = [], []
    with eval_mode(model):
        for xb in x.split(batch):
            logits = model(xb.to(device))
            labels.append(logits.argmax(1).cpu())
            confidences.append(logits.softmax(1).amax(1).cpu())
    return torch.cat(labels), torch.cat(confidences)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return (predict(model, x)[0] == y).sum().item() / len(y)
