"""Leases: what a participant who comes back after their lease ran out gets, and the heartbeat that
keeps an active participant's lease from running out.

A session holds its place in the study (and its list) while its lease runs; any answer, page
action or heartbeat extends it (study.models.ParticipantSession.touch). When it runs out, the
next arrival's assignment marks the session timed out and may give the place to someone else.

The policy for a timed-out participant who returns (any page, answer, heartbeat or completion):

- their place is still free (fewer real sessions hold a place than `target_participants`):
  they resume where they were; `returned_at` is stamped, `timed_out_at` stays, so the export
  shows the history (responses_long: session_timed_out_at, session_returned_at, after_timeout);
- the place was taken: they are told so on a clear page with `completion.timed_out_code` (the
  panel's "returned / timed out" code, if the study sets one) and cannot complete, so one slot is
  never paid twice;
- unless the researcher allows over-fill: `overfill_places = N` lets returners resume while
  fewer than target + N places are held, so at most N extra completions are paid.

Bots and pilots never fill the study, so they always resume.
"""
from __future__ import annotations

import datetime as dt

from study.assignment import places_taken, serialise_assigners
from study.db import db
from study.models import ParticipantSession

HEARTBEAT_MAX_S = 120.0


def place_free(session: ParticipantSession, now: dt.datetime) -> bool:
    """Whether a timed-out session could have its place back now (read-only)."""
    if session.is_bot or session.is_pilot:
        return True
    study = session.study
    return places_taken(study.id, now) < study.target_participants + study.config.get("overfill_places", 0)


def resume(session: ParticipantSession, now: dt.datetime) -> bool:
    """Give a timed-out session its place back if `place_free`; False if it lost it. Call inside a
    write transaction (study.db.begin_write); the caller commits."""
    serialise_assigners(session.study_id)  # against an assignment taking the same place
    if not place_free(session, now):
        return False
    state = "in_task" if session.in_task_at else "instructed" if session.instructed_at else "assigned"
    session.state = state  # timed_out_at and the earlier stamps stay: they are the history
    session.returned_at = now
    session.touch(now)
    # Written now, so that statements the caller runs next (answers.py's Core UPDATE moving the
    # state on) apply after it rather than being overwritten by the ORM's flush at commit.
    db.session.flush()
    return True


def heartbeat_every_s(session: ParticipantSession) -> float:
    """How often an open page should beat: a few times per lease, so one lost beat costs nothing."""
    return max(1.0, min(session.study.lease_seconds / 4, HEARTBEAT_MAX_S))
