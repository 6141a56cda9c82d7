"""Export of 1,000,000 answers: `flask --app study export` wall time and peak memory.

A study made from a synthetic stimulus set gets 10,000 completed sessions of 100 answers each,
seeded with a few set-based INSERT … SELECT statements (seconds, not the hours the HTTP flow
would take). The export then runs as its own process, timed from start to exit, its peak RSS
read from the kernel (wait4). Peer: the database's own CSV dump of the same view (`sqlite3 -csv`,
`psql \\copy`), which does no per-row Python work. Targets: < 60 s and < 200 MB.

`python -m benchmarks --only export [--tier quick|full]` (quick: SQLite; full: also PostgreSQL)
"""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

from benchmarks.results import Entry, write_section

BIN = Path(sys.executable).parent
SESSIONS, ANSWERS_PER_SESSION = 10_000, 100
TIERS = {"quick": ("SQLite",), "full": ("SQLite", "PostgreSQL")}

_NUMBERS = "CREATE TABLE bench_n (i INTEGER PRIMARY KEY)"
_SESSIONS = """
INSERT INTO participant_session (public_id, study_id, participant_hash, panel, panel_ids, state, assignment_list_id,
    seed, catch_failed, is_bot, is_pilot, completion_code, created_at, consented_at, assigned_at, instructed_at,
    in_task_at, completed_at, last_seen_at)
SELECT 'sess' || CAST(a.i * 100 + b.i AS VARCHAR), :study, 'p_' || CAST(a.i * 100 + b.i AS VARCHAR), 'link', '{}',
    'completed', :list, a.i * 100 + b.i, 0, :false, :false, 'CODE', :now, :now, :now, :now, :now, :now, :now
FROM bench_n a CROSS JOIN bench_n b WHERE a.i < :sessions / 100 AND b.i < 100
"""
# Trial k of every session answers one of the list's stimuli, label and rate in turn.
_ANSWERS = """
INSERT INTO answer (session_id, trial_index, client_id, stimulus_id, task, block, is_practice, is_catch,
    response_label, response_rating, rt_ms, presented_at, responded_at, received_at)
SELECT ps.id, n.i, 'c' || CAST(ps.id AS VARCHAR) || '-' || CAST(n.i AS VARCHAR), :first_stimulus + (n.i / 2) % :stimuli,
    CASE WHEN n.i % 2 = 0 THEN 'label' ELSE 'rate' END, 'main', :false, :false,
    CASE WHEN n.i % 2 = 0 THEN (ps.id + n.i) % 10 END, CASE WHEN n.i % 2 = 1 THEN 1 + (ps.id + n.i) % 5 END,
    500.0 + n.i, :now, :now, :now
FROM participant_session ps CROSS JOIN bench_n n WHERE n.i < :per_session
"""


def seed(database_url: str, workdir: Path) -> None:
    """A study and SESSIONS × ANSWERS_PER_SESSION answers in the database at database_url."""
    import flask_migrate
    from sqlalchemy import select, text

    from study import create_app
    from study.config import load_config
    from study.db import db, utcnow
    from study.models import AssignmentList, Stimulus
    from study.studies import create_study
    from study.testing.synthetic import write_stimulus_set

    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url})
    with app.app_context():
        flask_migrate.upgrade()
        study, _ = create_study(load_config(Path(__file__).parent.parent / "study" / "default_study.toml"),
                                write_stimulus_set(workdir / "stimuli", sources=50, catch=10))
        first = db.session.scalar(select(Stimulus.id).where(Stimulus.study_id == study.id).order_by(Stimulus.id))
        stimuli = db.session.query(Stimulus).filter(Stimulus.study_id == study.id).count()
        list_id = db.session.scalar(select(AssignmentList.id).where(AssignmentList.study_id == study.id))
        params = {"study": study.id, "list": list_id, "false": False, "now": utcnow(), "sessions": SESSIONS,
                  "per_session": ANSWERS_PER_SESSION, "first_stimulus": first, "stimuli": stimuli}
        with db.engine.begin() as conn:
            conn.execute(text(_NUMBERS))
            conn.execute(text("INSERT INTO bench_n (i) VALUES (:i)"), [{"i": i} for i in range(max(ANSWERS_PER_SESSION, 100))])
            conn.execute(text(_SESSIONS), params)
            conn.execute(text(_ANSWERS), params)
            conn.execute(text("DROP TABLE bench_n"))


# A child's ru_maxrss counts the moment between fork and exec, when it still shares its parent's
# memory: forked from this process (torch and a seeded database loaded: ~500 MB) the export would
# read as that large. So a small launcher forks it and reports its peak.
_LAUNCHER = ("import os, subprocess, sys; p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL); "
             "_, status, usage = os.wait4(p.pid, 0); print(usage.ru_maxrss); sys.exit(os.waitstatus_to_exitcode(status))")


def timed_export(database_url: str, out: Path) -> tuple[float, float, int]:
    """(seconds, peak RSS in MB, answers written) of `flask --app study export` in its own process."""
    env = {**os.environ, "STUDY_DATABASE_URL": database_url}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _LAUNCHER, str(BIN / "flask"), "--app", "study", "export", "--out", str(out)],
                          env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"export failed: {done.stderr[-2000:]}")
    with (out / "responses.csv").open("rb") as fh:
        rows = sum(1 for _ in fh) - 1
    return seconds, int(done.stdout.split()[-1]) / 1024, rows


def peer_dump(dialect: str, database_url: str, out: Path) -> float | None:
    """Seconds the database's own CSV dump of the same view takes, None if its client is missing."""
    query = "SELECT * FROM responses_long ORDER BY study_id, session_id, trial_index"
    if dialect == "SQLite":
        tool, cmd = "sqlite3", ["sqlite3", "-csv", "-header", database_url.removeprefix("sqlite:///"), query]
    else:
        tool = "psql"
        cmd = ["psql", database_url.replace("postgresql+psycopg", "postgresql"), "-c", f"\\copy ({query}) TO STDOUT CSV HEADER"]
    if shutil.which(tool) is None:
        return None
    start = time.perf_counter()
    with (out / "peer.csv").open("wb") as fh:
        subprocess.run(cmd, stdout=fh, check=True)
    return time.perf_counter() - start


@contextlib.contextmanager
def database(dialect: str, workdir: Path) -> Iterator[str]:
    if dialect == "SQLite":
        yield f"sqlite:///{workdir / 'export.sqlite'}"
    else:
        from benchmarks.bench_server import bench_database

        with bench_database() as url:
            yield url


def run(tier: str) -> None:
    entries, notes = [], []
    for dialect in TIERS[tier]:
        with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp, database(dialect, Path(tmp)) as url:
            workdir = Path(tmp)
            start = time.perf_counter()
            seed(url, workdir)
            seeded = time.perf_counter() - start
            seconds, peak_mb, rows = timed_export(url, workdir / "out")
            peer = peer_dump(dialect, url, workdir)
            print(f"{dialect}: seeded in {seeded:.1f} s; export {rows} rows in {seconds:.1f} s, peak {peak_mb:.0f} MB; "
                  f"peer {peer if peer is None else round(peer, 1)} s", flush=True)
            if rows != SESSIONS * ANSWERS_PER_SESSION:
                raise RuntimeError(f"export wrote {rows} rows, expected {SESSIONS * ANSWERS_PER_SESSION}")
            peer_name = "sqlite3 -csv" if dialect == "SQLite" else "psql \\copy"
            entries += [
                Entry(f"{dialect}: export 1,000,000 answers (s)", f"{seconds:.1f}",
                      f"{peer:.1f} ({peer_name})" if peer else "—", f"{seconds / peer:.1f}×" if peer else "—", "< 60"),
                Entry(f"{dialect}: export peak memory (MB)", f"{peak_mb:.0f}", target="< 200"),
            ]
            notes.append(f"{dialect}: seeding {SESSIONS:,} sessions × {ANSWERS_PER_SESSION} answers took {seeded:.1f} s.")
    # One section per tier (the full one adds PostgreSQL), so a quick run does not erase the full one.
    write_section("Study export" + (" (SQLite and PostgreSQL)" if tier == "full" else ""), entries, f"python -m benchmarks --only export --tier {tier}",
                  notes="Wall time of the whole `flask --app study export` process (start-up included), peak RSS from "
                        "wait4 in a small launcher process (forked from the benchmark itself, the export would count the "
                        "benchmark's own memory: 422–588 MB read on 2026-12-03 before this was fixed); the export also writes participants.csv and data_dictionary.csv. The peer dumps the "
                        "same view with the database's own C client (no Python per row). " + " ".join(notes))
