"""Adversarial attacks: one function each, batched tensors in and out.

Every attack puts the model in eval mode (BatchNorm running statistics, no dropout), restores
the mode it found, and clips pixels to the data range [0, 1]. Update rules follow the papers
and torchattacks' conventions, checked bit for bit in tests/engine/test_attack_conformance.py:
FGSM = torchattacks.FGSM, PGD = torchattacks.PGD (with or without random start), iterated TGSM
without an ε-ball = torchattacks.BIM(eps=1) targeted, JSMA (θ > 0) = torchattacks.JSMA.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from engine.models import eval_mode  # noqa: F401  (attacks.eval_mode: the attacks' mode rule)

LOW, HIGH = 0.0, 1.0
# JSMA scores pixel pairs in chunks of at most this many pair scores (float32: 16 MiB each);
# torchattacks scores one image at a time and needed 84 GiB on 224×224×3 inputs (its issue #187).
JSMA_CHUNK = 1 << 22


def logits_and_gradient(model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits at x and ∇ₓ of the batch-mean cross-entropy.

    Mean, not sum, because that is what torchattacks (and Ross's code) differentiate: the two
    differ by a factor 1/N whose rounding can flip the sign of a near-zero gradient component,
    and in an iterated attack one flipped pixel cascades. Each example's gradient is still its
    own (the model is in eval mode, so examples do not interact).
    """
    x = x.detach().clone().requires_grad_(True)
    logits = model(x)
    (grad,) = torch.autograd.grad(F.cross_entropy(logits, labels), x)
    return logits.detach(), grad


def loss_gradient(model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """∇ₓ of the batch-mean cross-entropy (see `logits_and_gradient`)."""
    return logits_and_gradient(model, x, labels)[1]


def _project(adv: torch.Tensor, x: torch.Tensor, eps: float | None) -> torch.Tensor:
    """Onto the L∞ ball of radius eps around x (if any), then the pixel range; torchattacks.PGD's order."""
    if eps is not None:
        adv = x + (adv - x).clamp(-eps, eps)
    return adv.clamp(LOW, HIGH).detach()


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """Goodfellow et al. 2015: x' = clip(x + ε·sign(∇ₓ CE(y, f(x))))."""
    with eval_mode(model):
        return (x + eps * loss_gradient(model, x, y).sign()).clamp(LOW, HIGH).detach()


def tgsm(model: nn.Module, x: torch.Tensor, target: torch.Tensor, eps: float) -> torch.Tensor:
    """Targeted gradient sign (Kurakin et al. 2016): x' = clip(x − ε·sign(∇ₓ CE(t, f(x))))."""
    with eval_mode(model):
        return (x - eps * loss_gradient(model, x, target).sign()).clamp(LOW, HIGH).detach()


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, step: float, steps: int,
        random_start: bool = True, seed: int | None = None) -> torch.Tensor:
    """L∞ PGD (Madry et al. 2018), in torchattacks' order.

    x⁰ = clip(x + U(−ε, ε)) (random start) or x;  xᵏ⁺¹ = clip(x + clamp(xᵏ + α·sign ∇ₓCE(y, f(xᵏ)) − x, −ε, ε)).
    The start is drawn like torchattacks draws it, from a generator seeded with `seed` (the global
    RNG when None), so `seed=s` equals torchattacks.PGD after torch.manual_seed(s).
    """
    x = x.detach()
    adv = x.clone()
    if random_start:
        generator = None if seed is None else torch.Generator(device=x.device).manual_seed(seed)
        adv = (adv + torch.empty_like(adv).uniform_(-eps, eps, generator=generator)).clamp(LOW, HIGH)
    with eval_mode(model):
        for _ in range(steps):
            adv = _project(adv + step * loss_gradient(model, adv, y).sign(), x, eps)
    return adv


def madry_step(eps: float, steps: int) -> float:
    """Madry et al.'s PGD step size for evaluation: 2.5·ε / steps, so `steps` steps can cross the ball and back."""
    return 2.5 * eps / steps


def itgsm(model: nn.Module, x: torch.Tensor, target: torch.Tensor, step: float = 0.1, iterations: int = 10,
          eps: float | None = None, stop_confidence: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Iterated targeted gradient sign (Kurakin et al. 2016; the TGSM of Ross & Doshi-Velez 2018).

    xᵏ⁺¹ = clip(Π_ε(xᵏ − α·sign ∇ₓ CE(t, f(xᵏ)))), k < iterations, where Π_ε projects onto the
    L∞ ball of radius `eps` around x; Ross's code has no ball (eps=None), so the L∞ distance can
    reach iterations·α. With `stop_confidence`, an example stops moving as soon as the model gives
    its target at least that probability (the gradient is then taken over the examples still
    moving). Without it, this is torchattacks.BIM(eps=1, alpha=step, steps=iterations) targeted.

    Returns the adversarial batch and per-example success: the final prediction is the target
    (and, with `stop_confidence`, with at least that probability).
    """
    x = x.detach()
    adv = x.clone()
    moving = torch.ones(len(x), dtype=torch.bool, device=x.device)
    with eval_mode(model):
        for _ in range(iterations):
            idx = moving.nonzero().squeeze(1)
            if len(idx) == 0:
                break
            logits, grad = logits_and_gradient(model, adv[idx], target[idx])
            if stop_confidence is not None:
                reached = logits.softmax(1).gather(1, target[idx, None]).squeeze(1) >= stop_confidence
                moving[idx[reached]] = False
                idx, grad = idx[~reached], grad[~reached]
            adv[idx] = _project(adv[idx] - step * grad.sign(), x[idx], eps)
        with torch.no_grad():
            probs = model(adv).softmax(1)
    confidence, prediction = probs.max(1)
    success = prediction == target
    if stop_confidence is not None:
        success &= confidence >= stop_confidence
    return adv, success


def _pareto_layers(t: torch.Tensor, b: torch.Tensor, layers: int) -> torch.Tensor:
    """B×n mask of the points in the first `layers` (weak) Pareto layers of the points (t, b) of each row."""
    order = b.argsort(dim=1, descending=True, stable=True)
    order = order.gather(1, t.gather(1, order).argsort(dim=1, descending=True, stable=True))
    b_sorted = b.gather(1, order)  # now t descending, b descending among equal t
    chosen = torch.zeros_like(b_sorted, dtype=torch.bool)
    for _ in range(layers):
        free = b_sorted.masked_fill(chosen, -math.inf)
        best_before = F.pad(free.cummax(1).values[:, :-1], (1, 0), value=-math.inf)
        chosen |= free > best_before  # not weakly dominated by an earlier point still free
    return torch.zeros_like(chosen).scatter_(1, order, chosen)


def _saliency(t_p: torch.Tensor, b_p: torch.Tensor, t_q: torch.Tensor, b_q: torch.Tensor) -> torch.Tensor:
    """(t_p + t_q)⁺·(b_p + b_q)⁺ with b = −o: α·|β| for a valid pair (α > 0 > β) and 0 otherwise,
    the same floats as torchattacks' `alpha * |beta| * mask` (negation and addition commute exactly)."""
    return (t_p + t_q).clamp_(min=0).mul_((b_p + b_q).clamp_(min=0))


def _best_pairs(t: torch.Tensor, o: torch.Tensor, domain: torch.Tensor, increasing: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """JSMA's pair choice per row: the first (row-major) p ≠ q with the highest saliency, and whether it is valid.

    t, o: B×n gradients of the target logit and of the other logits' sum; domain: B×n features
    still allowed to change. Exact without scoring all n² pairs: the saliency of (p, q) never
    falls when q's t or −o grows (in floats too: rounding is monotonic), so every p's best
    partner q ≠ p lies on the first two Pareto layers of the points (t_q, −o_q) — a handful of
    features. That gives each p's best score, hence the best row; one full row then gives q.
    """
    if not increasing:  # α < 0 < β is α' > 0 > β' for the negated gradients, with the same |α·β|
        t, o = -t, -o
    # Features outside the domain get an extreme value so that no pair with one of them is valid
    # (Papernot's Algorithm 3 as CleverHans ≥ 3 and torchattacks write it).
    outside = (~domain).to(t.dtype) * 2.0
    t = t - outside * t.abs().amax(1, keepdim=True)
    b = -(o + outside * o.abs().amax(1, keepdim=True))
    n = t.shape[1]
    candidates = _pareto_layers(t, b, layers=2)
    m = int(candidates.sum(1).max())
    # Candidates first, padded with other features (harmless: they are real partners too).
    partner = torch.sort((~candidates).to(torch.uint8), dim=1, stable=True).indices[:, :m]
    best_per_p = torch.empty_like(t)
    rows = max(1, JSMA_CHUNK // (n * m))
    for s in range(0, len(t), rows):
        c = slice(s, s + rows)
        score = _saliency(t[c, :, None], b[c, :, None], t[c].gather(1, partner[c])[:, None], b[c].gather(1, partner[c])[:, None])
        score.masked_fill_(partner[c, None, :] == torch.arange(n, device=t.device)[:, None], 0)  # p = q
        best_per_p[c] = score.amax(2)
    value = best_per_p.amax(1, keepdim=True)
    p = (best_per_p == value).to(torch.uint8).argmax(1, keepdim=True)  # first row holding the best pair
    row = _saliency(t.gather(1, p), b.gather(1, p), t, b).scatter_(1, p, 0)
    q = (row == value).to(torch.uint8).argmax(1, keepdim=True)
    return p.squeeze(1), q.squeeze(1), value.squeeze(1) > 0


def jsma(model: nn.Module, x: torch.Tensor, target: torch.Tensor, theta: float = 1.0,
         gamma: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """Jacobian saliency map attack (Papernot et al. 2016, Algorithm 3, pairwise, on the logits Z).

    Per example and iteration, with J = ∂Z/∂x, t = J_target and o = Σ_{j≠target} J_j: among pairs
    (p, q) of features still in the search domain, with α = t_p + t_q and β = o_p + o_q, take the
    one maximising |α·β| subject to α > 0 > β (θ > 0, increasing pixels) or α < 0 < β (θ < 0,
    decreasing), then x_p, x_q ← clip(x + θ) and drop p, q from the domain. The domain starts as
    the pixels below 0.99 (increasing) or above 0.01 (decreasing). An example stops when the model
    predicts its target, after ceil(n·γ/2) iterations (so at most a fraction γ of the n features
    change), when its domain is empty, or when no valid pair is left.

    Batched, with two vector-Jacobian products per iteration (∇Z_t and ∇ΣZ) instead of one per
    class. For θ > 0 the output equals torchattacks.JSMA image for image, except that where no
    valid pair is left torchattacks goes on "choosing" pixel 0 (its argmax over all-zero scores;
    CleverHans #221) and this stops instead, as advertorch does. torchattacks' θ < 0 scores valid
    pairs negatively and never moves, so decreasing mode follows CleverHans' score.
    Returns the adversarial batch and per-example success (prediction = target).
    """
    increasing = theta > 0
    shape = x.shape
    adv = x.detach().flatten(1).clone()
    max_iters = math.ceil(adv.shape[1] * gamma / 2)
    domain = adv < 0.99 if increasing else adv > 0.01
    active = torch.ones(len(x), dtype=torch.bool, device=x.device)
    success = torch.zeros_like(active)
    with eval_mode(model):
        for iteration in range(max_iters + 1):
            idx = active.nonzero().squeeze(1)
            if len(idx) == 0:
                break
            xa = adv[idx].view(-1, *shape[1:]).requires_grad_(True)
            logits = model(xa)
            success[idx] = logits.argmax(1) == target[idx]
            go = ~success[idx] & domain[idx].any(1) & (iteration < max_iters)
            active[idx] = go
            if not go.any():
                continue
            onehot = F.one_hot(target[idx], logits.shape[1]).to(logits.dtype)
            (grad_t,) = torch.autograd.grad(logits, xa, onehot, retain_graph=True)
            (grad_all,) = torch.autograd.grad(logits, xa, torch.ones_like(logits))
            grad_t, grad_all, idx = grad_t.flatten(1)[go], grad_all.flatten(1)[go], idx[go]
            p, q, valid = _best_pairs(grad_t, grad_all - grad_t, domain[idx], increasing)
            active[idx[~valid]] = False
            idx, p, q = idx[valid], p[valid], q[valid]
            adv[idx, p] = (adv[idx, p] + theta).clamp(LOW, HIGH)
            adv[idx, q] = (adv[idx, q] + theta).clamp(LOW, HIGH)
            domain[idx, p] = False
            domain[idx, q] = False
    return adv.view(shape).detach(), success
