"""What a session asks of a participant, in numbers, and the config texts filled in with them.

The consent, instruction and preview texts name their numbers by placeholder (`{n_images}`,
`{n_answers}`, `{minutes}`, … see `config.PLACEHOLDERS`), filled in here from the study's plan,
so a text can never promise a different study from the one that follows it.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from sqlalchemy import select

from study.config import PLACEHOLDER, StudyConfig
from study.db import db
from study.design import catch_count
from study.models import AssignmentList, Study


@dataclass(frozen=True)
class Workload:
    practice_images: int
    main_images: int  # catch images included: participants are not told which they are
    questions_per_image: int
    break_every: int
    seconds_per_answer: float

    @property
    def images(self) -> int:
        return self.practice_images + self.main_images

    @property
    def answers(self) -> int:
        return self.images * self.questions_per_image

    @property
    def breaks(self) -> int:
        # The trial page offers a break after every `break_every` main images, never after the last.
        return (self.main_images - 1) // self.break_every if self.break_every and self.main_images else 0

    @property
    def minutes(self) -> int:
        return max(1, math.ceil(self.answers * self.seconds_per_answer / 60))

    def placeholders(self) -> dict[str, int]:
        return {"n_images": self.images, "n_practice": self.practice_images, "n_main": self.main_images,
                "n_questions": self.questions_per_image, "n_answers": self.answers, "n_breaks": self.breaks,
                "break_every": self.break_every, "minutes": self.minutes}


def workload(config: StudyConfig, list_length: int) -> Workload:
    """The numbers of a session whose assignment list holds `list_length` experimental images."""
    return Workload(config.practice_trials, list_length + catch_count(config, list_length), len(config.tasks),
                    config.break_every, config.seconds_per_answer)


def study_workload(study: Study, config: StudyConfig) -> Workload:
    """Every list of a study has the same length (the design cuts them so); the first one tells."""
    ids = db.session.scalar(select(AssignmentList.stimulus_ids).where(AssignmentList.study_id == study.id)
                            .order_by(AssignmentList.position).limit(1))
    return workload(config, len(ids or []))


def fill(text: str, numbers: Workload) -> str:
    """The text with each placeholder replaced (parse_config has refused unknown ones)."""
    values = numbers.placeholders()
    return re.sub(PLACEHOLDER, lambda m: str(values[m.group(1)]), text)
