"""`pgd-adversarial`: training on PGD examples with a random start (Madry et al., ICLR 2018, arXiv 1706.06083).

The inner maximisation is `engine.attacks.pgd` against the true labels (model in eval mode, like
every attack; start drawn from the global RNG, which training seeds); the outer minimisation is
the mean cross-entropy on those examples alone. A step costs `steps` + 1 forward-backward passes.
PGD training needs more passes over the data than the clean regimes: it trains `epoch_factor`
times `train.epochs` epochs (the demo preset's factor 2 was chosen by `engine sweep`, docs/engine.md).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from engine.attacks import pgd
from engine.regimes.base import Params, Regime, register


class PGDAdversarialParams(Params):
    eps: float = Field(0.3, ge=0, description="L∞ radius of the training examples")
    step: float = Field(0.1, gt=0, description="PGD step size α")
    steps: int = Field(7, ge=1, description="PGD iterations per training batch")
    epoch_factor: int = Field(1, ge=1, description="trains epoch_factor × train.epochs epochs")

    def epochs(self, configured: int) -> int:
        return self.epoch_factor * configured


def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, params: PGDAdversarialParams) -> torch.Tensor:
    """Mean CE on PGD-`steps` examples (random start) of the batch."""
    x_adv = pgd(model, x, y, params.eps, params.step, params.steps, random_start=True)
    return F.cross_entropy(model(x_adv), y)


REGIME = register(Regime(name="pgd-adversarial", summary="mean CE on PGD examples with random start (ε, step, steps)",
                         paper="Madry, Makelov, Schmidt, Tsipras & Vladu, ICLR 2018 (arXiv 1706.06083)",
                         params=PGDAdversarialParams, loss=loss, presets={"demo": {"epoch_factor": 2}},
                         sweep_field="eps", sweep_score="white-box-pgd"))
