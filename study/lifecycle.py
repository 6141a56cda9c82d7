"""A study's life: open (frozen under a hash of its config and images), closed, audited.

`create-study` opens a study at once; `flask --app study close SLUG` stops new sessions (running
ones may finish) and `open SLUG` takes new ones again, but only while the config and every image
stored for the study still match the hash recorded when it was first opened. Researcher actions
that change data or a study's state are written to the audit_event table.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import select

from study.db import db, utcnow
from study.models import AuditEvent, Stimulus, Study


class LifecycleError(ValueError):
    pass


def audit(actor: str, action: str, **detail: Any) -> None:
    """Record an action in the caller's transaction (it commits with the change it describes)."""
    db.session.add(AuditEvent(at=utcnow(), actor=actor, action=action, detail=detail))


def config_sha256(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def fingerprint(study: Study) -> str:
    """sha256 over the stored config, the class names (when the set has them: a digit study's hash
    is the one it had before studies kept names) and each stimulus's id and image bytes (re-hashed here)."""
    digest = hashlib.sha256(config_sha256(study.config).encode())
    if study.classes is not None:
        digest.update(json.dumps(study.classes).encode())
    for key, image in db.session.execute(select(Stimulus.key, Stimulus.image)
                                         .where(Stimulus.study_id == study.id).order_by(Stimulus.key)):
        digest.update(f"{key}\0{hashlib.sha256(image).hexdigest()}\n".encode())
    return digest.hexdigest()


def find_study(slug: str) -> Study:
    study = db.session.scalar(select(Study).where(Study.slug == slug))
    if study is None:
        known = db.session.scalars(select(Study.slug).order_by(Study.slug)).all()
        raise LifecycleError(f"no study {slug!r}" + (f" (studies: {', '.join(known)})" if known else " (no studies yet)"))
    return study


def open_study(study: Study, actor: str) -> None:
    """Open (or reopen) a study; the first opening records its frozen hash. Caller commits."""
    current = fingerprint(study)
    if study.frozen_sha256 and current != study.frozen_sha256:
        raise LifecycleError(f"study {study.slug!r} changed since it was opened (frozen hash {study.frozen_sha256[:12]}…, "
                             f"now {current[:12]}…): create a new study instead of reopening this one")
    now = utcnow()
    study.frozen_sha256, study.is_open, study.closed_at = current, True, None
    study.opened_at = study.opened_at or now
    audit(actor, "open", study=study.slug, frozen_sha256=current)


def close_study(study: Study, actor: str) -> None:
    study.is_open, study.closed_at = False, utcnow()
    audit(actor, "close", study=study.slug)
