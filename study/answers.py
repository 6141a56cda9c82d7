"""Validating and storing one answer: the hot path of a running study.

The client posts every answer the moment it is given and retries until acknowledged, so the same
answer may arrive several times. Storage is one `INSERT … ON CONFLICT DO NOTHING` on the unique
(session, trial index): a retry carrying the same client id is acknowledged again without a
second row; a different answer for a slot already filled is refused. Everything the analysis
needs about the trial (stimulus, task, block, catch flag) comes from the session's stored plan,
never from the client.
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from study.db import db
from study.models import Answer, ParticipantSession, Stimulus, Study

ANSWERABLE_STATES = ("instructed", "in_task", "timed_out")
PAYLOAD_KEYS = {"client_id", "trial_index", "stimulus", "response", "rt_ms", "presented_at", "responded_at"}
MAX_RT_MS = 24 * 3600 * 1000


class AnswerError(ValueError):
    """A request the client must not retry unchanged; `status` is the HTTP status to send."""

    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(message)


@dataclass(frozen=True)
class StimulusFacts:
    pk: int
    public_id: str
    role: str
    true_label: int


# Stimuli never change after create-study, so each worker reads a study's stimuli once
# (keyed by database too: one process may serve several, e.g. in tests).
_stimuli_cache: dict[tuple[str, int], dict[int, StimulusFacts]] = {}


def stimulus_facts(study_id: int) -> dict[int, StimulusFacts]:
    key = (str(db.engine.url), study_id)
    if key not in _stimuli_cache:
        rows = db.session.execute(select(Stimulus.id, Stimulus.public_id, Stimulus.role, Stimulus.true_label)
                                  .where(Stimulus.study_id == study_id))
        _stimuli_cache[key] = {r.id: StimulusFacts(*r) for r in rows}
    return _stimuli_cache[key]


def _epoch_ms(payload: dict[str, Any], key: str) -> dt.datetime | None:
    value = payload.get(key)
    if value is None:
        return None
    if not _is_number(value) or not 0 < value < 1e14:
        raise AnswerError(422, f"{key} must be a time in milliseconds since 1970 (or null)")
    return dt.datetime.fromtimestamp(value / 1000, dt.UTC).replace(tzinfo=None)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _validated(payload: Any, session: ParticipantSession, study: Study) -> dict[str, Any]:
    """Check the payload against the session's plan; returns the answer row's values."""
    if not isinstance(payload, dict):
        raise AnswerError(400, "the answer must be a JSON object")
    unknown, missing = set(payload) - PAYLOAD_KEYS, {"client_id", "trial_index", "stimulus", "response", "rt_ms"} - set(payload)
    if unknown or missing:
        raise AnswerError(422, "; ".join([f"unknown field(s): {', '.join(sorted(unknown))}"] * bool(unknown)
                                         + [f"missing field(s): {', '.join(sorted(missing))}"] * bool(missing)))
    client_id, index, response, rt = payload["client_id"], payload["trial_index"], payload["response"], payload["rt_ms"]
    if not isinstance(client_id, str) or not 8 <= len(client_id) <= 64:
        raise AnswerError(422, "client_id must be a string of 8 to 64 characters")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(session.plan):
        raise AnswerError(422, f"trial_index must be a whole number from 0 to {len(session.plan) - 1} for this session")
    stimulus_pk, task, block, is_catch = session.plan[index]
    facts = stimulus_facts(study.id)[stimulus_pk]
    if payload["stimulus"] != facts.public_id:
        raise AnswerError(422, f"stimulus {str(payload['stimulus'])[:40]!r} is not the image of trial {index} of this session")
    if not _is_number(rt) or not 0 <= rt <= MAX_RT_MS:
        raise AnswerError(422, "rt_ms must be a number of milliseconds, at least 0")
    if task == "label" and not (isinstance(response, int) and not isinstance(response, bool) and 0 <= response <= 9):
        raise AnswerError(422, "a label answer must be a digit from 0 to 9")
    if task == "rate" and not (isinstance(response, int) and not isinstance(response, bool)
                               and study.rating_min <= response <= study.rating_max):
        raise AnswerError(422, f"a rating must be a whole number from {study.rating_min} to {study.rating_max}")
    return dict(
        session_id=session.id, trial_index=index, client_id=client_id, stimulus_id=stimulus_pk, task=task, block=block,
        is_practice=block == "practice", is_catch=bool(is_catch),
        response_label=response if task == "label" else None, response_rating=response if task == "rate" else None,
        rt_ms=float(rt), presented_at=_epoch_ms(payload, "presented_at"), responded_at=_epoch_ms(payload, "responded_at"),
    )


def record_answer(session: ParticipantSession, payload: Any, now: dt.datetime) -> bool:
    """Store one answer inside the caller's write transaction. Returns False for an idempotent
    retry (already stored), raises AnswerError for anything the client must not resend."""
    study = session.study
    if session.state not in ANSWERABLE_STATES:
        raise AnswerError(409, f"this session is {session.state.replace('_', ' ')} and takes no more answers")
    row = _validated(payload, session, study)
    insert = (postgresql.insert if db.engine.dialect.name == "postgresql" else sqlite.insert)(Answer)
    stored = db.session.execute(
        insert.values(**row, received_at=now).on_conflict_do_nothing(index_elements=["session_id", "trial_index"])
        .returning(Answer.id)
    ).scalar()
    if stored is None:
        existing = db.session.scalar(select(Answer.client_id).where(
            Answer.session_id == session.id, Answer.trial_index == row["trial_index"]))
        if existing != row["client_id"]:
            raise AnswerError(409, f"trial {row['trial_index']} of this session already has a different answer")
        return False

    if row["block"] == "main" and session.state != "in_task":
        session.move_to("in_task", now)
    if row["is_catch"] and row["task"] == "label" and row["response_label"] != stimulus_facts(study.id)[row["stimulus_id"]].true_label:
        session.catch_failed += 1
        limit = study.config["screen_out_after_catch_failures"]
        if limit and session.catch_failed >= limit:
            session.move_to("screened_out", now)
    session.touch(now)
    return True


def missing_trials(session: ParticipantSession) -> list[int]:
    have = set(db.session.scalars(select(Answer.trial_index).where(Answer.session_id == session.id)))
    return [i for i in range(len(session.plan or [])) if i not in have]
