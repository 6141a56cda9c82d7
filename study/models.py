"""Tables: study, stimulus, assignment list, participant session (a state machine), answer.

Answers are append-only: one row per response, unique on (session, trial index), carrying the
client's id so a retried post is recognised instead of stored twice. Nothing ever updates or
deletes an answer. The `responses_long` view (see migrations) joins these tables into the
response contract.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from contracts import CONDITIONS, TASKS  # noqa: F401  (re-exported: the study's vocabulary is the contracts')
from study.db import db, utcnow

# Session states in the order a participant normally passes them, then the endings.
ACTIVE_STATES = ("assigned", "instructed", "in_task")
STATES = ("consented", *ACTIVE_STATES, "completed", "declined", "withdrawn", "screened_out", "timed_out")
# Only the server moves a session, and only along these edges. A timed-out participant who comes
# back carries on only if their place is still free (study.leases); the timed_out_at stamp stays.
TRANSITIONS: dict[str, set[str]] = {
    "consented": {"assigned", "withdrawn"},
    "assigned": {"instructed", "withdrawn", "timed_out"},
    "instructed": {"in_task", "completed", "withdrawn", "timed_out", "screened_out"},
    "in_task": {"completed", "withdrawn", "timed_out", "screened_out"},
    "timed_out": {"assigned", "instructed", "in_task", "completed", "withdrawn", "screened_out"},
    "completed": {"withdrawn"},
    "screened_out": {"withdrawn"},
    "declined": set(),
    "withdrawn": set(),
}


class InvalidTransition(Exception):
    pass


def transition(current: str, new: str, now: dt.datetime) -> dict[str, Any]:
    """The column values of a move from `current` to `new`: the state and its timestamp."""
    if new not in TRANSITIONS[current]:
        raise InvalidTransition(f"a {current} session cannot become {new}")
    return {"state": new, f"{new}_at": now}


DIGIT_NAMES = [str(d) for d in range(10)]


class Study(db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    config_sha256: Mapped[str] = mapped_column(String(64))
    manifest_sha256: Mapped[str] = mapped_column(String(64))
    # The stimulus set's class names by label (the manifest's dataset.classes); None: digits 0-9.
    classes: Mapped[list[str] | None] = mapped_column(JSON)
    # Copied out of the config because SQL needs them: the view reports the scale, assignment
    # counts leases and the target.
    rating_min: Mapped[int] = mapped_column(Integer)
    rating_max: Mapped[int] = mapped_column(Integer)
    target_participants: Mapped[int] = mapped_column(Integer)
    lease_seconds: Mapped[int] = mapped_column(Integer)
    is_open: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    # Opening freezes the study: this hash covers the config and every stimulus's image, and
    # reopening refuses a study whose stored config or images no longer match it.
    frozen_sha256: Mapped[str | None] = mapped_column(String(64))
    opened_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    closed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)

    @property
    def class_names(self) -> list[str]:
        """The name of each label, as the participant page shows it (digit studies: "0" … "9")."""
        return self.classes or DIGIT_NAMES

    @property
    def is_digits(self) -> bool:
        """A set of the digits 0-9 (named or not): the page keeps its digit buttons and wording."""
        return self.class_names == DIGIT_NAMES


class Stimulus(db.Model):
    __table_args__ = (UniqueConstraint("study_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    key: Mapped[str] = mapped_column(String(128))  # the manifest's stimulus id
    # The image URL uses this random id, never the manifest id or file name, which may name the
    # condition: participants stay blind to the model.
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    file: Mapped[str] = mapped_column(String(200))
    sha256: Mapped[str] = mapped_column(String(64))
    image: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    source_id: Mapped[str] = mapped_column(String(128))
    condition: Mapped[str] = mapped_column(String(32))
    role: Mapped[str] = mapped_column(String(16))
    model_id: Mapped[str | None] = mapped_column(String(128))
    attack: Mapped[str | None] = mapped_column(String(32))
    true_label: Mapped[int] = mapped_column(Integer)
    target_label: Mapped[int | None] = mapped_column(Integer)
    norm_l0: Mapped[float] = mapped_column(Float)
    norm_l2: Mapped[float] = mapped_column(Float)
    norm_linf: Mapped[float] = mapped_column(Float)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON)  # the whole manifest entry

    study: Mapped[Study] = relationship()

    @property
    def rated_label(self) -> int:
        """The label the legitimacy question names: the attack's target (clean controls carry
        their source's), or the true label for practice and catch images, which have none."""
        return self.target_label if self.target_label is not None else self.true_label


class AssignmentList(db.Model):
    """One Latin-square cell: the experimental stimuli a participant in this cell sees."""

    __table_args__ = (UniqueConstraint("study_id", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"))
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(32))
    stimulus_ids: Mapped[list[int]] = mapped_column(JSON)

    study: Mapped[Study] = relationship()


class ParticipantSession(db.Model):
    __tablename__ = "participant_session"
    __table_args__ = (
        # A person's sessions of one study, numbered: one unless the study allows repeats
        # ([admission] sessions_per_person); concurrent consents of one person race for a number.
        UniqueConstraint("study_id", "participant_hash", "attempt", name="uq_session_person_attempt"),
        Index("ix_session_study_state", "study_id", "state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # The session_id of exports. The URL token is this id signed with the server's secret
    # (study.security), so the database alone does not let anyone answer in a participant's name.
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"))
    participant_hash: Mapped[str] = mapped_column(String(64))
    attempt: Mapped[int] = mapped_column(Integer, default=1, server_default="1")  # this person's n-th session here
    panel: Mapped[str] = mapped_column(String(16))
    # Raw panel ids (Prolific PID, MTurk worker/assignment ids): kept only here, for payment, and
    # only until `flask --app study purge-panel-ids` (never for a declined session).
    panel_ids: Mapped[dict[str, str]] = mapped_column(JSON)
    # Who may re-enter by panel id (study.identity): the sha256 of the secret in the first
    # browser's cookie, and a keyed hash of the panel's per-submission id (Prolific SESSION_ID,
    # MTurk assignmentId), which a third party who knows only the participant id does not have.
    browser_key_hash: Mapped[str | None] = mapped_column(String(64))
    submission_hash: Mapped[str | None] = mapped_column(String(64))
    screen_reason: Mapped[str | None] = mapped_column(String(16))  # "catch" or "too_fast"
    state: Mapped[str] = mapped_column(String(16))
    consent_version: Mapped[str | None] = mapped_column(String(64))
    assignment_list_id: Mapped[int | None] = mapped_column(ForeignKey("assignment_list.id"))
    seed: Mapped[int | None] = mapped_column(BigInteger)
    # The session's answer slots in order: [stimulus pk, task, block, is_catch] per trial index.
    plan: Mapped[list[list[Any]] | None] = mapped_column(JSON)
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    catch_failed: Mapped[int] = mapped_column(Integer, default=0)
    is_bot: Mapped[bool] = mapped_column(Boolean, default=False)
    is_pilot: Mapped[bool] = mapped_column(Boolean, default=False)
    completion_code: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(Text)
    viewport_width: Mapped[int | None] = mapped_column(Integer)
    viewport_height: Mapped[int | None] = mapped_column(Integer)
    device_pixel_ratio: Mapped[float | None] = mapped_column(Float)
    frame_ms: Mapped[float | None] = mapped_column(Float)

    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    consented_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    declined_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    assigned_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    instructed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    in_task_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    completed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    withdrawn_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    screened_out_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    timed_out_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    # When the participant last came back after a lease ran out and got their place back.
    returned_at: Mapped[dt.datetime | None] = mapped_column(DateTime)

    # Joined: every participant request needs the study's config with the session.
    study: Mapped[Study] = relationship(lazy="joined")
    assignment_list: Mapped[AssignmentList | None] = relationship()

    def move_to(self, state: str, now: dt.datetime | None = None) -> None:
        """Change state along an allowed edge and stamp the transition time."""
        for column, value in transition(self.state, state, now or utcnow()).items():
            setattr(self, column, value)

    def touch(self, now: dt.datetime) -> None:
        """Record activity and extend the lease that keeps this session's place in its list."""
        self.last_seen_at = now
        self.lease_expires_at = now + dt.timedelta(seconds=self.study.lease_seconds)


class Answer(db.Model):
    __table_args__ = (UniqueConstraint("session_id", "trial_index"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("participant_session.id"))
    trial_index: Mapped[int] = mapped_column(Integer)
    client_id: Mapped[str] = mapped_column(String(64))
    stimulus_id: Mapped[int] = mapped_column(ForeignKey("stimulus.id"))
    task: Mapped[str] = mapped_column(String(8))
    block: Mapped[str] = mapped_column(String(16))
    is_practice: Mapped[bool] = mapped_column(Boolean)
    is_catch: Mapped[bool] = mapped_column(Boolean)
    response_label: Mapped[int | None] = mapped_column(Integer)
    response_rating: Mapped[int | None] = mapped_column(Integer)
    rt_ms: Mapped[float] = mapped_column(Float)
    presented_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    responded_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    received_at: Mapped[dt.datetime] = mapped_column(DateTime)


class PageView(db.Model):
    """The server's own time of each participant page shown (not the client's clock)."""

    __tablename__ = "page_view"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("participant_session.id"), index=True)
    page: Mapped[str] = mapped_column(String(16))
    at: Mapped[dt.datetime] = mapped_column(DateTime)


class Arrival(db.Model):
    """One attempt to start or re-enter a session, admitted or refused (study.admission). The
    rate limits count these rows, so they hold across workers and app servers; the address is a
    keyed hash, never stored as given."""

    __table_args__ = (Index("ix_arrival_study_at", "study_id", "at"), Index("ix_arrival_address_at", "address_hash", "at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"))
    at: Mapped[dt.datetime] = mapped_column(DateTime)
    address_hash: Mapped[str] = mapped_column(String(64))
    panel: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(String(24))  # "admitted" or the reason it was refused


class AdminUser(db.Model):
    """A researcher who may log in to the dashboard (`flask --app study create-admin`)."""

    __tablename__ = "admin_user"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))  # werkzeug.security (scrypt)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    # Part of every login cookie; logout and a new password increase it, which ends every session.
    session_version: Mapped[int] = mapped_column(Integer, default=0)


RESEARCHER_ROLES = ("viewer", "analyst", "owner")  # each may do what the ones before it may


class StudyRole(db.Model):
    """What one researcher may do with one study (`flask --app study grant`)."""

    __tablename__ = "study_role"
    __table_args__ = (UniqueConstraint("study_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("admin_user.id"))
    role: Mapped[str] = mapped_column(String(16))


class LoginFailure(db.Model):
    """One failed dashboard login. Kept in the database, not in a worker's memory, so the rate
    limit holds across every gunicorn worker and server."""

    __tablename__ = "login_failure"
    __table_args__ = (Index("ix_login_failure_key_at", "key", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(200))  # "pair:<name>|<address>" or "ip:<address>"
    at: Mapped[dt.datetime] = mapped_column(DateTime)


class AuditEvent(db.Model):
    """Researcher actions that change data or a study's state (deletions, open, close)."""

    __tablename__ = "audit_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(80))  # "admin:<name>" or "cli"
    action: Mapped[str] = mapped_column(String(40))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)


class HealthProbe(db.Model):
    """The table /healthz writes to (a row added and deleted in one commit): a write that fails
    (full disk, held lock, read-only database) makes the readiness check fail, not only answers."""

    __tablename__ = "health_probe"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime)
