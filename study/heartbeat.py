"""POST /s/<token>/heartbeat: an open session page keeps its lease (study.leases) alive.

A participant who reads the instructions slowly or thinks long over an image sends no answer for
a while; the page's beat (study/static/retry.js) extends the lease meanwhile, so only a closed or
abandoned page lets it run out. The reply tells the page when to beat next, or (`every_s` null)
to stop; a timed-out session that lost its place gets `next`, the page that says so.
"""
from __future__ import annotations

from flask import Blueprint, jsonify

from study.api import json_body
from study.db import db, utcnow
from study.leases import heartbeat_every_s, resume
from study.models import ACTIVE_STATES
from study.participant import home_url, load_session

bp = Blueprint("heartbeat", __name__)


@bp.post("/s/<token>/heartbeat")
def heartbeat(token: str):
    json_body()  # JSON only, like the other page posts (the CSRF defence of study.api)
    session = load_session(token, write=True)
    now = utcnow()
    if session.state == "timed_out" and not resume(session, now):
        return jsonify(ok=False, every_s=None, next=home_url(session)), 409
    if session.state not in ACTIVE_STATES:
        return jsonify(ok=True, every_s=None)
    session.touch(now)
    db.session.commit()
    return jsonify(ok=True, every_s=heartbeat_every_s(session))
