"""`trades`: clean CE plus β times the KL divergence to the worst nearby prediction (Zhang et al., ICML 2019, arXiv 1901.08573).

As in the authors' code: the inner maximisation starts at x + 0.001·N(0, 1) and takes `steps`
signed-gradient ascent steps on KL(f(x) ‖ f(x')) inside the L∞ ball (model in eval mode); the
outer loss is CE(f(x), y) + β·KL(f(x) ‖ f(x')) summed over classes and averaged over the batch,
with the model in training mode. A step costs `steps` forward-backward passes, one forward for the
clean targets, and the training forward-backward over both halves.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from engine.attacks import HIGH, LOW
from engine.models import eval_mode
from engine.regimes.base import Params, Regime, register


class TradesParams(Params):
    beta: float = Field(6.0, ge=0, description="weight β of the KL term (1/λ in the paper)")
    eps: float = Field(0.3, ge=0, description="L∞ radius of the inner maximisation")
    step: float = Field(0.1, gt=0, description="step size of the inner maximisation")
    steps: int = Field(7, ge=1, description="inner KL maximisation steps")


def kl(logits_adv: torch.Tensor, probs_clean: torch.Tensor) -> torch.Tensor:
    """Σ over the batch and classes of KL(probs_clean ‖ softmax(logits_adv))."""
    return F.kl_div(F.log_softmax(logits_adv, 1), probs_clean, reduction="sum")


def worst_neighbour(model: nn.Module, x: torch.Tensor, params: TradesParams) -> torch.Tensor:
    """The inner maximisation: x' in the ε-ball with a large KL(f(x) ‖ f(x'))."""
    x = x.detach()
    with eval_mode(model):
        with torch.no_grad():
            probs = F.softmax(model(x), 1)
        adv = x + 0.001 * torch.randn_like(x)
        for _ in range(params.steps):
            adv.requires_grad_(True)
            (grad,) = torch.autograd.grad(kl(model(adv), probs), adv)
            adv = adv.detach() + params.step * grad.sign()
            adv = (x + (adv - x).clamp(-params.eps, params.eps)).clamp(LOW, HIGH)
    return adv.detach()


def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, params: TradesParams) -> torch.Tensor:
    x_adv = worst_neighbour(model, x, params)
    logits = model(x)
    robust = kl(model(x_adv), F.softmax(logits, 1)) / len(x)
    return F.cross_entropy(logits, y) + params.beta * robust


REGIME = register(Regime(name="trades", summary="CE + β·KL to the worst prediction in the ε-ball (β, ε, step, steps)",
                         paper="Zhang, Yu, Jiao, Xing, El Ghaoui & Jordan, ICML 2019 (arXiv 1901.08573)",
                         params=TradesParams, loss=loss,
                         # β 6 (the paper's MNIST value) reached 88.9% clean on the demo's 3,000 digits; `engine sweep`
                         # on the validation split takes β 1 (docs/engine.md).
                         presets={"demo": {"beta": 1.0}}, sweep_field="beta", sweep_score="white-box-pgd"))
