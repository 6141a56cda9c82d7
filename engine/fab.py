"""FAB-T, L∞ (Croce & Hein, "Minimally distorted adversarial examples with a fast adaptive boundary
attack", ICML 2020, arXiv 1907.02044), in AutoAttack's targeted form.

Shapes: x (N, C, H, W) in [0, 1], labels y (N,), targets t (N,); returns the adversarial batch and
per-image `fooled` flags (misclassified within the ε-ball). The model is put in eval mode.

FAB looks for the smallest L∞ perturbation that crosses the decision boundary between y and t.
Each step linearises f = z_t − z_y at the iterate xᵏ, so the boundary becomes the hyperplane
{v : w·v = b} with w = ∇f(xᵏ), b = w·xᵏ − f(xᵏ), and projects both xᵏ and the original x onto it
inside the box [0, 1] (minimal L∞ displacement: `project_linf`), giving d₁ and d₂. Then
    xᵏ⁺¹ = clip((1 − α)(xᵏ + η·d₁) + α(x + η·d₂)),   α = min(‖d₁‖∞ / (‖d₁‖∞ + ‖d₂‖∞), α_max)
with overshoot η = 1.05 and α_max = 0.1: the step leans toward the original image in proportion to
how far the iterate has drifted. When xᵏ⁺¹ is misclassified it is kept if it is the closest
adversarial so far and pulled back toward x: xᵏ⁺¹ ← x + β(xᵏ⁺¹ − x), β = 0.9.

No random start (AutoAttack's single restart starts from x), so the attack is deterministic and
equals torchattacks.FAB(multi_targeted=True) decision for decision (tests/engine/test_ensemble.py).
An image leaves the computation once it has an adversarial example within ε.
"""
from __future__ import annotations

import torch
from torch import nn

from engine.attacks import HIGH, LOW, eval_mode
from engine.targets import over_targets

OVERSHOOT = 1.05
ALPHA_MAX = 0.1
BACKTRACK = 0.9


def project_linf(points: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per row, the displacement d of least ‖d‖∞ with w·(p + d) = b and p + d in [0, 1] (B×n inputs).

    Orient w so the hyperplane lies below (w·p ≥ b). Moving coordinate i by λ against w's sign
    lowers w·p by |wᵢ|·min(λ, rᵢ), rᵢ its distance to the box edge on that side, so the reachable
    change is a concave piecewise-linear function of λ with kinks at the rᵢ: sort them, find the
    piece where it meets the required change, and solve the linear piece for λ. When even moving
    every coordinate to its edge falls short, the whole move to the edges is returned.
    """
    w, b = w.clone(), b.clone()
    side = 2 * ((w * points).sum(1) - b >= 0) - 1
    w.mul_(side[:, None])
    b.mul_(side)
    up = (w < 0).to(points.dtype)  # coordinates that must rise to lower w·p
    to_edge = (up - points) * (w != 0).to(points.dtype)
    reach = up - points * (2 * up - 1)  # rᵢ
    ascending = torch.argsort(reach, dim=1)
    needed = b - (w * points).sum(1)  # ≤ 0
    full = (w * to_edge).sum(1)  # change with every coordinate at its edge

    order = ascending.flip((1,))  # the farthest edges first: they are the ones capped at λ
    w_sorted = w.gather(1, order)
    capped_weight = torch.cumsum(w_sorted.abs(), dim=1)
    uncapped_change = torch.cumsum(-w_sorted * to_edge.gather(1, order), dim=1) + full[:, None]
    # Change reached at λ = the m-th farthest edge, with the m farthest coordinates capped.
    at_kink = uncapped_change - capped_weight * reach.gather(1, ascending.flip((1,)))
    below_all = needed - at_kink[:, -1] > 0  # λ under the nearest edge: every coordinate capped
    inside = (needed - full > 0) & ~below_all
    if below_all.any():
        lam = torch.clamp_min((needed[below_all] - uncapped_change[below_all, -1]) / -capped_weight[below_all, -1], 0)
        to_edge[below_all] = (2 * up[below_all] - 1) * lam[:, None]
    if inside.any():
        piece = _last_kink_below(at_kink[inside], needed[inside])
        rows = inside.nonzero().squeeze(1)
        lam = torch.clamp_min((needed[inside] - uncapped_change[rows, piece]) / -capped_weight[rows, piece], 0)[:, None]
        d = to_edge[inside]
        to_edge[inside] = torch.min(lam, d) * up[inside] + torch.max(-lam, d) * (1 - up[inside])
    return to_edge * (w != 0).to(points.dtype)


def _last_kink_below(at_kink: torch.Tensor, needed: torch.Tensor) -> torch.Tensor:
    """Per row, by bisection over the kinks (⌈log₂ n⌉ halvings), the last m with needed > at_kink[m]."""
    n = at_kink.shape[1]
    low = torch.zeros(len(at_kink), device=at_kink.device)
    high = torch.full_like(low, n - 1)
    for _ in range((n - 1).bit_length()):
        mid = torch.floor((low + high) / 2)
        above = needed - at_kink.gather(1, mid.long()[:, None]).squeeze(1) > 0
        low, high = torch.where(above, mid, low), torch.where(above, high, mid)
    return low.long()


def fab_targeted_run(model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor, eps: float,
                     steps: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """One FAB run toward `target` (no random start); returns (closest adversarial found or x, fooled within ε)."""
    x = x.detach()
    n, shape = len(x), (-1, *[1] * (x.dim() - 1))
    flat = x.flatten(1)
    iterate, result = x.clone(), x.clone()
    distance = torch.full((n,), 1e10, device=x.device)
    fooled = torch.zeros(n, dtype=torch.bool, device=x.device)
    rows = torch.arange(n, device=x.device)
    with eval_mode(model):
        for _ in range(steps):
            idx = (~fooled).nonzero().squeeze(1)
            if len(idx) == 0:
                break
            cur = iterate[idx].clone().requires_grad_(True)
            logits = model(cur)
            f = -(logits[rows[:len(idx)], y[idx]] - logits[rows[:len(idx)], target[idx]])
            (w,) = torch.autograd.grad(f.sum(), cur)
            cur, f, w = cur.detach(), f.detach(), w.flatten(1)
            with torch.no_grad():
                b = -f + (w.view_as(cur) * cur).flatten(1).sum(1)
                d = project_linf(torch.cat((cur.flatten(1), flat[idx])), torch.cat((w, w)), torch.cat((b, b)))
                norms = torch.max(d.abs().max(1, keepdim=True).values, torch.full((2 * len(idx), 1), 1e-8, device=x.device))
                a1, a2 = norms[:len(idx)], norms[len(idx):]
                alpha = torch.min(torch.max(a1 / (a1 + a2), torch.zeros_like(a1)), torch.full_like(a1, ALPHA_MAX)).view(shape)
                d1, d2 = d[:len(idx)].view_as(cur), d[len(idx):].view_as(cur)
                new = ((cur + OVERSHOOT * d1) * (1 - alpha) + (x[idx] + d2 * OVERSHOOT) * alpha).clamp(LOW, HIGH)
                wrong = model(new).argmax(1) != y[idx]
                norm = (new - x[idx]).flatten(1).abs().max(1).values
                closer = wrong & (norm < distance[idx])
                result[idx[closer]], distance[idx[closer]] = new[closer], norm[closer]
                new[wrong] = x[idx][wrong] + (new[wrong] - x[idx][wrong]) * BACKTRACK
                iterate[idx] = new
                fooled[idx] = distance[idx] <= eps
    return result, fooled


def fab_targeted(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = 100,
                 targets: int = 9) -> tuple[torch.Tensor, torch.Tensor]:
    """FAB-T: one run per target class (2nd … (targets + 1)-th largest clean logit), each on the images still standing.

    Returns (adversarial batch, fooled).
    """
    return over_targets(lambda xs, ys, ts: fab_targeted_run(model, xs, ys, ts, eps, steps), model, x, y, targets)
