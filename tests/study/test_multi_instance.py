"""Two app servers behind nginx, one PostgreSQL: bots take the study through nginx while one
instance is killed, and the database ends up as if one server had served them all."""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Iterator

import psycopg
import pytest

from conftest import REPO, VENV_BIN, free_port, stop_group, wait_for_http
from studyhelp import app_with_study, stimset  # noqa: F401  (fixture)

SECRET = "test-secret"
BOTS = 40
DEPLOY = REPO / "deploy"


def instance(database_url: str, port: int, log: Path) -> subprocess.Popen:
    """One gunicorn instance with the deployment config, in its own process group (to SIGKILL it whole)."""
    env = {**os.environ, "STUDY_DATABASE_URL": database_url, "STUDY_SECRET_KEY": SECRET, "STUDY_BIND": f"127.0.0.1:{port}",
           "STUDY_WORKERS": "2", "STUDY_TRUSTED_PROXIES": "1"}
    return subprocess.Popen([str(VENV_BIN / "gunicorn"), "-c", str(DEPLOY / "gunicorn.conf.py"), "study:create_app()"],
                            env=env, stdout=subprocess.DEVNULL, stderr=open(log, "a"), start_new_session=True)


def nginx_conf(root: Path, port: int, upstreams: list[int]) -> Path:
    """The deployed site's upstream and `location /` blocks, on plain HTTP, pointing at the instances."""
    site = (DEPLOY / "nginx-study.conf").read_text()
    upstream = re.search(r"upstream study_app \{.*?\n\}", site, re.S).group(0)
    upstream = re.sub(r"\n\s*server 127\.0\.0\.1:8000;[^\n]*", "".join(f"\n    server 127.0.0.1:{p};" for p in upstreams), upstream)
    location = re.search(r"\n    location / \{\n.*?\n    \}", site, re.S).group(0)  # the HTTPS server's
    temp = " ".join(f"{kind}_temp_path {root / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = root / "nginx.conf"
    conf.write_text(f"daemon off;\npid {root}/nginx.pid;\nerror_log {root}/error.log;\nevents {{}}\n"
                    f"http {{\n  access_log off;\n  {temp}\n{upstream}\n  server {{\n    listen 127.0.0.1:{port};{location}\n  }}\n}}\n")
    return conf


@contextlib.contextmanager
def stopping(proc: subprocess.Popen) -> Iterator[subprocess.Popen]:
    try:
        yield proc
    finally:
        stop_group(proc, timeout=15)


def answer_count(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT count(*) FROM answer").fetchone()[0]


@pytest.mark.postgres
def test_two_instances_behind_nginx_survive_losing_one(postgres_url, stimset, tmp_path):  # noqa: F811
    from study.config import parse_config
    from study.security import session_mark
    from study.simulate import AnswerModel, simulate
    from studyhelp import BASE_CONFIG

    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    config = parse_config(BASE_CONFIG)
    app = app_with_study(postgres_url, config, stimset)
    with app.app_context():
        from study.db import db

        db.engine.dispose()  # the servers must not share this process's connections
    dsn = postgres_url.replace("postgresql+psycopg", "postgresql")
    ports, front = [free_port(), free_port()], free_port()
    log = tmp_path / "gunicorn.log"
    with contextlib.ExitStack() as stack:
        servers = [stack.enter_context(stopping(instance(postgres_url, p, log))) for p in ports]
        for p, proc in zip(ports, servers):
            wait_for_http(f"http://127.0.0.1:{p}/healthz", proc=proc)
        proxy = stack.enter_context(stopping(subprocess.Popen(
            [nginx, "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c", str(nginx_conf(tmp_path, front, ports))],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)))
        base = f"http://127.0.0.1:{front}"
        wait_for_http(base + "/healthz", proc=proxy)

        results: list = []
        with app.app_context():
            mark = session_mark(config.id, "bot")
        run = threading.Thread(target=lambda: results.extend(
            simulate(base, config.id, BOTS, mark, AnswerModel(), concurrency=8, seed=5, retry_for=60)))
        run.start()
        # Kill one instance (master and workers, no goodbye) once about a third of the answers are in.
        deadline = time.monotonic() + 60
        while answer_count(dsn) < BOTS * 4 and run.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        killed_at = answer_count(dsn)
        os.killpg(servers[0].pid, signal.SIGKILL)
        run.join(timeout=120)
        assert not run.is_alive() and len(results) == BOTS

        # The bots retry 5xx and lost connections (nginx answers 502 for requests the dying instance
        # held), so every one ends by its own choice: none is left stranded or in error.
        stranded = [(r.outcome, r.error) for r in results if r.outcome in ("stranded", "error")]
        assert not stranded, stranded
        print(f"\nkilled one instance after {killed_at} answers; outcomes {sorted(Counter(r.outcome for r in results).items())}")

    with psycopg.connect(dsn) as conn:
        stored = conn.execute("SELECT s.public_id, a.trial_index, coalesce(a.response_label, a.response_rating) "
                              "FROM answer a JOIN participant_session s ON s.id = a.session_id WHERE s.is_bot").fetchall()
        states = Counter(state for (state,) in conn.execute("SELECT state FROM participant_session WHERE is_bot"))
        per_list = [n for (n,) in conn.execute(
            "SELECT count(s.id) FROM assignment_list l LEFT JOIN participant_session s "
            "ON s.assignment_list_id = l.id AND s.is_bot AND s.state = 'completed' GROUP BY l.id")]
    acknowledged = {(r.session_id, i, v) for r in results if r.session_id for i, v in r.answers.items()}
    assert acknowledged <= set(stored), "an acknowledged answer is missing or changed"
    assert len(stored) == len({(s, i) for s, i, _ in stored}), "an answer is stored twice"
    assert states == {"completed": BOTS}, f"participants stranded: {states}"
    assert max(per_list) - min(per_list) <= 1, f"assignment spread {per_list}"
    print(f"{len(stored)} answers stored, {len(acknowledged)} acknowledged to the bots, sessions per list {per_list}")
