"""One targeted gradient-sign step, the attack of the paper's accuracy curves.

Kurakin, Goodfellow & Bengio, arXiv 2016 (the targeted form of Goodfellow et al.'s FGSM, ICLR 2015).
With target t and step ε:

    x' = clip₍₀,₁₎(x − ε · sign ∇ₓ CE(t, f(x)))

Design field: step (recorded as eps); engine.attacks.tgsm.
"""
from __future__ import annotations

from engine import attacks
from engine.stimulus_attacks.base import Attack, register

ATTACK = register(Attack(
    name="tgsm", summary="one targeted gradient-sign step of size step", paper="Kurakin et al. 2016",
    from_design=lambda design: {"eps": design.step},
    run=lambda model, x, target, p: attacks.tgsm(model, x, target, p["eps"])))
