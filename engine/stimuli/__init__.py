"""Stimulus sets for the human study, one module per step: the design (design.py), generating the
images and their records (generate.py), writing the set (write.py) and verifying it later (verify.py)."""
from __future__ import annotations

import argparse

from engine.stimuli import generate, verify as _verify
from engine.stimuli.design import DESIGN_FILE, NAMED_DESIGNS, STIMULUS_ATTACKS, Design, load_design
from engine.stimuli.generate import assign_targets, build, match_l2, select_images
from engine.stimuli.verify import find_models, pool_images, verify
from engine.stimuli.write import norms, to_uint8, write

__all__ = ["DESIGN_FILE", "NAMED_DESIGNS", "STIMULUS_ATTACKS", "Design", "add_parser", "assign_targets", "build", "find_models", "load_design",
           "match_l2", "norms", "pool_images", "select_images", "to_uint8", "verify", "write"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    """`engine generate-stimuli` and `engine verify`."""
    generate.add_parser(sub)
    _verify.add_parser(sub)
