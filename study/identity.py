"""Who may re-enter a participant's session by panel id.

A panel id (a Prolific PID, an MTurk worker id, a plain link's `participant=`) is not a secret:
others may know or guess it. So it finds a session but does not open it. The browser that starts
a session gets a random key in an HttpOnly cookie (only its hash is stored); re-entering by panel
id opens the session only

- in a browser holding that cookie (a refresh, a closed tab, a crash: the participant's own
  browser), or
- with the panel's id of this very submission (Prolific's SESSION_ID, MTurk's assignmentId),
  which only the participant's own link carries; this is how MTurk's iframe, where third-party
  cookies may be blocked, and a switch of device find their session.

Anyone else is shown "already open in another browser", and the refusal is logged (arrivals page,
audit log). A session that cannot be taken over in someone's name is not held against them
either: one that was declined, or that has not begun the task and showed no sign of life (consent,
a page shown) for a whole start lease, is replaced by the next arrival's own consent, so a guesser who arrives first with someone's id
blocks them for minutes at most and cannot decline for them.

One person has one session per study unless the study allows repeats
([admission] sessions_per_person): then a new session may begin once the latest one was completed
or withdrawn, never while one is in progress (that one resumes) nor after a screening (which a
retry would undo). Coming back with the finished submission's own id still finds that session.

The session token in /s/<token> URLs stays the key to the session itself, so a refresh, the back
button and the plain link's resume offer (study/static/resume.js) work without the cookie.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import secrets

from flask import Response, request

from sqlalchemy import func, select

from study.db import db
from study.models import PageView, ParticipantSession
from study.panels import Entry
from study.security import keyed_hash

COOKIE_MAX_AGE_S = 60 * 24 * 3600


def cookie_name(slug: str) -> str:
    return f"study_key_{slug}"


def new_browser_key() -> tuple[str, str]:
    """(the cookie's value, the hash stored with the session)."""
    key = secrets.token_urlsafe(32)
    return key, hashlib.sha256(key.encode()).hexdigest()


def submission_hash(entry: Entry) -> str | None:
    return keyed_hash("submission", entry.submission) if entry.submission else None


def set_browser_key(response: Response, slug: str, key: str) -> None:
    # SameSite=None (HTTPS only) lets MTurk's cross-site iframe send it where the browser allows
    # third-party cookies; without HTTPS, Lax. The path keeps it off every other request.
    production = os.environ.get("STUDY_ENV") == "production"
    response.set_cookie(cookie_name(slug), key, max_age=COOKIE_MAX_AGE_S, path=f"/study/{slug}", httponly=True,
                        secure=production, samesite="None" if production else "Lax")


def is_owner(session: ParticipantSession, entry: Entry, slug: str) -> bool:
    """Does this request come from the session's own browser, or carry its submission id?"""
    key = request.cookies.get(cookie_name(slug))
    if key and session.browser_key_hash and hmac.compare_digest(
            hashlib.sha256(key.encode()).hexdigest(), session.browser_key_hash):
        return True
    given = submission_hash(entry)
    return bool(given and session.submission_hash and hmac.compare_digest(given, session.submission_hash))


REPEAT_AFTER = ("completed", "withdrawn")


def may_repeat(latest: ParticipantSession, entry: Entry, sessions_per_person: int) -> bool:
    """May this arrival start another session of the person whose latest session is `latest`?"""
    if latest.state not in REPEAT_AFTER or latest.attempt >= sessions_per_person:
        return False
    given = submission_hash(entry)
    return not (given and latest.submission_hash and hmac.compare_digest(given, latest.submission_hash))


def replaceable(session: ParticipantSession, now: dt.datetime, start_lease: dt.timedelta) -> bool:
    """A session someone else's consent may replace: declined, or not started and silent (no
    consent, no page shown) for a whole start lease, so a slow reader of the instructions keeps it."""
    if session.state == "declined":
        return True
    if session.instructed_at is not None or session.state not in ("consented", "assigned", "timed_out"):
        return False
    last_view = db.session.scalar(select(func.max(PageView.at)).where(PageView.session_id == session.id))
    return now - max(filter(None, (session.consented_at, session.created_at, last_view))) > start_lease
