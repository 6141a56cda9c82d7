"""Faults a running study meets, thrown at the real server while the project's bots take part.

Each fault gets a fresh SQLite study (PostgreSQL for its restart) served by gunicorn (deploy/gunicorn.conf.py, 2 workers; the
stalled-client fault goes through the demo's nginx front, scripts/demo.py) and a run of
`study.simulate` bots (or, for leases, real-panel participants driven by study.testing.driver). Printed
and recorded per fault: acknowledged answers lost (an answer a client saw acknowledged that the
database lacks or holds differently), duplicates (two rows for one session's trial), sessions
finished, sessions stranded (left active at the end), and over-filled slots (real completions
beyond the target).

`python -m benchmarks --only faults` (the disk-full fault mounts a tmpfs and runs only as root; the
PostgreSQL restart needs Debian's postgresql, as the tests do).
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from sqlalchemy import create_engine, text

from benchmarks.bench_server import bench_database
from benchmarks.results import Entry, write_section
from study.testing import servers
from study.testing.servers import free_port

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SECRET = "bench-faults"
TIERS = {"quick": {"bots": 16}, "full": {"bots": 64}}
CONFIG = ('id = "faults"\ntitle = "Faults"\ntarget_participants = {target}\ntrials_per_participant = 4\n'
          'practice_trials = 1\ncatch_rate = 0\nlease_minutes = {lease}\n'
          '[texts]\nconsent = "c"\ninstructions = "i"\ndebrief = "d"\n'
          '[completion]\ncode = "OK"\ndeclined_code = "NO"\ntimed_out_code = "LATE"\n')


@dataclass
class Outcome:
    lost: int
    duplicates: int
    finished: int
    stranded: int
    overfilled: int
    seconds: float


def _demo():
    spec = importlib.util.spec_from_file_location("demo", REPO / "scripts" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_study(workdir: Path, url: str, target: int = 1000, lease_minutes: float = 30) -> dict[str, str]:
    from study.testing.synthetic import write_stimulus_set

    env = {**os.environ, "STUDY_DATABASE_URL": url, "STUDY_SECRET_KEY": SECRET}
    config = workdir / "faults.toml"
    config.write_text(CONFIG.format(target=target, lease=lease_minutes))
    stimuli = workdir / "stimuli"
    if not stimuli.exists():
        write_stimulus_set(stimuli, sources=8, conditions=("normal", "gradreg"), practice=1, catch=0)
    for args in (["init-db"], ["create-study", str(config), "--stimuli", str(stimuli)]):
        subprocess.run([str(BIN / "flask"), "--app", "study", *args], env=env, check=True, capture_output=True)
    return env


@contextlib.contextmanager
def gunicorn(env: dict[str, str], port: int) -> Iterator[subprocess.Popen]:
    """The study as deployed (deploy/gunicorn.conf.py, 2 workers) on `port`."""
    with servers.gunicorn(env, port, ["-c", str(REPO / "deploy" / "gunicorn.conf.py"), "--workers", "2"], cwd=REPO) as (_, proc):
        yield proc


def run_bots(base: str, bots: int, during: Callable[[], None]) -> list:
    """`bots` simulate bots, 4 at a time, with `during()` run beside them once they are under way."""
    from study import create_app
    from study.security import session_mark
    from study.simulate import simulate

    with create_app({"SECRET_KEY": SECRET}).app_context():
        mark = session_mark("faults", "bot")
    results: list = []
    runner = threading.Thread(target=lambda: results.extend(simulate(base, "faults", bots, mark, concurrency=4)))
    runner.start()
    during()
    runner.join()
    return results


def completed_sessions(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM participant_session WHERE state = 'completed'")).scalar()
    finally:
        engine.dispose()


def wait_for_completions(url: str, n: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while completed_sessions(url) < n and time.monotonic() < deadline:
        time.sleep(0.05)


def judge(url: str, acked: dict[tuple[str, int], tuple[str, object]], seconds: float) -> Outcome:
    """Compare what clients saw acknowledged with what the database holds. `acked` maps
    (session, trial index) to ("value", response) or ("client_id", id)."""
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT ps.public_id, a.trial_index, a.client_id, "
                                 "coalesce(a.response_label, a.response_rating) "
                                 "FROM answer a JOIN participant_session ps ON ps.id = a.session_id")).all()
        duplicates = conn.execute(text("SELECT count(*) FROM (SELECT session_id, trial_index FROM answer "
                                       "GROUP BY session_id, trial_index HAVING count(*) > 1) d")).scalar()
        states = dict(conn.execute(text("SELECT state, count(*) FROM participant_session GROUP BY state")).all())
        real_completed, target = conn.execute(text(
            "SELECT (SELECT count(*) FROM participant_session WHERE state = 'completed' AND NOT is_bot AND NOT is_pilot), "
            "(SELECT target_participants FROM study)")).one()
    engine.dispose()
    stored = {(s, i): {"client_id": c, "value": v} for s, i, c, v in rows}
    lost = sum(1 for key, (kind, value) in acked.items() if stored.get(key, {}).get(kind) != value)
    stranded = sum(states.get(state, 0) for state in ("assigned", "instructed", "in_task"))
    return Outcome(lost, duplicates, states.get("completed", 0), stranded, max(0, real_completed - target), seconds)


def bot_acks(results: list) -> dict[tuple[str, int], tuple[str, object]]:
    return {(r.session_id, i): ("value", v) for r in results for i, v in r.answers.items()}


# --- the faults -------------------------------------------------------------------------------

def sqlite_url(workdir: Path) -> str:
    return f"sqlite:///{workdir / 'study.sqlite'}"


def server_kill(workdir: Path, bots: int) -> Outcome:
    url = sqlite_url(workdir)
    env, port = make_study(workdir, url), free_port()
    start = time.monotonic()

    with contextlib.ExitStack() as stack:
        proc = stack.enter_context(gunicorn(env, port))

        def during() -> None:
            wait_for_completions(url, 2)
            os.killpg(proc.pid, signal.SIGKILL)  # master and workers at once
            proc.wait()
            stack.close()
            time.sleep(10)
            stack.enter_context(gunicorn(env, port))

        results = run_bots(f"http://127.0.0.1:{port}", bots, during)
    return judge(url, bot_acks(results), time.monotonic() - start)


def stalled_clients(workdir: Path, bots: int) -> Outcome:
    url = sqlite_url(workdir)
    env, port, demo = make_study(workdir, url), free_port(), _demo()
    procs = demo.start_server(env, workdir, port)
    stalled: list[socket.socket] = []
    start = time.monotonic()
    try:
        def during() -> None:
            for _ in range(12):
                sock = socket.create_connection(("127.0.0.1", port))
                sock.sendall(b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 400\r\n\r\n{")
                stalled.append(sock)

        results = run_bots(f"http://127.0.0.1:{port}", bots, during)
    finally:
        for sock in stalled:
            sock.close()
        demo.stop_server(procs)
    return judge(url, bot_acks(results), time.monotonic() - start)


def lock_held(workdir: Path, bots: int) -> Outcome:
    url, db_path = sqlite_url(workdir), workdir / "study.sqlite"
    env, port = {**make_study(workdir, url), "STUDY_SQLITE_BUSY_TIMEOUT_MS": "1000"}, free_port()
    start = time.monotonic()
    with gunicorn(env, port):
        def during() -> None:
            wait_for_completions(url, 1)
            holder = sqlite3.connect(db_path, isolation_level=None)
            holder.execute("BEGIN IMMEDIATE")  # another process's write transaction, 6 s long
            time.sleep(6)
            holder.execute("ROLLBACK")
            holder.close()

        results = run_bots(f"http://127.0.0.1:{port}", bots, during)
    return judge(url, bot_acks(results), time.monotonic() - start)


def disk_full(workdir: Path, bots: int) -> Outcome:
    disk = workdir / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(disk)], check=True)
    try:
        url = sqlite_url(disk)
        env, port = make_study(workdir, url), free_port()
        start = time.monotonic()
        with gunicorn(env, port):
            def during() -> None:
                wait_for_completions(url, 1)
                filler = disk / "filler"
                with open(filler, "wb", buffering=0) as out, contextlib.suppress(OSError):
                    while True:
                        out.write(b"\0" * 65536)
                time.sleep(3)
                os.truncate(filler, max(0, filler.stat().st_size - 512 * 1024))

            results = run_bots(f"http://127.0.0.1:{port}", bots, during)
        return judge(url, bot_acks(results), time.monotonic() - start)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def lease_returners(workdir: Path, bots: int) -> Outcome:
    """Real-panel participants: half idle past the 1 s lease, newcomers take their places, the
    idlers come back and try to finish."""
    from study.testing.driver import DriverError, Participant

    target = max(2, bots // 4)
    url = sqlite_url(workdir)
    env, port = make_study(workdir, url, target=target, lease_minutes=1 / 60), free_port()
    base = f"http://127.0.0.1:{port}"
    start = time.monotonic()
    people = [Participant(base, "faults", {"participant": f"idle{i}"}, seed=i) for i in range(target)]
    with gunicorn(env, port):
        for person in people:
            person.start()
            person.answer(person.pending()[0])
        time.sleep(1.5)
        newcomers = [Participant(base, "faults", {"participant": f"new{i}"}, seed=100 + i) for i in range(target)]
        for person in newcomers:
            person.run()
        for person in people:
            with contextlib.suppress(DriverError):
                person.run()  # turned away: the place went to a newcomer
    acked = {(p.data["session"], i): ("client_id", c) for p in people + newcomers for i, c in p.acked.items()}
    return judge(url, acked, time.monotonic() - start)


def postgres_restart(workdir: Path, bots: int) -> Outcome:
    """PostgreSQL restarted under the running study (pg_ctl restart -m fast: every connection
    is cut with AdminShutdown, the server is back a few seconds later)."""
    with bench_database() as url:
        env, port = make_study(workdir, url), free_port()
        engine = create_engine(url)
        with engine.connect() as conn:
            data_dir = conn.execute(text("SHOW data_directory")).scalar()
        engine.dispose()
        start = time.monotonic()
        with gunicorn(env, port):
            def during() -> None:
                wait_for_completions(url, 2)
                # A log file of its own: the restarted server must not hold this process's pipes open.
                subprocess.run([*servers.pg_command("pg_ctl"), "-D", data_dir, "-l", str(Path(data_dir).parent / "log"), "-m",
                                "fast", "-w", "restart"], check=True, stdout=subprocess.DEVNULL, timeout=120)

            results = run_bots(f"http://127.0.0.1:{port}", bots, during)
        return judge(url, bot_acks(results), time.monotonic() - start)


FAULTS: list[tuple[str, Callable[[Path, int], Outcome]]] = [
    ("gunicorn SIGKILLed mid-run, back after 10 s", server_kill),
    ("12 clients stalled mid-POST (demo path: nginx in front)", stalled_clients),
    ("write lock held 6 s past a 1 s busy timeout", lock_held),
    ("disk full (tmpfs), 512 KB freed after 3 s", disk_full),
    ("lease runs out, place re-issued, participant returns", lease_returners),
    ("PostgreSQL restarted mid-run (pg_ctl restart -m fast)", postgres_restart),
]


def run(tier: str) -> None:
    bots = TIERS[tier]["bots"]
    entries = []
    for name, fault in FAULTS:
        if fault is disk_full and os.geteuid() != 0:
            print(f"   {name}: not run (mounting a tmpfs needs root)", flush=True)
            continue
        with tempfile.TemporaryDirectory() as tmp:
            outcome = fault(Path(tmp), bots)
        line = (f"lost {outcome.lost}, duplicates {outcome.duplicates}, finished {outcome.finished}, "
                f"stranded {outcome.stranded}, over-filled {outcome.overfilled}")
        print(f"   {name}: {line} ({outcome.seconds:.0f} s)", flush=True)
        ok = outcome.lost == outcome.duplicates == outcome.stranded == outcome.overfilled == 0
        entries.append(Entry(name, line, target="lost 0, duplicates 0, stranded 0, over-filled 0",
                             ratio="met" if ok else "MISSED"))
    write_section(f"Faults ({tier})", entries, command=f"python -m benchmarks --only faults --tier {tier}", notes=(
        f"{bots} bots per fault (study.simulate, 4 at a time, default 120 s retry deadline), SQLite, gunicorn with "
        "deploy/gunicorn.conf.py and 2 workers. 'finished' counts completed sessions (the lease fault: the "
        "newcomers who took the places; the returners whose place was taken are turned away with the timed-out "
        "code and end timed out, not stranded). 'stranded': sessions still active at the end. 'lost': answers a client saw "
        "acknowledged that the database lacks or holds differently."))
