"""AutoAttack's targeted loop, shared by APGD-T and FAB-T: one run per target class, on the images still standing."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from engine.attacks import eval_mode

# (images, labels, targets) -> (adversarial batch, fooled)
TargetedRun = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def over_targets(run: TargetedRun, model: nn.Module, x: torch.Tensor, y: torch.Tensor, targets: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Run toward the 2nd, 3rd, … (targets + 1)-th largest clean logit of each image in turn; with
    fewer than targets + 1 classes, toward every other class (AutoAttack's min(targets, K − 1)).

    Returns (adversarial batch: the breaking example or x, fooled by any target).
    """
    x = x.detach()
    adv, fooled = x.clone(), torch.zeros(len(x), dtype=torch.bool, device=x.device)
    with torch.no_grad(), eval_mode(model):
        ranked = model(x).argsort(dim=1)
    for k in range(2, min(targets, ranked.shape[1] - 1) + 2):
        idx = (~fooled).nonzero().squeeze(1)
        if len(idx) == 0:
            break
        out, hit = run(x[idx], y[idx], ranked[idx, -k])
        fooled[idx[hit]] = True
        adv[idx[hit]] = out[hit]
    return adv, fooled
