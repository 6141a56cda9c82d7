"""`engine evaluate`'s ensemble rows and its gradient-masking flag.

Rows in `engine evaluate`'s format (one count per model and ε; `aggregate` turns counts into shares
with intervals): attack "ensemble" counts the images that stand through the whole AutoAttack
cascade (engine/ensemble.py), "apgd-ce" those that stand through its first, cross-entropy attack
alone, and "zero-gradient" (ε 0) the images whose cross-entropy input gradient is exactly zero.

A model is flagged as gradient-masked, and never ranked as robust, when either sign of masking
(Athalye, Carlini & Wagner 2018; Croce & Hein 2020) is plain:
- at least ZERO_GRADIENT_SHARE of the images have an exactly-zero input gradient (a saturated
  softmax: gradient attacks on the cross-entropy have nothing to follow), or
- at some ε the scale-invariant DLR attacks and the gradient-free Square attack leave at least
  WIDE_MARGIN fewer images standing than APGD-CE alone.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from engine.attacks import eval_mode
from engine.ensemble import EnsembleSettings, autoattack

ZERO_GRADIENT_SHARE = 0.10
WIDE_MARGIN = 0.10


def zero_gradient_count(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """Images whose per-image cross-entropy gradient ∇ₓ CE(y, f(x)) is exactly zero (summed loss: no 1/N underflow)."""
    device = next(model.parameters()).device
    x = x.detach().to(device).requires_grad_(True)
    with eval_mode(model):
        (grad,) = torch.autograd.grad(F.cross_entropy(model(x), y.to(device), reduction="sum"), x)
    return int((grad.flatten(1) == 0).all(1).sum())


def ensemble_counts(models: dict[str, nn.Module], x: torch.Tensor, y: torch.Tensor, eps_list: list[float],
                    settings: EnsembleSettings = EnsembleSettings(), progress: bool = True) -> list[dict]:
    """White-box rows per model: zero-gradient count, and standing counts after APGD-CE and after the ensemble per ε."""
    rows = []
    jobs = [(name, eps) for name in models for eps in eps_list]
    for name, model in models.items():
        rows.append({"source": name, "evaluated": name, "attack": "zero-gradient", "eps": 0.0, "correct": zero_gradient_count(model, x, y)})
    for name, eps in tqdm(jobs, desc="ensemble", unit="attack", disable=not progress):
        result = autoattack(models[name], x, y, eps, settings)
        rows += [{"source": name, "evaluated": name, "attack": "apgd-ce", "eps": eps, "correct": result.robust_after("apgd-ce")},
                 {"source": name, "evaluated": name, "attack": "ensemble", "eps": eps, "correct": int(result.robust.sum())}]
    return rows


def masking_reasons(rows: list[dict]) -> dict[str, list[str]]:
    """Per model with ensemble rows (aggregated: `accuracy` is a share), why it is flagged as gradient-masked ([] if not)."""
    at = {(r["evaluated"], r["attack"], r["eps"]): r["accuracy"] for r in rows if r["source"] == r["evaluated"]}
    reasons: dict[str, list[str]] = {}
    for (name, attack, eps), share in sorted(at.items(), key=lambda item: (item[0][0], item[0][2])):
        if attack == "zero-gradient":
            reasons.setdefault(name, [])
            if share >= ZERO_GRADIENT_SHARE:
                reasons[name].append(f"{100 * share:.1f}% of images have an exactly-zero cross-entropy gradient")
        elif attack == "ensemble" and at.get((name, "apgd-ce", eps), share) - share >= WIDE_MARGIN:
            reasons.setdefault(name, []).append(f"at ε={eps} the DLR and gradient-free attacks leave {100 * share:.1f}% "
                                                f"standing, APGD-CE alone {100 * at[(name, 'apgd-ce', eps)]:.1f}%")
    return reasons


def ensemble_markdown(rows: list[dict]) -> str:
    """The report's ensemble section: robust accuracy beside APGD-CE alone, the masking flags, and a ranking of unflagged models."""
    eps_list = sorted({r["eps"] for r in rows if r["attack"] == "ensemble"})
    if not any(r["attack"] == "zero-gradient" for r in rows):
        return ""
    at = {(r["evaluated"], r["attack"], r["eps"]): r for r in rows if r["source"] == r["evaluated"]}
    reasons = masking_reasons(rows)
    cell = lambda r: f"{100 * r['accuracy']:.1f} [{100 * r['ci_low']:.0f}–{100 * r['ci_high']:.0f}]"
    lines = ["\n## White-box AutoAttack ensemble (APGD-CE, APGD-T, FAB-T, Square; worst case per image)\n",
             "| model | " + " | ".join(f"ensemble ε = {e}" for e in eps_list) + " | " + " | ".join(f"APGD-CE alone ε = {e}" for e in eps_list)
             + " | zero-gradient images | gradient masking |", "|---" * (2 * len(eps_list) + 3) + "|"]
    for name, why in reasons.items():
        lines.append(f"| {name} | " + " | ".join(cell(at[(name, a, e)]) for a in ("ensemble", "apgd-ce") for e in eps_list)
                     + f" | {100 * at[(name, 'zero-gradient', 0.0)]['accuracy']:.1f}% | " + ("FLAGGED: " + "; ".join(why) if why else "none seen") + " |")
    ranked = sorted((n for n, why in reasons.items() if not why),
                    key=lambda n: -sum(at[(n, "ensemble", e)]["accuracy"] for e in eps_list))
    flagged = [n for n, why in reasons.items() if why]
    if eps_list:
        lines.append("\nMost robust first (mean ensemble-robust accuracy over ε; gradient-masked models are not ranked): "
                     + (", ".join(ranked) or "none") + (f". Not ranked, gradient-masked: {', '.join(flagged)}." if flagged else "."))
    return "\n".join(lines) + "\n"
