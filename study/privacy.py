"""Participants' rights: deleting a participant's data on request, by their panel id.

The participant's sessions and answers are deleted from the tables (so from the responses_long
view and every later export and payment list); the audit log keeps when, by whom and how much,
never the panel id. Run it with the server's secret key: the stored participant id is a keyed
hash of the panel id (study.security.participant_hash).
"""
from __future__ import annotations

from sqlalchemy import delete, func, select

from study.config import PANELS
from study.db import db
from study.lifecycle import audit
from study.models import Answer, ParticipantSession, Study
from study.security import participant_hash


def delete_participant(raw_id: str, actor: str, study_slug: str | None = None) -> dict[str, int]:
    """Delete every session (and its answers) of the participant with this panel id, on any
    panel; returns {"sessions": n, "answers": m}. Caller commits."""
    hashes = [participant_hash(panel, raw_id) for panel in PANELS]
    query = select(ParticipantSession.id, ParticipantSession.public_id, Study.slug).join(Study).where(
        ParticipantSession.participant_hash.in_(hashes))
    if study_slug is not None:
        query = query.where(Study.slug == study_slug)
    sessions = db.session.execute(query).all()
    ids = [pk for pk, _, _ in sessions]
    answers = db.session.scalar(select(func.count()).select_from(Answer).where(Answer.session_id.in_(ids))) if ids else 0
    if ids:
        db.session.execute(delete(Answer).where(Answer.session_id.in_(ids)))
        db.session.execute(delete(ParticipantSession).where(ParticipantSession.id.in_(ids)))
    audit(actor, "delete_participant", sessions=[{"study": slug, "session_id": public} for _, public, slug in sessions],
          answers=answers)
    return {"sessions": len(ids), "answers": answers}
