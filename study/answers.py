"""Validating and storing one answer: the hot path of a running study.

The client posts every answer the moment it is given and retries until acknowledged, so the same
answer may arrive several times. Storage is one `INSERT … ON CONFLICT DO NOTHING` on the unique
(session, trial index): a retry carrying the same client id is acknowledged again without a
second row; a different answer for a slot already filled is refused. Everything the analysis
needs about the trial (stimulus, task, block, catch flag) comes from the session's stored plan,
never from the client. Answers are taken in plan order only (the trial after the last one stored;
a retry of an earlier one is acknowledged as above), and the times that count are the server's:
`received_at`, not the client's clock, which must merely be within a day of the server's.

Two paths store an answer, both methods of `AnswerStore`, one per database in each worker. The
full one (`AnswerStore._record_in_transaction`) reads the session in a write transaction and moves
its state, lease and failed-catch count with the answer. Most answers change nothing but their own
row, and for a session this worker has just seen in task the fast one (`_insert_if_in_task`)
stores them with a single statement that inserts only while the session is still in task: on
SQLite it runs in autocommit, so the write lock is held for the statement alone, never across
Python code waiting for the GIL. `AnswerStore.record` holds the one decision between them (see
there); anything the fast path cannot settle (a duplicate, a session that moved on) goes through
the full path, which gives the precise answer.
"""
from __future__ import annotations

import datetime as dt
import math
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from cachetools import LRUCache
from sqlalchemy import bindparam, func, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite

from study.db import begin_write, db, single_statement
from study.leases import resume
from study.models import Answer, ParticipantSession, Stimulus, Study, transition

ANSWERABLE_STATES = ("instructed", "in_task", "timed_out")
PAYLOAD_KEYS = {"client_id", "trial_index", "stimulus", "response", "rt_ms", "presented_at", "responded_at"}
MAX_RT_MS = 24 * 3600 * 1000
# Client times further than this from the server's clock are refused: a device's clock may be off
# by hours, not by years. The analysis's times are the server's own (received_at, page_view).
CLOCK_WINDOW = dt.timedelta(days=1)
TOUCH_EVERY = dt.timedelta(seconds=30)


class AnswerError(ValueError):
    """A request the client must not retry unchanged; `status` is the HTTP status to send."""

    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(message)


class PlaceLost(AnswerError):
    """The session's lease ran out and its place went to someone else (study.leases)."""

    def __init__(self) -> None:
        super().__init__(409, "your time for this study ran out and your place went to another participant")


@dataclass(frozen=True)
class StudyFacts:
    """What answering needs about a study; fixed once the study is created."""
    rating_min: int
    rating_max: int
    lease: dt.timedelta
    screen_out_after: int
    stimuli: dict[int, tuple[str, int]]  # stimulus pk -> (public id, true label)
    classes: int  # label answers are 0 .. classes - 1
    digits: bool  # the classes are the digits 0-9 (study.models.Study.is_digits)


@dataclass(frozen=True)
class SessionRow:
    id: int
    study_id: int
    state: str
    catch_failed: int
    last_seen_at: dt.datetime | None


def _epoch_ms(payload: dict[str, Any], key: str, now: dt.datetime) -> dt.datetime | None:
    value = payload.get(key)
    if value is None:
        return None
    if not _is_number(value) or not 0 < value < 1e14:
        raise AnswerError(422, f"{key} must be a time in milliseconds since 1970 (or null)")
    at = dt.datetime.fromtimestamp(value / 1000, dt.UTC).replace(tzinfo=None)
    if abs(at - now) > CLOCK_WINDOW:
        raise AnswerError(422, f"{key} is more than {CLOCK_WINDOW.days} day(s) away from the server's clock: "
                               "check the device's date and time")
    return at


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _validated(payload: Any, session_id: int, plan: list[list[Any]], study: StudyFacts, now: dt.datetime) -> dict[str, Any]:
    """Check the payload against the session's plan; returns the answer row's values."""
    if not isinstance(payload, dict):
        raise AnswerError(400, "the answer must be a JSON object")
    unknown, missing = set(payload) - PAYLOAD_KEYS, {"client_id", "trial_index", "stimulus", "response", "rt_ms"} - set(payload)
    if unknown or missing:
        raise AnswerError(422, "; ".join([f"unknown field(s): {', '.join(sorted(unknown))}"] * bool(unknown)
                                         + [f"missing field(s): {', '.join(sorted(missing))}"] * bool(missing)))
    client_id, index, response, rt = payload["client_id"], payload["trial_index"], payload["response"], payload["rt_ms"]
    # isprintable() refuses NUL and lone surrogates, which PostgreSQL cannot store.
    if not isinstance(client_id, str) or not 8 <= len(client_id) <= 64 or not client_id.isprintable():
        raise AnswerError(422, "client_id must be a string of 8 to 64 printable characters")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(plan):
        raise AnswerError(422, f"trial_index must be a whole number from 0 to {len(plan) - 1} for this session")
    stimulus_pk, task, block, is_catch = plan[index]
    if payload["stimulus"] != study.stimuli[stimulus_pk][0]:
        raise AnswerError(422, f"stimulus {str(payload['stimulus'])[:40]!r} is not the image of trial {index} of this session")
    if not _is_number(rt) or not 0 <= rt <= MAX_RT_MS:
        raise AnswerError(422, "rt_ms must be a number of milliseconds, at least 0")
    if task == "label" and not (isinstance(response, int) and not isinstance(response, bool) and 0 <= response < study.classes):
        raise AnswerError(422, f"a label answer must be a {'digit' if study.digits else 'class number'} "
                               f"from 0 to {study.classes - 1}")
    if task == "rate" and not (isinstance(response, int) and not isinstance(response, bool)
                               and study.rating_min <= response <= study.rating_max):
        raise AnswerError(422, f"a rating must be a whole number from {study.rating_min} to {study.rating_max}")
    presented_at, responded_at = _epoch_ms(payload, "presented_at", now), _epoch_ms(payload, "responded_at", now)
    if presented_at and responded_at and responded_at < presented_at:
        raise AnswerError(422, "responded_at must not be before presented_at")
    return dict(
        session_id=session_id, trial_index=index, client_id=client_id, stimulus_id=stimulus_pk, task=task, block=block,
        is_practice=block == "practice", is_catch=bool(is_catch),
        response_label=response if task == "label" else None, response_rating=response if task == "rate" else None,
        rt_ms=float(rt), presented_at=presented_at, responded_at=responded_at,
    )


# Built once: constructing statements per request costs more than executing them.
_SESSION = select(ParticipantSession.id, ParticipantSession.study_id, ParticipantSession.state,
                  ParticipantSession.catch_failed, ParticipantSession.last_seen_at
                  ).where(ParticipantSession.public_id == bindparam("public_id"))
_EXISTING = select(Answer.client_id).where(Answer.session_id == bindparam("sid"), Answer.trial_index == bindparam("index"))


def _due(session_id):
    """The trial index due next in a session: answers arrive in plan order, so one past the last."""
    return select(func.coalesce(func.max(Answer.trial_index) + 1, 0)).where(Answer.session_id == session_id)


_NEXT = _due(bindparam("sid"))
_TOUCH = update(ParticipantSession.__table__).where(ParticipantSession.__table__.c.id == bindparam("sid"))


def _insert(dialect: str):
    """INSERT the answer unless its (session, trial index) slot is filled; RETURNING the new id."""
    return ((postgresql.insert if dialect == "postgresql" else sqlite.insert)(Answer.__table__)
            .on_conflict_do_nothing(index_elements=["session_id", "trial_index"]).returning(Answer.__table__.c.id))


def _insert_while_in_task(dialect: str):
    """The same, as INSERT … SELECT FROM its session WHERE the session is in task and this is the
    trial due next (the one after the last stored): no row otherwise."""
    columns = [c for c in Answer.__table__.c if c.name != "id"]
    params = {c.name: bindparam(c.name, type_=c.type) for c in columns}
    sessions = ParticipantSession.__table__
    # The public id too: the row id alone may since belong to another session (see AnswerStore.plan).
    values = select(*params.values()).where(sessions.c.id == params["session_id"], sessions.c.public_id == bindparam("public_id"),
                                            sessions.c.state == literal("in_task"),
                                            _due(params["session_id"]).scalar_subquery() == params["trial_index"])
    return _insert(dialect).from_select([c.name for c in columns], values)


@dataclass(frozen=True)
class InTask:
    """A session this worker saw in task, and until when its lease needs no move."""
    session_id: int
    study_id: int
    touch_due: dt.datetime


# Bounds the per-worker caches of sessions (a plan is a few KB; the least recently used go first).
SESSION_CACHE_SIZE = 2000


class AnswerStore:
    """Storing the answers of one database, as one worker does it: its caches and its two paths.

    The caches are per worker and per database (one process may serve several, e.g. in tests):
    - `study_facts(study_id)`: studies never change after create-study, so each is read once
      (unbounded: a database holds a handful).
    - `plan(public_id)`: a session's plan never changes once it is assigned, and every session
      that may answer has one (study.assignment), so it is decoded once, not with every answer.
      Keyed by the public id, which is never reused: SQLite gives a new row the id of a deleted
      newest one (a participant deleted on request), and that newcomer must not get its plan.
    - `in_task`: public id -> InTask, the sessions this worker last saw in task. It alone can go
      stale (another worker may see the session withdraw): the fast path's statement checks the
      state again in the database, so a stale entry costs one statement, never a wrong answer.
      Each worker keeps its own, so a lease is moved by whichever worker finds it due: at most
      once per step per worker.
    lru_cache is thread-safe; the in-task map takes a lock (PostgreSQL runs several threads).
    """

    def __init__(self, dialect: str):
        # The dialect's two INSERTs, built once per database, not per request.
        self._insert_answer = _insert(dialect)
        self._insert_answer_in_task = _insert_while_in_task(dialect)
        self.study_facts = lru_cache(maxsize=None)(self._read_study_facts)
        self.plan = lru_cache(maxsize=SESSION_CACHE_SIZE)(self._read_plan)
        self.in_task: LRUCache[str, InTask] = LRUCache(maxsize=SESSION_CACHE_SIZE)
        self._in_task_lock = threading.Lock()

    @staticmethod
    def _read_study_facts(study_id: int) -> StudyFacts:
        study = db.session.get(Study, study_id)
        stimuli = db.session.execute(select(Stimulus.id, Stimulus.public_id, Stimulus.true_label)
                                     .where(Stimulus.study_id == study_id))
        return StudyFacts(study.rating_min, study.rating_max, dt.timedelta(seconds=study.lease_seconds),
                          study.config["screen_out_after_catch_failures"],
                          {pk: (public, label) for pk, public, label in stimuli}, len(study.class_names), study.is_digits)

    @staticmethod
    def _read_plan(public_id: str) -> list[list[Any]]:
        return db.session.scalar(select(ParticipantSession.plan).where(ParticipantSession.public_id == public_id))

    def record(self, public_id: str, payload: Any, now: dt.datetime) -> tuple[bool, str]:
        """Validate and store one answer, committed before this returns (see record_answer).

        The decision: the fast path when this worker saw the session in task and its lease step
        is not yet due (so the answer moves neither the lease nor the state), and the answer
        fails no catch trial (which would count against the session); the full path otherwise,
        and whenever the fast path stores nothing.
        """
        with self._in_task_lock:
            seen = self.in_task.get(public_id)
        if seen is not None and now < seen.touch_due:
            study = self.study_facts(seen.study_id)
            row = _validated(payload, seen.session_id, self.plan(public_id), study, now)
            if not _fails_catch(row, study) and self._insert_if_in_task(row, public_id, now):
                return True, "in_task"
            with self._in_task_lock:
                self.in_task.pop(public_id, None)
        stored, state, last_seen_at, session = self._record_in_transaction(public_id, payload, now)
        db.session.commit()
        if state == "in_task":
            entry = InTask(session.id, session.study_id, last_seen_at + _touch_step(self.study_facts(session.study_id)))
            with self._in_task_lock:
                self.in_task[public_id] = entry
        return stored, state

    def _insert_if_in_task(self, row: dict[str, Any], public_id: str, now: dt.datetime) -> bool:
        """The fast path: one statement on a connection of its own; False when no row was stored."""
        with db.engine.connect() as conn:
            stored = single_statement(conn).execute(self._insert_answer_in_task,
                                                    {**row, "received_at": now, "public_id": public_id}).scalar()
            conn.commit()
        return stored is not None

    def _record_in_transaction(self, public_id: str, payload: Any, now: dt.datetime
                               ) -> tuple[bool, str, dt.datetime, SessionRow]:
        """The full path, in one write transaction: returns (stored, state, last seen, session).

        The transaction starts with the write lock (SQLite: BEGIN IMMEDIATE, see study.db), so the
        state read here is still the state when the answer is stored. On PostgreSQL nothing is
        locked: a withdrawal racing an answer by milliseconds lets that answer in (it is flagged with
        the session's others), and a page sends one answer at a time, so a session's own answers do
        not race each other. Core statements only: the ORM's unit of work would triple the cost.
        """
        begin_write()
        found = db.session.execute(_SESSION, {"public_id": public_id}).one_or_none()
        if found is None:
            raise LookupError(public_id)
        session = SessionRow(*found)
        if session.state == "timed_out":
            if not resume(db.session.get(ParticipantSession, session.id), now):
                raise PlaceLost
            session = SessionRow(session.id, session.study_id, *db.session.execute(
                select(ParticipantSession.state, ParticipantSession.catch_failed, ParticipantSession.last_seen_at)
                .where(ParticipantSession.id == session.id)).one())
        if session.state not in ANSWERABLE_STATES:
            raise AnswerError(409, f"this session is {session.state.replace('_', ' ')} and takes no more answers")
        study = self.study_facts(session.study_id)
        row = _validated(payload, session.id, self.plan(public_id), study, now)
        due = db.session.scalar(_NEXT, {"sid": session.id})
        if row["trial_index"] > due:
            raise AnswerError(409, f"trial {row['trial_index']} came before trial {due}: answers are taken in the order "
                                   "of the session's trials")
        stored = db.session.execute(self._insert_answer, {**row, "received_at": now}).scalar()
        if stored is None:
            existing = db.session.scalar(_EXISTING, {"sid": session.id, "index": row["trial_index"]})
            if existing != row["client_id"]:
                raise AnswerError(409, f"trial {row['trial_index']} of this session already has a different answer")
            return False, session.state, session.last_seen_at or now, session
        changes, state = _session_changes(session, study, row, now)
        if changes:
            db.session.execute(_TOUCH, {"sid": session.id, **changes})
        return True, state, changes.get("last_seen_at", session.last_seen_at), session


_stores: dict[str, AnswerStore] = {}


def answer_store() -> AnswerStore:
    """This worker's AnswerStore for the app's database (keyed by its URL)."""
    url = str(db.engine.url)
    store = _stores.get(url)
    if store is None:
        store = _stores.setdefault(url, AnswerStore(db.engine.dialect.name))
    return store


def record_answer(public_id: str, payload: Any, now: dt.datetime) -> tuple[bool, str]:
    """Validate and store one answer, committed before this returns.

    Returns (stored, session state afterwards); stored is False for an idempotent retry. Raises
    LookupError for an unknown session and AnswerError for anything the client must not resend.
    """
    return answer_store().record(public_id, payload, now)


def _touch_step(study: StudyFacts) -> dt.timedelta:
    return min(study.lease / 10, TOUCH_EVERY)


def _fails_catch(row: dict[str, Any], study: StudyFacts) -> bool:
    return row["is_catch"] and row["task"] == "label" and row["response_label"] != study.stimuli[row["stimulus_id"]][1]


def _session_changes(session: SessionRow, study: StudyFacts, row: dict[str, Any], now: dt.datetime) -> tuple[dict[str, Any], str]:
    """What a new answer changes in its session: lease, state, failed catch trials.

    The lease (and last_seen_at) moves on only when a tenth of it has passed since the last
    move (at most every 30 s), so most answers write one row and nothing else: a lease is
    minutes long, and its end is known to within that step.
    """
    changes: dict[str, Any] = {}
    if session.last_seen_at is None or now - session.last_seen_at >= _touch_step(study):
        changes |= {"last_seen_at": now, "lease_expires_at": now + study.lease}
    state = session.state
    if row["block"] == "main" and state != "in_task":
        changes |= transition(state, "in_task", now)
        state = "in_task"
    if _fails_catch(row, study):
        changes["catch_failed"] = session.catch_failed + 1
        if study.screen_out_after and changes["catch_failed"] >= study.screen_out_after:
            changes |= transition(state, "screened_out", now) | {"screen_reason": "catch"}
            state = "screened_out"
    return changes, state


def missing_trials(session: ParticipantSession) -> list[int]:
    have = set(db.session.scalars(select(Answer.trial_index).where(Answer.session_id == session.id)))
    return [i for i in range(len(session.plan or [])) if i not in have]
