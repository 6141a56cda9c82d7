"""The attacks a stimulus set can be made with, one module each; importing this package registers them.

See `base.py` for what an attack declares. The order here is the order of `--help` and the docs.
"""
from engine.stimulus_attacks import iterated_tgsm, jsma, tgsm  # noqa: F401
from engine.stimulus_attacks.base import REGISTRY, Attack, Params, get, help_text, names, register, unregister

__all__ = ["REGISTRY", "Attack", "Params", "get", "help_text", "names", "register", "unregister"]
