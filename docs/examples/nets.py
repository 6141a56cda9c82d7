"""A researcher's own network, defined outside the engine's packages: `engine train --set architecture=docs/examples/nets.py:small_cnn`.

Any function returning a `torch.nn.Module` that maps N×C×H×W pixels to N×K logits will do; its
keyword arguments come from `[train.model] kwargs` (`--set model.kwargs={width=32}`).
"""
from torch import nn


def small_cnn(width: int = 16, classes: int = 3, channels: int = 3) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(2 * width, classes),
    )
