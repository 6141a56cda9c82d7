"""`gradreg-uniform`: the paper's "Grad Reg (1/K)", penalising the input gradient of the summed log-probabilities."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from engine.regimes.base import Params, Regime, register
from engine.regimes.gradreg import input_gradient_penalty


class GradregUniformParams(Params):
    lambda_: float = Field(1.0, ge=0, alias="lambda", description="λ on ½‖∇ₓ mean Σₖ log pₖ‖²")


def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, params: GradregUniformParams) -> torch.Tensor:
    """Mean CE + λ·½‖∇ₓ mean Σₖ log pₖ‖² (the cross-entropy against the uniform distribution, times K)."""
    x = x.detach().requires_grad_(True)
    logits = model(x)
    log_probs_sum = F.log_softmax(logits, 1).sum(1).mean()
    return F.cross_entropy(logits, y) + params.lambda_ * input_gradient_penalty(log_probs_sum, x)


REGIME = register(Regime(name="gradreg-uniform", summary="mean CE + λ·½‖∇ₓ mean Σₖ log pₖ‖² (the paper's Grad Reg (1/K))",
                         paper="Ross & Doshi-Velez, AAAI 2018", params=GradregUniformParams, loss=loss,
                         presets={"paper": {"lambda": 1e3}}, sweep_field="lambda"))
