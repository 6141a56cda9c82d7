"""Who may do what: session tokens in URLs, CSRF tokens in forms, keyed participant hashes.

Participant endpoints are authorised by an unguessable token carried in the URL (not a cookie),
so the study also works inside MTurk's cross-site iframe where third-party cookies are blocked.
For the same reason CSRF tokens are bound to the session (or to the entry parameters) rather
than to a cookie session, which is why Flask-WTF's cookie-bound CSRFProtect does not fit here.
"""
from __future__ import annotations

import hashlib
import hmac

from flask import Flask, Response, abort, current_app, request
from itsdangerous import BadSignature, Signer, URLSafeTimedSerializer

CSRF_MAX_AGE_S = 24 * 3600
# Flags a researcher puts on sessions through the entry link (simulate, pilot links). Signed, so a
# participant can neither mark themselves a bot (and drop out of the analysis) nor forge a pilot.
MARKS = ("bot", "pilot")


def _key(purpose: str) -> bytes:
    # One secret, separate keys per purpose, so a value signed for one use is useless for another.
    return hmac.new(current_app.secret_key.encode(), purpose.encode(), hashlib.sha256).digest()


def session_token(public_id: str) -> str:
    return Signer(_key("session-token"), sep=".").sign(public_id).decode()


def public_id_from_token(token: str) -> str | None:
    try:
        return Signer(_key("session-token"), sep=".").unsign(token).decode()
    except BadSignature:
        return None


def participant_hash(panel: str, raw_id: str) -> str:
    """Pseudonymous participant id: a keyed hash of the panel id, stable across studies."""
    digest = hmac.new(_key("participant-id"), f"{panel}:{raw_id}".encode(), hashlib.sha256).hexdigest()
    return "p_" + digest[:24]


def session_mark(slug: str, kind: str) -> str:
    """The `mark` entry parameter that flags a new session of study `slug` as a bot or a pilot."""
    if kind not in MARKS:
        raise ValueError(f"unknown session mark {kind!r}")
    return Signer(_key("session-mark"), sep=".").sign(f"{kind}:{slug}").decode()


def read_mark(slug: str, value: str) -> str | None:
    """The kind a `mark` parameter carries for study `slug`, or None when it is forged or foreign."""
    try:
        kind, _, marked = Signer(_key("session-mark"), sep=".").unsign(value).decode().partition(":")
    except BadSignature:
        return None
    return kind if kind in MARKS and marked == slug else None


def csrf_token(binding: str) -> str:
    return URLSafeTimedSerializer(_key("csrf"), salt="form").dumps(binding)


def check_csrf(binding: str) -> None:
    """Abort with a readable 400 unless the posted form carries a token made for `binding`."""
    try:
        ok = URLSafeTimedSerializer(_key("csrf"), salt="form").loads(
            request.form.get("csrf_token", ""), max_age=CSRF_MAX_AGE_S) == binding
    except BadSignature:
        ok = False
    if not ok:
        abort(400, "This form has expired or did not come from this page. Go back, reload the page and try again.")


# Participant pages must load inside MTurk's iframe (ExternalQuestion); nothing else may be framed
# (the dashboard least of all: framing is how clickjacking works).
MTURK_FRAME_ANCESTORS = "frame-ancestors 'self' https://www.mturk.com https://workersandbox.mturk.com"
PARTICIPANT_BLUEPRINTS = ("participant", "api")


def _security_headers(response: Response) -> Response:
    if request.blueprint in PARTICIPANT_BLUEPRINTS:
        response.headers["Content-Security-Policy"] = MTURK_FRAME_ANCESTORS
    else:
        response.headers["Content-Security-Policy"] = "frame-ancestors 'none'"
        response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def install_security_headers(app: Flask) -> None:
    app.after_request(_security_headers)
