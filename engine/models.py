"""The model zoo's architectures, by name: `paper` (Ross & Doshi-Velez's MNIST CNN) and `demo` (a small one).

Both are the same network at different widths: conv 5×5 → BN → ReLU → maxpool 2, twice, then
FC → BN → ReLU → dropout → FC 10. As in the paper (TensorFlow's batch_norm with center=True,
scale=False): layers before a BN have no bias, and BN has a learned shift but no learned scale.
Weights are Glorot-uniform.
"""
from __future__ import annotations

from torch import nn

# name: (conv1 channels, conv2 channels, hidden units)
ARCHITECTURES = {"paper": (32, 64, 1024), "demo": (16, 32, 128)}


def _shift_only(bn: nn.modules.batchnorm._BatchNorm) -> nn.modules.batchnorm._BatchNorm:
    # The scale stays at 1 and is frozen; the optimiser only sees parameters that require grad.
    bn.weight.requires_grad_(False)
    return bn


class CNN(nn.Sequential):
    def __init__(self, c1: int, c2: int, hidden: int, dropout: float = 0.5, classes: int = 10):
        super().__init__(
            nn.Conv2d(1, c1, 5, padding=2, bias=False), _shift_only(nn.BatchNorm2d(c1)), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5, padding=2, bias=False), _shift_only(nn.BatchNorm2d(c2)), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(c2 * 7 * 7, hidden, bias=False), _shift_only(nn.BatchNorm1d(hidden)), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, classes),
        )
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)


def build_model(architecture: str) -> CNN:
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; choose one of {', '.join(ARCHITECTURES)}")
    return CNN(*ARCHITECTURES[architecture])
