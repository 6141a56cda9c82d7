"""Who may do what: session tokens in URLs, CSRF tokens in forms, keyed participant hashes.

Participant endpoints are authorised by an unguessable token carried in the URL (not a cookie),
so the study also works inside MTurk's cross-site iframe where third-party cookies are blocked.
For the same reason CSRF tokens are bound to the session (or to the entry parameters) rather
than to a cookie session, which is why Flask-WTF's cookie-bound CSRFProtect does not fit here.
"""
from __future__ import annotations

import hashlib
import hmac
from typing import Callable

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


def participant_hash(identity: str) -> str:
    """Pseudonymous participant id: a keyed hash of the person's normalised panel id
    (study.panels.identity), stable across studies and the same on every panel."""
    return "p_" + keyed_hash("participant-id", identity)[:24]


def keyed_hash(purpose: str, value: str) -> str:
    """A value the database may hold without revealing it (an address, a submission id)."""
    return hmac.new(_key(purpose), value.encode(), hashlib.sha256).hexdigest()


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


# Scripts, styles and images only from this site; the trial data is a JSON <script> block, which
# browsers never execute. Forms may post here and to MTurk's externalSubmit (the completion form).
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self' https://www.mturk.com https://workersandbox.mturk.com; ")
# Participant pages must load inside MTurk's iframe (ExternalQuestion); nothing else may be framed
# (the dashboard least of all: framing is how clickjacking works).
MTURK_FRAME_ANCESTORS = "frame-ancestors 'self' https://www.mturk.com https://workersandbox.mturk.com"
PARTICIPANT_BLUEPRINTS = ("participant", "api")


def _security_headers(response: Response) -> Response:
    if request.blueprint in PARTICIPANT_BLUEPRINTS:
        response.headers["Content-Security-Policy"] = CSP + MTURK_FRAME_ANCESTORS
    else:
        response.headers["Content-Security-Policy"] = CSP + "frame-ancestors 'none'"
        response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    # Session and dashboard URLs carry tokens: never leak them to another site.
    response.headers["Referrer-Policy"] = "no-referrer"
    if request.path.startswith(("/s/", "/study/", "/admin")):
        response.headers["Cache-Control"] = "no-store"
    return response


def from_proxies(direct: Callable, proxied: Callable, addresses: set[str]) -> Callable:
    """WSGI: `proxied` (which reads X-Forwarded-*) for requests from a proxy's address, `direct`
    for everyone else, whose forwarded headers are dropped unread."""
    def app(environ: dict, start_response: Callable):
        if environ.get("REMOTE_ADDR") in addresses:
            return proxied(environ, start_response)
        for name in [k for k in environ if k.startswith("HTTP_X_FORWARDED_") or k == "HTTP_FORWARDED"]:
            del environ[name]
        return direct(environ, start_response)
    return app


def install_security_headers(app: Flask) -> None:
    app.after_request(_security_headers)
