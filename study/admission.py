"""Admission control: who may start a new session, and how many may start how fast.

Each attempt to start a session is a row of the `arrival` table (admitted, or the reason it was
refused), so the limits are counted in the database and hold across every gunicorn worker and
app server. The client address is stored only as a keyed hash (IPv6 addresses by their /64
network, which one household or phone usually holds whole). Sessions the researcher marked (bot
and pilot links, signed with the server's key) are not limited.

The limits come from the study config's [admission] table: new sessions per address per hour,
new sessions per minute for the whole study. A refused arrival is told in plain words and the
researcher sees it on the dashboard's arrivals page.
"""
from __future__ import annotations

import datetime as dt
import ipaddress

from flask import request
from sqlalchemy import func, select

from study.config import StudyConfig
from study.db import db
from study.models import Arrival, Study
from study.security import keyed_hash

REFUSALS = {
    "per_address": "Too many new sessions were started from your network in the last hour. Please try again later.",
    "per_minute": "Many people are starting this study right now. Please wait a minute and reload this page.",
    "anonymous_off": "This study needs the personal link from the recruiting site; the plain link is not open.",
    "open_elsewhere": "This study is already open in another browser for this participant id. Please go back to "
                      "that browser to continue. If that was not you, contact the researcher.",
}


REPEAT_QUIET = dt.timedelta(seconds=10)


def address_hash() -> str:
    address = request.remote_addr or "?"
    try:
        parsed = ipaddress.ip_address(address)
        if parsed.version == 6:
            address = str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    except ValueError:
        pass
    return keyed_hash("client-address", address)


def record(study: Study, panel: str, outcome: str, now: dt.datetime) -> bool:
    """Add an arrival row to the caller's transaction; False (nothing added) for a refusal this
    address had for the same reason within the last REPEAT_QUIET: a client hammering the door
    must not turn each refused request into a write."""
    digest = address_hash()
    if outcome != "admitted" and db.session.scalar(select(Arrival.id).where(
            Arrival.address_hash == digest, Arrival.study_id == study.id, Arrival.outcome == outcome,
            Arrival.at > now - REPEAT_QUIET).limit(1)) is not None:
        return False
    db.session.add(Arrival(study_id=study.id, at=now, address_hash=digest, panel=panel, outcome=outcome))
    return True


def over_limit(study: Study, config: StudyConfig, now: dt.datetime) -> str | None:
    """The limit a new session would break ("per_address" or "per_minute"), or None. Call inside
    the write transaction that creates the session, so concurrent arrivals are counted in turn."""
    if db.engine.dialect.name == "postgresql":  # SQLite's BEGIN IMMEDIATE serialises already
        db.session.execute(select(Study.id).where(Study.id == study.id).with_for_update(key_share=True))
    admitted = select(func.count()).select_from(Arrival).where(Arrival.study_id == study.id, Arrival.outcome == "admitted")
    limits = config.admission
    if db.session.scalar(admitted.where(Arrival.at > now - dt.timedelta(minutes=1))) >= limits.new_sessions_per_minute:
        return "per_minute"
    if db.session.scalar(admitted.where(Arrival.address_hash == address_hash(), Arrival.at > now - dt.timedelta(hours=1))
                         ) >= limits.new_sessions_per_address_per_hour:
        return "per_address"
    return None


def refused_arrivals(study: Study, limit: int = 200) -> list[dict]:
    """The latest refusals, newest first, for the dashboard (no address, only its hash's start)."""
    rows = db.session.execute(select(Arrival.at, Arrival.panel, Arrival.outcome, Arrival.address_hash)
                              .where(Arrival.study_id == study.id, Arrival.outcome != "admitted")
                              .order_by(Arrival.at.desc()).limit(limit))
    return [{"at": at.isoformat(timespec="seconds") + "Z", "panel": panel, "reason": outcome, "address": digest[:8]}
            for at, panel, outcome, digest in rows]
