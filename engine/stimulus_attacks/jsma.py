"""Jacobian saliency map attack, pairwise on the logits.

Papernot, McDaniel, Jha, Fredrikson, Celik & Swami, "The limitations of deep learning in adversarial
settings", IEEE EuroS&P 2016, Algorithm 3. Per image and iteration, with J = ∂Z/∂x, α = J_t,p + J_t,q
and β = Σ_{j≠t} (J_j,p + J_j,q) over pairs (p, q) still in the search domain:

    (p, q) = argmax |α·β| subject to α > 0 > β (θ > 0) or α < 0 < β (θ < 0);  x_p, x_q ← clip₍₀,₁₎(x + θ)

then p and q leave the domain; an image stops once f predicts t, after ⌈n·γ/2⌉ iterations, or when
no valid pair is left. Design fields: theta, gamma; engine.attacks.jsma.
"""
from __future__ import annotations

from engine import attacks
from engine.stimulus_attacks.base import Attack, register

ATTACK = register(Attack(
    name="jsma", summary="Jacobian saliency map attack (theta, gamma)", paper="Papernot et al., EuroS&P 2016",
    from_design=lambda design: {"theta": design.theta, "gamma": design.gamma},
    run=lambda model, x, target, p: attacks.jsma(model, x, target, p["theta"], p["gamma"])[0]))
