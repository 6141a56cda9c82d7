"""Database trouble seen from outside: a 503 that clients retry, and the write check of /healthz.

A database that cannot take a request right now (SQLite's lock held past the busy timeout, a
full disk, PostgreSQL restarting) raises OperationalError. That is the server's trouble, not
the participant's, and it passes: the answer is 503 with Retry-After, which the trial page, the
step forms (study/static/retry.js) and the bots (study.testing.driver) retry, never a bare 500.

`/healthz` commits a write (study.models.HealthProbe, left as it was), so a readiness check fails
while writes fail instead of saying "ok" over a database that takes none.
"""
from __future__ import annotations

import contextlib
import sqlite3

from flask import Flask, current_app, jsonify, render_template, request
from sqlalchemy import delete, insert
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from study.db import BUSY_TIMEOUT_MS, checkpoint_wal, db, utcnow
from study.models import HealthProbe

RETRY_AFTER_S = 2
PROBE_WAIT_MS = 2000
BUSY_MESSAGE = ("The study server cannot save anything for a moment. Nothing you gave is lost; "
                "this page tries again by itself, or reload it in a few seconds.")
JSON_PATHS = ("/answers", "/complete", "/environment", "/heartbeat")


def database_unavailable(exc: Exception):
    detail = str(getattr(exc, "orig", exc)).splitlines()
    current_app.logger.warning("database unavailable, answering 503: %s", detail[0] if detail else type(exc).__name__)
    with contextlib.suppress(SQLAlchemyError):
        db.session.rollback()
    with contextlib.suppress(SQLAlchemyError):
        checkpoint_wal()  # a full disk: let the WAL give its space back once there is room
    if request.path.endswith(JSON_PATHS):
        response = jsonify(error="the database is busy or unavailable; retry shortly")
    else:
        response = current_app.make_response(render_template("message.html", title="Please wait a moment",
                                                             message=BUSY_MESSAGE))
    response.status_code = 503
    response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


def install(app: Flask) -> None:
    app.register_error_handler(OperationalError, database_unavailable)
    # study.db issues SQLite's BEGIN on the driver itself, so a lock timeout there arrives unwrapped.
    app.register_error_handler(sqlite3.OperationalError, database_unavailable)


def write_problem() -> str | None:
    """None if a write commits now, else why not (one line). On its own connection, waiting at
    most PROBE_WAIT_MS for SQLite's lock: a probe must answer quickly.

    The write adds a row and deletes it in one transaction: the database ends as it was (a GET of
    /healthz changes nothing), but the commit had to take the lock and journal a new row's pages,
    as an answer does.
    """
    sqlite = db.engine.dialect.name == "sqlite"
    probe = HealthProbe.__table__
    try:
        with db.engine.connect() as conn:
            if sqlite:
                conn.exec_driver_sql(f"PRAGMA busy_timeout={PROBE_WAIT_MS}")
            try:
                conn.execute(insert(probe).values(id=2, at=utcnow()))
                conn.execute(delete(probe).where(probe.c.id == 2))
                conn.commit()
            finally:
                conn.rollback()
                if sqlite:
                    conn.exec_driver_sql(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        return None
    except SQLAlchemyError as exc:
        return str(getattr(exc, "orig", exc)).splitlines()[0][:200]
