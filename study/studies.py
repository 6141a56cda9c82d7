"""Creating a study from a config and a stimulus set (the `create-study` command's work)."""
from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

from sqlalchemy import select

from contracts import load_stimulus_set
from study.config import StudyConfig
from study.db import db
from study.design import Design, build_design
from study.lifecycle import config_sha256, open_study
from study.models import AssignmentList, Stimulus, Study


class StudyExists(ValueError):
    pass


def create_study(config: StudyConfig, stimuli_dir: str | Path) -> tuple[Study, Design]:
    """Validate the set (schema and every image hash), cut it into lists, store it all at once.

    Raises contracts.ContractError, design.DesignError or StudyExists; nothing is written then.
    """
    stimuli_dir = Path(stimuli_dir)
    manifest = load_stimulus_set(stimuli_dir)
    design = build_design(manifest, config)
    if db.session.scalar(select(Study.id).where(Study.slug == config.id)) is not None:
        raise StudyExists(f"a study with id {config.id!r} already exists; give the config another id")

    study = Study(
        slug=config.id, title=config.title, config=config.as_dict(), config_sha256=config_sha256(config.as_dict()),
        manifest_sha256=hashlib.sha256((stimuli_dir / "manifest.json").read_bytes()).hexdigest(),
        rating_min=config.rating.min, rating_max=config.rating.max,
        target_participants=config.target_participants, lease_seconds=round(config.lease_minutes * 60),
    )
    db.session.add(study)
    by_key: dict[str, Stimulus] = {}
    for s in manifest["stimuli"]:
        by_key[s["id"]] = Stimulus(
            study=study, key=s["id"], public_id=secrets.token_hex(16), file=s["file"], sha256=s["sha256"],
            image=(stimuli_dir / s["file"]).read_bytes(), source_id=s["source_id"], condition=s["condition"],
            role=s["role"], model_id=s["model_id"], attack=s["attack"]["name"] if s["attack"] else None,
            true_label=s["true_label"], target_label=s["target_label"],
            norm_l0=s["norms"]["l0"], norm_l2=s["norms"]["l2"], norm_linf=s["norms"]["linf"], attributes=s,
        )
    db.session.add_all(by_key.values())
    db.session.flush()  # assigns the primary keys the lists refer to
    for position, keys in enumerate(design.lists):
        db.session.add(AssignmentList(study=study, position=position, name=f"list-{position:02d}",
                                      stimulus_ids=[by_key[k].id for k in keys]))
    open_study(study, "cli")  # a new study opens at once, frozen as it was stored
    db.session.commit()
    return study, design
