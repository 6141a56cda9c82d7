"""`gradreg`: input-gradient regularization of the cross-entropy (double backpropagation).

The paper's defense (Ross & Doshi-Velez, AAAI 2018), after Drucker & LeCun 1992. λ multiplies
½‖∇ₓ(batch-mean CE)‖², so its effect scales with 1/batch size: a preset fixes both.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from engine.regimes.base import Params, Regime, register


class GradregParams(Params):
    # The demo value keeps test clean accuracy clear of 95% (docs/engine.md: how it was chosen).
    lambda_: float = Field(1e2, ge=0, alias="lambda", description="λ on ½‖∇ₓ mean CE‖²")


def input_gradient_penalty(objective: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """½‖∇ₓ objective‖², kept differentiable (create_graph) so training descends through it."""
    (grad,) = torch.autograd.grad(objective, x, create_graph=True)
    return 0.5 * grad.pow(2).sum()


def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, params: GradregParams) -> torch.Tensor:
    """Mean CE + λ·½‖∇ₓ mean CE‖²."""
    x = x.detach().requires_grad_(True)
    ce = F.cross_entropy(model(x), y)
    return ce + params.lambda_ * input_gradient_penalty(ce, x)


REGIME = register(Regime(name="gradreg", summary="mean CE + λ·½‖∇ₓ mean CE‖² (double backpropagation)",
                         paper="Ross & Doshi-Velez, AAAI 2018; Drucker & LeCun 1992", params=GradregParams, loss=loss,
                         presets={"paper": {"lambda": 10 ** 4.75}}, sweep_field="lambda"))
