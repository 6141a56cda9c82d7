"""`adversarial`: FGSM adversarial training, as the paper compares it (Goodfellow et al. 2015; Kurakin et al. 2017)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from engine.attacks import fgsm
from engine.models import eval_mode
from engine.regimes.base import Params, Regime, register


class AdversarialParams(Params):
    eps: float = Field(0.3, ge=0, description="FGSM ε of the training examples")


def adversarial_examples(model: nn.Module, x: torch.Tensor, eps: float) -> torch.Tensor:
    """FGSM against the model's own predictions (eval mode, like every attack), so labels do not leak."""
    with torch.no_grad(), eval_mode(model):
        predicted = model(x).argmax(1)
    return fgsm(model, x, predicted, eps)


def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, params: AdversarialParams) -> torch.Tensor:
    """½ CE(clean) + ½ CE(FGSM ε), the adversarial examples scored against the true labels."""
    x_adv = adversarial_examples(model, x, params.eps)
    # One forward over clean and adversarial halves (BN sees the mixed batch, as in Kurakin et al.);
    # the mean over 2B examples is exactly ½ clean CE + ½ adversarial CE.
    return F.cross_entropy(model(torch.cat([x, x_adv])), torch.cat([y, y]))


REGIME = register(Regime(name="adversarial", summary="½ CE clean + ½ CE on FGSM examples of the model's own predictions",
                         paper="Goodfellow, Shlens & Szegedy, ICLR 2015; Kurakin, Goodfellow & Bengio, ICLR 2017",
                         params=AdversarialParams, loss=loss))
