"""Validating and storing one answer: the hot path of a running study.

The client posts every answer the moment it is given and retries until acknowledged, so the same
answer may arrive several times. Storage is one `INSERT … ON CONFLICT DO NOTHING` on the unique
(session, trial index): a retry carrying the same client id is acknowledged again without a
second row; a different answer for a slot already filled is refused. Everything the analysis
needs about the trial (stimulus, task, block, catch flag) comes from the session's stored plan,
never from the client.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import math
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite

from study.db import begin_write, db
from study.models import Answer, ParticipantSession, Stimulus, Study, transition

ANSWERABLE_STATES = ("instructed", "in_task", "timed_out")
PAYLOAD_KEYS = {"client_id", "trial_index", "stimulus", "response", "rt_ms", "presented_at", "responded_at"}
MAX_RT_MS = 24 * 3600 * 1000
TOUCH_EVERY = dt.timedelta(seconds=30)


class AnswerError(ValueError):
    """A request the client must not retry unchanged; `status` is the HTTP status to send."""

    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(message)


@dataclass(frozen=True)
class StudyFacts:
    """What answering needs about a study; fixed once the study is created."""
    rating_min: int
    rating_max: int
    lease: dt.timedelta
    screen_out_after: int
    stimuli: dict[int, tuple[str, int]]  # stimulus pk -> (public id, true label)


# Studies never change after create-study, so each worker reads a study once (keyed by the
# database too: one process may serve several, e.g. in tests).
_study_cache: dict[tuple[str, int], StudyFacts] = {}


def study_facts(study_id: int) -> StudyFacts:
    key = (str(db.engine.url), study_id)
    if key not in _study_cache:
        study = db.session.get(Study, study_id)
        stimuli = db.session.execute(select(Stimulus.id, Stimulus.public_id, Stimulus.true_label)
                                     .where(Stimulus.study_id == study_id))
        _study_cache[key] = StudyFacts(study.rating_min, study.rating_max, dt.timedelta(seconds=study.lease_seconds),
                                       study.config["screen_out_after_catch_failures"],
                                       {pk: (public, label) for pk, public, label in stimuli})
    return _study_cache[key]


@dataclass(frozen=True)
class SessionRow:
    id: int
    study_id: int
    state: str
    catch_failed: int
    last_seen_at: dt.datetime | None
    plan: list[list[Any]] | None


# A session's plan never changes once it is assigned, so each worker keeps the plans it has read
# (a few KB each; the oldest go first) instead of decoding one with every answer.
_plan_cache: dict[tuple[str, int], list[list[Any]]] = {}
PLAN_CACHE_SIZE = 2000


def session_plan(session_id: int) -> list[list[Any]] | None:
    key = (str(db.engine.url), session_id)
    if key not in _plan_cache:
        plan = db.session.scalar(select(ParticipantSession.plan).where(ParticipantSession.id == session_id))
        if plan is None:
            return None
        if len(_plan_cache) >= PLAN_CACHE_SIZE:
            del _plan_cache[next(iter(_plan_cache))]
        _plan_cache[key] = plan
    return _plan_cache[key]


def _epoch_ms(payload: dict[str, Any], key: str) -> dt.datetime | None:
    value = payload.get(key)
    if value is None:
        return None
    if not _is_number(value) or not 0 < value < 1e14:
        raise AnswerError(422, f"{key} must be a time in milliseconds since 1970 (or null)")
    return dt.datetime.fromtimestamp(value / 1000, dt.UTC).replace(tzinfo=None)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _validated(payload: Any, session: SessionRow, study: StudyFacts) -> dict[str, Any]:
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
    if payload["stimulus"] != study.stimuli[stimulus_pk][0]:
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


# Built once: constructing statements per request costs more than executing them.
_SESSION = select(ParticipantSession.id, ParticipantSession.study_id, ParticipantSession.state,
                  ParticipantSession.catch_failed, ParticipantSession.last_seen_at
                  ).where(ParticipantSession.public_id == bindparam("public_id"))
_EXISTING = select(Answer.client_id).where(Answer.session_id == bindparam("sid"), Answer.trial_index == bindparam("index"))
_TOUCH = update(ParticipantSession.__table__).where(ParticipantSession.__table__.c.id == bindparam("sid"))


@cache
def _insert(dialect: str):
    return ((postgresql.insert if dialect == "postgresql" else sqlite.insert)(Answer.__table__)
            .on_conflict_do_nothing(index_elements=["session_id", "trial_index"]).returning(Answer.__table__.c.id))


def record_answer(public_id: str, payload: Any, now: dt.datetime) -> tuple[bool, str]:
    """Validate and store one answer in one write transaction; the caller commits.

    Returns (stored, session state afterwards); stored is False for an idempotent retry. Raises
    LookupError for an unknown session and AnswerError for anything the client must not resend.

    The transaction starts with the write lock (SQLite: BEGIN IMMEDIATE, see study.db), so the
    state read here is still the state when the answer is stored. It stays short: one small
    row is read (the plan comes from the worker's cache), validation is a few checks, and most
    answers write one row and nothing else (see _session_changes). On PostgreSQL nothing is
    locked: a withdrawal racing an answer by milliseconds lets that answer in (it is flagged with
    the session's others), and a page sends one answer at a time, so a session's own answers do
    not race each other. Core statements only: this runs for every answer, and the ORM's unit of
    work would triple its cost.
    """
    begin_write()
    found = db.session.execute(_SESSION, {"public_id": public_id}).one_or_none()
    if found is None:
        raise LookupError(public_id)
    session = SessionRow(*found, plan=None)
    if session.state not in ANSWERABLE_STATES:
        raise AnswerError(409, f"this session is {session.state.replace('_', ' ')} and takes no more answers")
    session = dataclasses.replace(session, plan=session_plan(session.id))
    study = study_facts(session.study_id)
    row = _validated(payload, session, study)
    stored = db.session.execute(_insert(db.engine.dialect.name), {**row, "received_at": now}).scalar()
    if stored is None:
        existing = db.session.scalar(_EXISTING, {"sid": session.id, "index": row["trial_index"]})
        if existing != row["client_id"]:
            raise AnswerError(409, f"trial {row['trial_index']} of this session already has a different answer")
        return False, session.state
    changes, state = _session_changes(session, study, row, now)
    if changes:
        db.session.execute(_TOUCH, {"sid": session.id, **changes})
    return True, state

def _session_changes(session: SessionRow, study: StudyFacts, row: dict[str, Any], now: dt.datetime) -> tuple[dict[str, Any], str]:
    """What a new answer changes in its session: lease, state, failed catch trials.

    The lease (and last_seen_at) moves on only when a tenth of it has passed since the last
    move (at most every 30 s), so most answers write one row and nothing else: a lease is
    minutes long, and its end is known to within that step.
    """
    changes: dict[str, Any] = {}
    if session.last_seen_at is None or now - session.last_seen_at >= min(study.lease / 10, TOUCH_EVERY):
        changes |= {"last_seen_at": now, "lease_expires_at": now + study.lease}
    state = session.state
    if row["block"] == "main" and state != "in_task":
        changes |= transition(state, "in_task", now)
        state = "in_task"
    if row["is_catch"] and row["task"] == "label" and row["response_label"] != study.stimuli[row["stimulus_id"]][1]:
        changes["catch_failed"] = session.catch_failed + 1
        if study.screen_out_after and changes["catch_failed"] >= study.screen_out_after:
            changes |= transition(state, "screened_out", now)
            state = "screened_out"
    return changes, state


def missing_trials(session: ParticipantSession) -> list[int]:
    have = set(db.session.scalars(select(Answer.trial_index).where(Answer.session_id == session.id)))
    return [i for i in range(len(session.plan or [])) if i not in have]
