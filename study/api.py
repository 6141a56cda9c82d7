"""JSON endpoints the trial page posts to: answers, completion, device details.

They take only `application/json` bodies: a cross-site form cannot send that content type
without a CORS preflight, which this server never grants, so together with the session token in
the URL this is the CSRF defence for the JSON side. Errors are JSON `{"error": "..."}` with a 4xx
status the page can show; nothing is partially written (each request is one transaction).
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, abort, jsonify, request, url_for
from sqlalchemy import func, select
from werkzeug.exceptions import HTTPException

from study.answers import ANSWERABLE_STATES, AnswerError, PlaceLost, missing_trials, record_answer
from study.config import StudyConfig, config_from_dict
from study.db import db, utcnow
from study.leases import resume
from study.models import Answer, ParticipantSession
from study.participant import home_url, load_session, page_url
from study.security import public_id_from_token, session_token

bp = Blueprint("api", __name__)


@bp.errorhandler(HTTPException)
def json_error(exc: HTTPException):
    return jsonify(error=exc.description), exc.code


def json_body() -> Any:
    if not request.is_json:
        abort(415, "send a JSON body with Content-Type: application/json")
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # thousands of nested brackets: no answer looks like that
        body = None
    if body is None:
        abort(400, "the body is not valid JSON")
    return body


@bp.post("/s/<token>/answers")
def answers(token: str):
    payload = json_body()
    public_id = public_id_from_token(token)
    if public_id is None:
        abort(404, "this study link is not valid")
    try:
        created, state = record_answer(public_id, payload, utcnow())
    except LookupError:
        abort(404, "this study session does not exist")
    except AnswerError as exc:
        db.session.rollback()
        state = db.session.scalar(select(ParticipantSession.state).where(ParticipantSession.public_id == public_id))
        ended = {"next": page_url(public_id, state)} if state not in ANSWERABLE_STATES else {}
        if isinstance(exc, PlaceLost):
            ended = {"next": url_for("participant.ended", token=session_token(public_id))}
        return jsonify(error=str(exc), **ended), exc.status
    body = {"ok": True, "trial_index": payload["trial_index"], "duplicate": not created}
    if state not in ANSWERABLE_STATES:  # e.g. screened out by this answer
        body["next"] = page_url(public_id, state)
    return jsonify(body), 201 if created else 200


@bp.post("/s/<token>/complete")
def complete(token: str):
    """Issue the completion code, but only once the server holds every answer of the plan."""
    json_body()
    session = load_session(token, write=True)
    if session.state != "completed":
        if session.state == "timed_out" and not resume(session, utcnow()):  # never a second paid completion
            return jsonify(error=str(PlaceLost()), next=home_url(session)), 409
        if session.state not in ANSWERABLE_STATES:
            return jsonify(error=f"this session is {session.state.replace('_', ' ')}", next=home_url(session)), 409
        missing = missing_trials(session)
        if missing:
            return jsonify(error=f"{len(missing)} answer(s) have not reached the server yet", missing=missing), 409
        config = config_from_dict(session.study.config)
        if too_fast(session, config):
            session.screen_reason = "too_fast"
            session.move_to("screened_out")
            db.session.commit()
            return jsonify(ok=True, next=home_url(session))
        session.completion_code = config.completion.for_completed(session.catch_failed)
        session.move_to("completed")
        db.session.commit()
    return jsonify(ok=True, next=url_for("participant.debrief", token=session_token(session.public_id)))


def server_seconds_per_answer(instructed_at: dt.datetime | None, last_received_at: dt.datetime | None,
                              answers: int) -> float | None:
    """A session's pace by the server's clock alone: from the instructions to the last answer's
    receipt, per answer (client-reported times are the participant's to invent). The too-fast
    screening here and the dashboard's speeders both use it."""
    if instructed_at is None or last_received_at is None or not answers:
        return None
    return (last_received_at - instructed_at).total_seconds() / answers


def too_fast(session: ParticipantSession, config: StudyConfig) -> bool:
    """Finished faster than `min_seconds_per_answer` per answer of the plan (bots exempt)."""
    if session.is_bot or not config.min_seconds_per_answer:
        return False
    last = db.session.scalar(select(func.max(Answer.received_at)).where(Answer.session_id == session.id))
    pace = server_seconds_per_answer(session.instructed_at, last, len(session.plan or []))
    return pace is not None and pace < config.min_seconds_per_answer


ENVIRONMENT_FIELDS = {"viewport_width": (int, 1, 20000), "viewport_height": (int, 1, 20000),
                      "device_pixel_ratio": (float, 0.1, 10.0), "frame_ms": (float, 1.0, 1000.0)}


@bp.post("/s/<token>/environment")
def environment(token: str):
    """Viewport, device pixel ratio and estimated frame period, stored once per page load."""
    body = json_body()
    if not isinstance(body, dict) or set(body) != set(ENVIRONMENT_FIELDS):
        abort(422, f"send exactly these fields: {', '.join(ENVIRONMENT_FIELDS)}")
    for name, (kind, lo, hi) in ENVIRONMENT_FIELDS.items():
        value = body[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi \
                or (kind is int and value != int(value)):
            abort(422, f"{name} must be a number from {lo} to {hi}")
    session = load_session(token, write=True)
    for name, (kind, _lo, _hi) in ENVIRONMENT_FIELDS.items():
        setattr(session, name, kind(body[name]))
    db.session.commit()
    return jsonify(ok=True)
