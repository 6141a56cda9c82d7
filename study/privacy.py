"""Participants' rights: deleting a participant's data on request, by their panel id, and
forgetting raw panel ids once payment no longer needs them (`purge-panel-ids`).

The participant's sessions and answers are deleted from the tables (so from the responses_long
view and every later export and payment list); the audit log keeps when, by whom and how much,
never the panel id. Run it with the server's secret key: the stored participant id is a keyed
hash of the panel id (study.security.participant_hash).
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, func, select, update

from study.db import db
from study.lifecycle import audit
from study.models import ACTIVE_STATES, Answer, PageView, ParticipantSession, Study
from study.panels import identity
from study.security import participant_hash


def delete_participant(raw_id: str, actor: str, study_slug: str | None = None) -> dict[str, int]:
    """Delete every session (and its answers) of the participant with this panel id, on any
    panel; returns {"sessions": n, "answers": m}. Caller commits."""
    query = select(ParticipantSession.id, ParticipantSession.public_id, Study.slug).join(Study).where(
        ParticipantSession.participant_hash == participant_hash(identity(raw_id)))
    if study_slug is not None:
        query = query.where(Study.slug == study_slug)
    sessions = db.session.execute(query).all()
    ids = [pk for pk, _, _ in sessions]
    answers = db.session.scalar(select(func.count()).select_from(Answer).where(Answer.session_id.in_(ids))) if ids else 0
    if ids:
        db.session.execute(delete(Answer).where(Answer.session_id.in_(ids)))
        db.session.execute(delete(PageView).where(PageView.session_id.in_(ids)))
        db.session.execute(delete(ParticipantSession).where(ParticipantSession.id.in_(ids)))
    audit(actor, "delete_participant", sessions=[{"study": slug, "session_id": public} for _, public, slug in sessions],
          answers=answers)
    return {"sessions": len(ids), "answers": answers}


def purge_panel_ids(study: Study, keep_days: int, actor: str, now: dt.datetime) -> int:
    """Forget the raw panel ids of sessions that ended more than `keep_days` ago (payment is done
    by then); returns how many sessions had some. Caller commits."""
    ps, cutoff = ParticipantSession, now - dt.timedelta(days=keep_days)
    ended = func.coalesce(ps.completed_at, ps.withdrawn_at, ps.screened_out_at, ps.declined_at, ps.timed_out_at)
    ids = db.session.scalars(select(ps.id).where(ps.study_id == study.id, ended <= cutoff,
                                                 ps.state.not_in(ACTIVE_STATES))).all()
    if ids:
        db.session.execute(update(ps).where(ps.id.in_(ids)).values(panel_ids={}).execution_options(synchronize_session=False))
    audit(actor, "purge_panel_ids", study=study.slug, sessions=len(ids), older_than_days=keep_days)
    return len(ids)
