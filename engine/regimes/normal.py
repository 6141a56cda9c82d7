"""`normal`: plain training, the baseline every defense is compared with."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.regimes.base import Params, Regime, register


def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, params: Params) -> torch.Tensor:
    """Mean cross-entropy."""
    return F.cross_entropy(model(x), y)


REGIME = register(Regime(name="normal", summary="mean cross-entropy", paper="the undefended baseline", loss=loss))
