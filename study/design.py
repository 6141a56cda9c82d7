"""The experimental design: Latin-square stimulus lists and each session's seeded trial order.

Sources (digits that images were made from) are split into blocks of `trials_per_participant`;
within a block, list r shows source k in condition (k + r) mod C. So each list holds every source
of its block once and every condition equally often, and every stimulus lies in exactly one list:
balancing participants over lists balances answers over stimuli.
"""
from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from study.config import StudyConfig
from study.models import CONDITIONS


class DesignError(ValueError):
    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("the stimulus set does not fit the study config: " + "; ".join(problems))


@dataclass(frozen=True)
class ListDesign:
    """A study's Latin-square lists (engine.stimuli.design.Design is a stimulus set's design)."""
    conditions: tuple[str, ...]
    lists: list[list[str]]  # manifest stimulus ids per list
    practice: list[str]
    catch: list[str]
    unused_sources: list[str]


def catch_count(config: StudyConfig, images: int) -> int:
    return round(images * config.catch_rate)


def build_list_design(manifest: dict[str, Any], config: StudyConfig) -> ListDesign:
    """Check that the stimulus set supports the config and cut it into lists."""
    experimental = [s for s in manifest["stimuli"] if s["role"] == "experimental"]
    present = {s["condition"] for s in experimental}
    conditions = config.conditions or tuple(c for c in CONDITIONS if c in present)
    problems = [f"condition {c!r} has no experimental stimuli" for c in conditions if c not in present]

    by_source: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for s in experimental:
        if s["condition"] in conditions:
            by_source[s["source_id"]][s["condition"]].append(s["id"])
    for source, cells in sorted(by_source.items()):
        missing = [c for c in conditions if not cells.get(c)]
        doubled = [c for c in conditions if len(cells.get(c, [])) > 1]
        if missing:
            problems.append(f"source {source} has no stimulus for condition(s) {', '.join(missing)}")
        if doubled:
            problems.append(f"source {source} has more than one stimulus for condition(s) {', '.join(doubled)}")

    sources = sorted(by_source)
    # Default: as many sources as divide evenly among the conditions.
    per_list = config.trials_per_participant or len(sources) - len(sources) % len(conditions)
    if per_list % len(conditions):
        problems.append(f"trials_per_participant ({per_list}) must be a multiple of the number of conditions "
                        f"({len(conditions)}: {', '.join(conditions)}) so each is shown equally often")
    if per_list > len(sources):
        problems.append(f"trials_per_participant ({per_list}) exceeds the {len(sources)} source digits")
    practice = sorted(s["id"] for s in manifest["stimuli"] if s["role"] == "practice")
    catch = sorted(s["id"] for s in manifest["stimuli"] if s["role"] == "catch")
    if len(practice) < config.practice_trials:
        problems.append(f"practice_trials is {config.practice_trials} but the set has {len(practice)} practice image(s)")
    if len(catch) < catch_count(config, per_list):
        problems.append(f"catch_rate asks for {catch_count(config, per_list)} catch image(s) per participant "
                        f"but the set has {len(catch)}")
    if problems:
        raise DesignError(problems)

    random.Random(config.seed).shuffle(sources)
    blocks = [sources[i:i + per_list] for i in range(0, len(sources) - per_list + 1, per_list)]
    lists = [[by_source[src][conditions[(k + r) % len(conditions)]][0] for k, src in enumerate(block)]
             for block in blocks for r in range(len(conditions))]
    return ListDesign(conditions, lists, practice, catch, sorted(sources[len(blocks) * per_list:]))


def build_session_plan(list_items: list[int], practice_pool: list[int], catch_pool: list[int],
                       config: StudyConfig, seed: int) -> list[list[Any]]:
    """The answer slots of one session, in order: [stimulus pk, task, block, is_catch].

    Practice images come first; catch images are mixed into the main block at random positions
    (never first, so a participant has seen one real image before any check).
    """
    rng = random.Random(seed)
    practice = rng.sample(practice_pool, config.practice_trials)
    main: list[tuple[int, bool]] = [(pk, False) for pk in rng.sample(list_items, len(list_items))]
    for pk in rng.sample(catch_pool, catch_count(config, len(list_items))):
        main.insert(rng.randint(1, len(main)), (pk, True))
    images = [(pk, "practice", False) for pk in practice] + [(pk, "main", is_catch) for pk, is_catch in main]
    return [[pk, task, block, is_catch] for pk, block, is_catch in images for task in config.tasks]
