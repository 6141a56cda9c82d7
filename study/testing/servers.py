"""Starting the study's servers from outside, one way for the tests, the benchmarks and the demo:
gunicorn on a loopback port (ready once /healthz answers) and a throwaway PostgreSQL cluster.

Both are the real programs (gunicorn from the venv, Debian's postgresql). Each runs in a process
group of its own, so stopping it stops its workers too, and a fault test may SIGKILL the group.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import IO, Any, Iterator, Mapping, Sequence

BIN = Path(sys.executable).parent
APP = "study:create_app()"
PG_ROOT = Path("/usr/lib/postgresql")


class ServerError(RuntimeError):
    """A server did not start: it exited, or did not answer in time."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, timeout: float = 30.0, proc: subprocess.Popen | Sequence[subprocess.Popen] = ()) -> None:
    """Until `url` answers 200; ServerError as soon as the serving process (or one of several: a
    proxy and its backend) exits, or after `timeout` s."""
    procs = [proc] if isinstance(proc, subprocess.Popen) else proc
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise ServerError(f"{Path(str(proc.args[0])).name} exited with {proc.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise ServerError(f"{url} did not answer within {timeout:.0f} s")


def stop_group(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM a process started with start_new_session=True and all its children; SIGKILL what outlives `timeout`."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# --- gunicorn -----------------------------------------------------------------------------------

def start_gunicorn(env: Mapping[str, str], port: int, args: Sequence[str] = (), app: str = APP,
                   stdout: int | IO[Any] | None = subprocess.DEVNULL, stderr: int | IO[Any] | None = subprocess.DEVNULL,
                   cwd: str | Path | None = None) -> subprocess.Popen:
    """gunicorn serving `app` on 127.0.0.1:`port` in its own process group; `args` go before the
    app (e.g. `-c deploy/gunicorn.conf.py`, `--workers 2`). Does not wait for it."""
    return subprocess.Popen([str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", *args, app], env=dict(env), cwd=cwd,
                            stdout=stdout, stderr=stderr, start_new_session=True)


@contextlib.contextmanager
def gunicorn(env: Mapping[str, str], port: int | None = None, args: Sequence[str] = (), app: str = APP,
             timeout: float = 30.0, **popen: Any) -> Iterator[tuple[str, subprocess.Popen]]:
    """A started gunicorn (see start_gunicorn) that answers /healthz; yields (base URL, process)
    and stops the group on leaving."""
    port = port or free_port()
    proc = start_gunicorn(env, port, args, app, **popen)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(base + "/healthz", timeout, proc)
        yield base, proc
    finally:
        stop_group(proc, timeout=30)


# --- PostgreSQL ---------------------------------------------------------------------------------

def pg_command(program: str) -> list[str]:
    """The command line that runs a PostgreSQL program (initdb, pg_ctl…) of the newest installed
    version. initdb refuses to run as root, so a root run hands the server to the `postgres` user."""
    found = sorted(PG_ROOT.glob(f"*/bin/{program}"))
    if not found:
        raise ServerError(f"PostgreSQL's {program} not found under {PG_ROOT}: install Debian's postgresql "
                          "(make test installs it)")
    return (["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []) + [str(found[-1])]


@contextlib.contextmanager
def throwaway_postgres(fsync: bool = False) -> Iterator[str]:
    """A PostgreSQL cluster in a temp dir on a loopback port; yields its base URL (no database).
    Tests run without fsync; a benchmark passes fsync=True to measure what a deployment pays."""
    root = Path(tempfile.mkdtemp(prefix="pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", free_port()
    subprocess.run([*pg_command("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True)
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=200" + ("" if fsync else " -c fsync=off")
    subprocess.run([*pg_command("pg_ctl"), "-D", str(data), "-o", opts, "-l", str(root / "log"), "-w", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        # Without fsync there is nothing worth a clean shutdown's checkpoint.
        subprocess.run([*pg_command("pg_ctl"), "-D", str(data), "-m", "fast" if fsync else "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def create_database(server_url: str, name: str | None = None) -> str:
    """A new, empty database on a server from throwaway_postgres; returns its URL."""
    import psycopg

    name = name or f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url.replace("postgresql+psycopg", "postgresql") + "/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"{server_url}/{name}"
