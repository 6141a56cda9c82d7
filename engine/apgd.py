"""Auto-PGD, L∞ (Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of
diverse parameter-free attacks", ICML 2020, arXiv 2003.01690): APGD-CE and APGD-T (targeted DLR).

Shapes: x (N, C, H, W) in [0, 1], labels y (N,), targets t (N,); returns the adversarial batch
(N, C, H, W) and per-image `fooled` flags (N,). The model is put in eval mode for the attack.

Update rule, per image, from a random start x⁰ = clip(x + ε·u/‖u‖∞), u ~ U(−1, 1)ⁿ, step η⁰ = 2ε:
    z   = P(xᵏ + ηᵏ·sign ∇L(xᵏ))
    xᵏ⁺¹ = P(xᵏ + α(z − xᵏ) + (1 − α)(xᵏ − xᵏ⁻¹)),   α = 1 at k = 0, then 0.75 (momentum)
with P the projection onto the ε-ball and [0, 1]. At checkpoints w₀ = 0, w₁ = 0.22·steps, then
gaps shrinking by 0.03·steps down to 0.06·steps, the step is halved, and the iterate restarted from
the best point so far, where (1) the loss rose in at most a fraction ρ = 0.75 of the last window's
steps, or (2) the step was not halved at the previous checkpoint and the best loss has not improved
since. Losses (maximised):
    CE:  cross-entropy of y;   DLR:  −(z_y − max_{i≠y} z_i) / (z_π1 − z_π3)
    targeted DLR:  −(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2)
with π the logits sorted in decreasing order: dividing by a logit gap makes the DLR losses
invariant to the logits' scale, so they are not fooled by a saturated softmax.

Like the reference implementations (fra31/auto-attack, torchattacks.APGD/APGDT, bit-equal
arithmetic here; tests/engine/test_ensemble.py), the first window's oscillation count compares the
first iterate's loss with an unset (zero) entry rather than with the starting point's loss.
Unlike them, an image leaves the computation as soon as it is misclassified: an evaluation needs
only whether it can be broken, and the other images' trajectories do not depend on it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.attacks import HIGH, LOW, eval_mode
from engine.targets import over_targets

RHO = 0.75
MOMENTUM = 0.75


def dlr_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image DLR loss (higher: closer to misclassification)."""
    s = logits.sort(dim=1).values
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    best_other = torch.where(logits.argmax(1) == y, s[:, -2], s[:, -1])
    return -(z_y - best_other) / (s[:, -1] - s[:, -3] + 1e-12)


def targeted_dlr_loss(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image targeted DLR loss (higher: the target's logit closer to overtaking y's).

    The scale is z₍₁₎ − (z₍₃₎ + z₍₄₎)/2 of the sorted logits; with three classes there is no z₍₄₎
    and the scale is z₍₁₎ − z₍₃₎ (the untargeted DLR's), so a 3-class model can be attacked too."""
    s = logits.sort(dim=1).values
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    z_t = logits.gather(1, target[:, None]).squeeze(1)
    fourth = s[:, -4] if s.shape[1] >= 4 else s[:, -3]
    return -(z_y - z_t) / (s[:, -1] - 0.5 * s[:, -3] - 0.5 * fourth + 1e-12)


def _loss(kind: str, logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
    if kind == "ce":
        return F.cross_entropy(logits, y, reduction="none")
    if kind == "dlr":
        return dlr_loss(logits, y)
    return targeted_dlr_loss(logits, y, target)


def _project(adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.min(torch.max(adv, x - eps), x + eps).clamp(LOW, HIGH)


def apgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = 100, loss: str = "ce",
         target: torch.Tensor | None = None, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One APGD run (one random start) with loss "ce", "dlr" or "targeted-dlr" (needs `target`).

    Returns (adversarial batch, fooled): a fooled image's first misclassified iterate, else the
    iterate of highest loss. The random start is drawn from `generator` (the global RNG when None),
    as torchattacks draws it after torch.manual_seed.
    """
    if loss not in ("ce", "dlr", "targeted-dlr") or (loss == "targeted-dlr") != (target is not None):
        raise ValueError(f"loss must be 'ce', 'dlr' or 'targeted-dlr' (with a target), got {loss!r}")
    x, n = x.detach(), len(x)
    window, window_min, window_decrease = max(int(0.22 * steps), 1), max(int(0.06 * steps), 1), max(int(0.03 * steps), 1)
    u = 2 * torch.rand(x.shape, generator=generator, device=x.device) - 1
    adv = (x + eps * u / u.flatten(1).abs().max(1).values.view(-1, *[1] * (x.dim() - 1))).clamp(LOW, HIGH)
    step = torch.full((n, *[1] * (x.dim() - 1)), 2.0 * eps, device=x.device)
    loss_history = torch.zeros(steps, n, device=x.device)
    fooled = torch.zeros(n, dtype=torch.bool, device=x.device)
    result = adv.clone()
    all_images = torch.arange(n, device=x.device)

    def loss_and_gradient(idx: torch.Tensor, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        points = points.clone().requires_grad_(True)
        logits = model(points)
        value = _loss(loss, logits, y[idx], None if target is None else target[idx])
        (grad,) = torch.autograd.grad(value.sum(), points)
        return value.detach(), grad, logits.detach().argmax(1) != y[idx]

    def record_fooled(idx: torch.Tensor, points: torch.Tensor, wrong: torch.Tensor) -> None:
        fooled[idx[wrong]] = True
        result[idx[wrong]] = points[wrong]

    with eval_mode(model):
        best_loss, grad, wrong = loss_and_gradient(all_images, adv)
        record_fooled(all_images, adv, wrong)
        best, best_grad, previous = adv.clone(), grad.clone(), adv.clone()
        best_loss_at_check = best_loss.clone()
        halved_at_check = torch.ones(n, dtype=torch.bool, device=x.device)
        since_check, k = 0, window
        for i in range(steps):
            idx = (~fooled).nonzero().squeeze(1)
            if len(idx) == 0:
                break
            xi, cur, a = x[idx], adv[idx], MOMENTUM if i > 0 else 1.0
            with torch.no_grad():
                z = _project(cur + step[idx] * grad[idx].sign(), xi, eps)
                new = _project(cur + (z - cur) * a + (cur - previous[idx]) * (1 - a), xi, eps)
            previous[idx] = cur
            adv[idx] = new
            value, g, wrong = loss_and_gradient(idx, new)
            grad[idx] = g
            record_fooled(idx, new, wrong)
            loss_history[i, idx] = value
            better = value > best_loss[idx]
            improved = idx[better]
            best[improved], best_grad[improved], best_loss[improved] = new[better], g[better], value[better]

            since_check += 1
            if since_check == k:
                rises = sum((loss_history[i - c] > loss_history[i - c - 1]).to(torch.float64) for c in range(k))
                halve = (rises <= k * RHO) | (~halved_at_check & (best_loss_at_check >= best_loss))
                halved_at_check, best_loss_at_check = halve.clone(), best_loss.clone()
                step[halve] /= 2.0
                adv[halve], grad[halve] = best[halve], best_grad[halve]
                since_check, k = 0, max(k - window_decrease, window_min)
    result[~fooled] = best[~fooled]
    return result.detach(), fooled


def apgd_targeted(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = 100, targets: int = 9,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """APGD-T: APGD with the targeted DLR loss, once per target class, each run on the images still standing.

    The targets are the 2nd, 3rd, … (targets + 1)-th largest clean logits of each image, as in
    AutoAttack's standard version (9 targets on 10 classes). Returns (adversarial batch, fooled).
    """
    return over_targets(lambda xs, ys, ts: apgd(model, xs, ys, eps, steps, "targeted-dlr", ts, generator), model, x, y, targets)
