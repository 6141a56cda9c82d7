"""The training regimes (defenses), one module each; importing this package registers them all.

See `base.py` for what a regime declares. The order here is the order of `engine train
--condition all` and of the docs.
"""
from engine.regimes import adversarial, distilled, gradreg, gradreg_uniform, normal, pgd_adversarial, trades  # noqa: F401
from engine.regimes.base import REGISTRY, Params, Regime, get, help_text, markdown_table, names, register, unregister

__all__ = ["REGISTRY", "Params", "Regime", "get", "help_text", "markdown_table", "names", "register", "unregister"]
