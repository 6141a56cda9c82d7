"""Balanced assignment of a consenting participant to a stimulus list.

The least-filled list wins, counting completed sessions plus sessions whose lease is still
running; sessions that timed out, withdrew or were screened out no longer count, so their slot is
re-issued and only usable sessions fill the lists. Ties are broken by the session's own seed
(stored), so the choice can be replayed. Reading the counts and writing the new session happen in
one serialised transaction (SQLite: `BEGIN IMMEDIATE`, see study.db; PostgreSQL: a row lock on
the study), so concurrent arrivals cannot all see the same minimum and pile into one list.
"""
from __future__ import annotations

import datetime as dt
import random
import secrets

from sqlalchemy import func, select, update

from study.config import config_from_dict
from study.db import db
from study.design import build_session_plan
from study.models import ACTIVE_STATES, AssignmentList, ParticipantSession, Stimulus, Study


class StudyFull(Exception):
    pass


def expire_leases(study_id: int, now: dt.datetime) -> None:
    db.session.execute(
        update(ParticipantSession)
        .where(ParticipantSession.study_id == study_id, ParticipantSession.state.in_(ACTIVE_STATES),
               ParticipantSession.lease_expires_at < now)
        .values(state="timed_out", timed_out_at=now)
        .execution_options(synchronize_session=False)
    )


def list_counts(study_id: int, is_bot: bool = False, is_pilot: bool = False) -> dict[int, int]:
    """Sessions that hold a place in each list: completed, or active within their lease.

    Only sessions of the same kind count: bots and pilots are balanced among themselves, so a
    simulation or a pilot run never shifts the real participants' balance or fills the study.
    """
    counted = (ParticipantSession.state == "completed") | ParticipantSession.state.in_(ACTIVE_STATES)
    rows = db.session.execute(
        select(ParticipantSession.assignment_list_id, func.count())
        .where(ParticipantSession.study_id == study_id, counted,
               ParticipantSession.is_bot == is_bot, ParticipantSession.is_pilot == is_pilot)
        .group_by(ParticipantSession.assignment_list_id)
    )
    return dict(rows.all())


def places_taken(study_id: int, now: dt.datetime) -> int:
    """Real sessions holding a place now (completed, or active with a running lease). Read-only:
    it counts expired leases out instead of expiring them, so an entry page (GET) can ask."""
    ps = ParticipantSession
    held = (ps.state == "completed") | (ps.state.in_(ACTIVE_STATES) & (ps.lease_expires_at >= now))
    return db.session.scalar(select(func.count()).select_from(ps).where(ps.study_id == study_id, held,
                                                                         ~ps.is_bot, ~ps.is_pilot))


def serialise_assigners(study_id: int) -> None:
    """Make the caller's write transaction the only one handing out places of this study. SQLite
    needs nothing more than its BEGIN IMMEDIATE (study.db.begin_write)."""
    if db.engine.dialect.name == "postgresql":
        # FOR NO KEY UPDATE: serialises assigners without blocking the foreign-key checks of
        # concurrent answer inserts (which take KEY SHARE locks on the same row).
        db.session.execute(select(Study.id).where(Study.id == study_id).with_for_update(key_share=True))


def assign(session: ParticipantSession, study: Study, now: dt.datetime) -> None:
    """Give a consented session its list, seed and trial plan. Call inside a write transaction
    (study.db.begin_write) before the new session is added to it (so the lock comes before the
    insert's foreign-key lock on the study); the caller adds the session and commits.

    Raises StudyFull when completed plus active real sessions already reach the target.
    """
    serialise_assigners(study.id)
    expire_leases(study.id, now)
    counts = list_counts(study.id, bool(session.is_bot), bool(session.is_pilot))
    if not (session.is_bot or session.is_pilot) and sum(counts.values()) >= study.target_participants:
        raise StudyFull
    lists = db.session.scalars(select(AssignmentList).where(AssignmentList.study_id == study.id)
                               .order_by(AssignmentList.position)).all()
    fewest = min(counts.get(lst.id, 0) for lst in lists)
    session.seed = secrets.randbits(62)
    chosen = random.Random(session.seed).choice([lst for lst in lists if counts.get(lst.id, 0) == fewest])

    pools = {role: [] for role in ("practice", "catch")}
    for pk, role in db.session.execute(select(Stimulus.id, Stimulus.role).where(
            Stimulus.study_id == study.id, Stimulus.role.in_(pools)).order_by(Stimulus.id)):
        pools[role].append(pk)
    config = config_from_dict(study.config)
    session.assignment_list = chosen
    session.plan = build_session_plan(chosen.stimulus_ids, pools["practice"], pools["catch"], config, session.seed)
    session.touch(now)
    session.move_to("assigned", now)
