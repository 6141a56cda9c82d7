"""Database trouble seen from outside: a 503 that clients retry, and the write check of /healthz.

A database that cannot take a request right now (SQLite's lock held past the busy timeout, a
full disk, PostgreSQL restarting) raises OperationalError. That is the server's trouble, not
the participant's, and it passes: the answer is 503 with Retry-After, which the trial page, the
step forms (study/static/retry.js) and the bots (study.driver) retry, never a bare 500.

`/healthz` rewrites one row (study.models.HealthProbe) unchanged, so a readiness check fails while
writes fail instead of saying "ok" over a database that takes none.
"""
from __future__ import annotations

import contextlib

from flask import Flask, current_app, jsonify, render_template, request
from sqlalchemy import update
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from study.db import BUSY_TIMEOUT_MS, checkpoint_wal, db, single_statement
from study.models import HealthProbe

RETRY_AFTER_S = 2
PROBE_WAIT_MS = 2000
BUSY_MESSAGE = ("The study server cannot save anything for a moment. Nothing you gave is lost; "
                "this page tries again by itself, or reload it in a few seconds.")
JSON_PATHS = ("/answers", "/complete", "/environment", "/heartbeat")


def database_unavailable(exc: OperationalError):
    current_app.logger.warning("database unavailable, answering 503: %s", str(exc.orig).splitlines()[0])
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


def write_problem() -> str | None:
    """None if a one-row write commits now, else why not (one line). On its own connection, in
    autocommit, waiting at most PROBE_WAIT_MS for SQLite's lock: a probe must answer quickly."""
    sqlite = db.engine.dialect.name == "sqlite"
    try:
        with db.engine.connect() as conn:
            conn = single_statement(conn)  # before any statement: no BEGIN on SQLite
            if sqlite:
                conn.exec_driver_sql(f"PRAGMA busy_timeout={PROBE_WAIT_MS}")
            try:
                # Rewrites the row as it is: a real write (lock, journal, disk) that changes no data,
                # so a GET of /healthz still changes nothing.
                written = conn.execute(
                    update(HealthProbe).where(HealthProbe.id == 1).values(at=HealthProbe.at)).rowcount
                conn.commit()
            finally:
                if sqlite:
                    conn.exec_driver_sql(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        return None if written else "the health_probe row is missing (run flask --app study init-db)"
    except SQLAlchemyError as exc:
        return str(getattr(exc, "orig", exc)).splitlines()[0][:200]
