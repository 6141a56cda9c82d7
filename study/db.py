"""The database handle shared by the study's modules, and the per-dialect settings it needs.

SQLite is the default and is tuned for many concurrent writers on one host: WAL journal (readers
never block the writer), a busy timeout (writers queue instead of failing), foreign keys on, and
explicit transaction control so that a transaction that reads and then writes can start with
`BEGIN IMMEDIATE`. With Python's default deferred transactions the read-to-write upgrade fails at
once with "database is locked" when another writer committed in between (the busy timeout does
not apply to that case), which is how psiTurk-style code loses answers under load.
"""
from __future__ import annotations

import datetime as dt
import os

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import Connection, Engine, event
from sqlalchemy.orm import DeclarativeBase

# How long a writer queues for SQLite's lock before its request answers 503 (study.health).
BUSY_TIMEOUT_MS = int(os.environ.get("STUDY_SQLITE_BUSY_TIMEOUT_MS", "20000"))
WAL_CHECKPOINT_PAGES = 64
WAL_SIZE_LIMIT = 1 << 20


class Base(DeclarativeBase):
    pass


# Objects stay readable after commit (no reload query per attribute): a request commits once, at
# its end, and nothing outside the request changes what it already read in a way it relies on.
db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})


def utcnow() -> dt.datetime:
    """Naive UTC: SQLite has no time zones, so every timestamp is stored as UTC without one."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def configure_engine(engine: Engine) -> None:
    """Install the SQLite pragmas and transaction control; PostgreSQL needs nothing here."""
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        # The driver must not open transactions by itself, or BEGIN IMMEDIATE cannot be issued.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a crash of the server process (not of the OS) without losing
        # a committed transaction, at a fraction of FULL's fsyncs.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        # Keep the WAL small (an answer adds ~10 KB of pages to it): checkpoint every 256 KB
        # instead of 4 MB, and cut the file back after a checkpoint instead of keeping its
        # high-water size. On a full disk the WAL is what eats freed space (its checkpoint needs
        # room in the database file), so freeing more than one checkpoint's worth lets the next
        # one complete and writes resume (see also checkpoint_wal).
        cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
        cursor.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        # Straight to the driver: this runs with most requests, and SQLAlchemy's statement
        # machinery would cost more than the BEGIN itself. A `single_statement` connection
        # issues none: its one statement is its own transaction (SQLite's autocommit), so the
        # write lock is held only while that statement runs.
        options = conn.get_execution_options()
        if not options.get("single_statement"):
            conn.connection.dbapi_connection.execute("BEGIN IMMEDIATE" if options.get("write") else "BEGIN")


def begin_write() -> None:
    """Declare that the current request's transaction will write.

    Call before the first query of the request. On SQLite the transaction then starts with
    `BEGIN IMMEDIATE` (it takes the write lock up front and waits for it under the busy timeout);
    on PostgreSQL it changes nothing.
    """
    db.session.connection(execution_options={"write": True})


def single_statement(conn: Connection) -> Connection:
    """Run each statement on `conn` as its own transaction, with no BEGIN or COMMIT round trip.

    For a write that is one statement: SQLite then holds its write lock only while the statement
    runs, and PostgreSQL answers in one round trip instead of three.
    """
    if conn.dialect.name == "sqlite":
        return conn.execution_options(single_statement=True)  # _on_begin issues no BEGIN
    return conn.execution_options(isolation_level="AUTOCOMMIT")


def checkpoint_wal() -> None:
    """Copy what the WAL holds into the database file now (SQLite; elsewhere nothing).

    Called after a write failed: if the disk filled up, the next writer then starts the WAL
    afresh, cut back to WAL_SIZE_LIMIT, so writes resume as soon as the database file has room,
    without a restart. PASSIVE: it waits for no reader and no writer, copying what it can.
    """
    if db.engine.dialect.name != "sqlite":
        return
    with db.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
