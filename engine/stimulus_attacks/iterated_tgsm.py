"""Iterated targeted gradient sign, the attack that makes the paper's stimuli.

Kurakin, Goodfellow & Bengio, "Adversarial examples in the physical world", ICLR workshop 2017
(arXiv 2016); the TGSM of Ross & Doshi-Velez, AAAI 2018. With target t, step α and K iterations:

    x⁰ = x,  xᵏ⁺¹ = clip₍₀,₁₎(Π_ε(xᵏ − α · sign ∇ₓ CE(t, f(xᵏ)))),  k < K

where Π_ε projects onto the L∞ ball of radius ε around x (no ball when eps is none, as in Ross's
code). With stop_confidence p, an image stops moving once f gives t probability ≥ p.
Design fields: step, iterations, eps (0: none), stop_confidence (0: never); engine.attacks.itgsm.
"""
from __future__ import annotations

from engine import attacks
from engine.stimulus_attacks.base import Attack, register


def _from_design(design) -> dict:
    return {"step": design.step, "iterations": design.iterations, "eps": design.eps or None,
            "stop_confidence": design.stop_confidence or None}


ATTACK = register(Attack(
    name="iterated-tgsm", summary="iterated targeted gradient sign (step, iterations, eps, stop_confidence)",
    paper="Kurakin et al. 2016; Ross & Doshi-Velez, AAAI 2018", from_design=_from_design,
    run=lambda model, x, target, p: attacks.itgsm(model, x, target, p["step"], p["iterations"], p["eps"], p["stop_confidence"])[0]))
