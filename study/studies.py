"""Creating a study from a config and a stimulus set (the `create-study` command's work).

The images are copied into the study's own storage (the database), so the set's folder can
change or go away afterwards. Only plain files inside the set are read: a symlink (which could
point at any file the server may read, to be served to participants) or a path leading out of
the folder is refused, and so is a file that does not decode as the PNG the manifest declares.
"""
from __future__ import annotations

import hashlib
import io
import secrets
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from sqlalchemy import select

from contracts import ContractError, load_stimulus_set
from study.auth import grant
from study.config import ConfigError, RatingScale, StudyConfig
from study.db import db
from study.design import ListDesign, build_list_design
from study.lifecycle import config_sha256, open_study
from study.models import DIGIT_NAMES, AssignmentList, Stimulus, Study


class StudyExists(ValueError):
    pass


def read_image(stimuli_dir: Path, file: str) -> bytes:
    """The bytes of one image of the set; ContractError unless it is a plain PNG file inside it."""
    path, root = stimuli_dir / file, stimuli_dir.resolve()
    for part in [path, *path.parents]:
        if part == stimuli_dir:
            break
        if part.is_symlink():
            raise ContractError(str(stimuli_dir), [f"{file}: {part.relative_to(stimuli_dir)} is a symbolic link; "
                                                   "copy the image into the set"])
    if not path.resolve().is_relative_to(root) or not path.is_file():
        raise ContractError(str(stimuli_dir), [f"{file}: not a file inside the stimulus set"])
    data = path.read_bytes()
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise ContractError(str(stimuli_dir), [f"{file}: not a valid PNG image"]) from None
    return data


def check_words(config: StudyConfig, classes: list[str] | None) -> None:
    """ConfigError when a set of named classes (not the digits) would be asked about in the digit
    study's default words: "Which digit is this?" above buttons reading circle, square, triangle."""
    if not classes or classes == DIGIT_NAMES:
        return
    digit_words = [key for key, text, default in (("label.question", config.label_question, StudyConfig.label_question),
                                                  ("rate.question", config.rating.question, RatingScale.question))
                   if text == default]
    if digit_words:
        raise ConfigError("study config", [
            f"the stimulus set's classes are {', '.join(classes)}, but {' and '.join(digit_words)} "
            "ask about digits (the default); set [label] question (e.g. \"Which of these is it?\") and "
            "[rate] question naming the class by {class}"])


def create_study(config: StudyConfig, stimuli_dir: str | Path, owner: str | None = None) -> tuple[Study, ListDesign]:
    """Validate the set (schema, every image hash, every image a PNG file of the set), cut it into
    lists, store it all at once; `owner` (a researcher's name) gets the owner role.

    Raises contracts.ContractError, config.ConfigError (see check_words), design.DesignError,
    StudyExists or auth.AccountError; nothing is written then.
    """
    stimuli_dir = Path(stimuli_dir)
    manifest = load_stimulus_set(stimuli_dir)
    check_words(config, manifest["dataset"].get("classes"))
    images = {s["file"]: read_image(stimuli_dir, s["file"]) for s in manifest["stimuli"]}
    design = build_list_design(manifest, config)
    if db.session.scalar(select(Study.id).where(Study.slug == config.id)) is not None:
        raise StudyExists(f"a study with id {config.id!r} already exists; give the config another id")

    study = Study(
        slug=config.id, title=config.title, config=config.as_dict(), config_sha256=config_sha256(config.as_dict()),
        manifest_sha256=hashlib.sha256((stimuli_dir / "manifest.json").read_bytes()).hexdigest(),
        classes=manifest["dataset"].get("classes"),
        rating_min=config.rating.min, rating_max=config.rating.max,
        target_participants=config.target_participants, lease_seconds=round(config.lease_minutes * 60),
    )
    db.session.add(study)
    by_key: dict[str, Stimulus] = {}
    for s in manifest["stimuli"]:
        by_key[s["id"]] = Stimulus(
            study=study, key=s["id"], public_id=secrets.token_hex(16), file=s["file"], sha256=s["sha256"],
            image=images[s["file"]], source_id=s["source_id"], condition=s["condition"],
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
    if owner is not None:
        grant(study, owner, "owner", "cli")
    db.session.commit()
    return study, design
