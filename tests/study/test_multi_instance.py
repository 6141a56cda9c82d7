"""Two app servers behind nginx, one PostgreSQL. Per-address limits and the login back-off count
arrivals on both instances together; what a worker caches about a session or a study gives way
when the other instance changes it; and bots take the study through nginx while one instance is
killed, the database ending up as if one server had served them all.

One pair of instances serves the whole module (the kill comes last). Each runs one gunicorn
worker, so a test knows which process holds a cache; requests that stand for one client arriving
through nginx at either instance go straight to that instance's port with the X-Forwarded-For
nginx would set (the instances trust it from 127.0.0.1, as deployed)."""
from __future__ import annotations

import contextlib
import html
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator

import psycopg
import pytest

from conftest import REPO, VENV_BIN, free_port, stop_group, wait_for_http
from study.auth import create_admin
from study.config import parse_config
from study.db import db
from study.testing.driver import HIDDEN_INPUT, Participant, Reply
from study.lifecycle import close_study, find_study
from study.security import public_id_from_token, session_mark
from study.studies import create_study
from studyhelp import BASE_CONFIG, app_with_study, stimset  # noqa: F401  (fixture)

SECRET = "test-secret"
BOTS = 40
DEPLOY = REPO / "deploy"
PASSWORD = "correct horse battery"
# `tight`: two new sessions per address and hour, three per minute in all; `small`: one place.
TIGHT = {**BASE_CONFIG, "id": "tight", "admission": {"anonymous_link": True, "new_sessions_per_address_per_hour": 2,
                                                     "new_sessions_per_minute": 3}}
SMALL = {**BASE_CONFIG, "id": "small", "target_participants": 1}


def instance(database_url: str, port: int, log: Path) -> subprocess.Popen:
    """One gunicorn instance with the deployment config, in its own process group (to SIGKILL it whole)."""
    env = {**os.environ, "STUDY_DATABASE_URL": database_url, "STUDY_SECRET_KEY": SECRET, "STUDY_BIND": f"127.0.0.1:{port}",
           "STUDY_WORKERS": "1", "STUDY_TRUSTED_PROXIES": "1"}
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


@dataclass
class Instances:
    urls: list[str]  # each instance's own address
    servers: list[subprocess.Popen]
    front: str  # nginx
    dsn: str
    app: Any  # an app on the same database, for what the command line would do (close a study)
    bot_mark: str


@pytest.fixture(scope="module")
def instances(postgres_server, stimset, tmp_path_factory) -> Iterator[Instances]:  # noqa: F811
    tmp = tmp_path_factory.mktemp("instances")
    dsn = postgres_server.replace("postgresql+psycopg", "postgresql")
    name = f"multi_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dsn + "/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = f"{postgres_server}/{name}"
    app = app_with_study(url, parse_config(BASE_CONFIG), stimset)
    with app.app_context():
        for config in (TIGHT, SMALL):
            create_study(parse_config(config), stimset)
        create_admin("ada", PASSWORD)
        db.session.commit()
        mark = session_mark(BASE_CONFIG["id"], "bot")
        db.engine.dispose()  # the servers must not share this process's connections
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    ports, front = [free_port(), free_port()], free_port()
    log = tmp / "gunicorn.log"
    with contextlib.ExitStack() as stack:
        servers = [stack.enter_context(stopping(instance(url, p, log))) for p in ports]
        for p, proc in zip(ports, servers):
            wait_for_http(f"http://127.0.0.1:{p}/healthz", proc=proc)
        proxy = stack.enter_context(stopping(subprocess.Popen(
            [nginx, "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(nginx_conf(tmp, front, ports))],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)))
        wait_for_http(f"http://127.0.0.1:{front}/healthz", proc=proxy)
        yield Instances([f"http://127.0.0.1:{p}" for p in ports], servers, f"http://127.0.0.1:{front}", f"{dsn}/{name}", app, mark)


@dataclass
class Client(Participant):
    """A participant (study.testing.driver) at one address, as nginx reports it to whichever instance it picks."""
    address: str = "198.51.100.1"

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> Reply:
        return super().request(method, path, body, {**(headers or {}), "X-Forwarded-For": self.address})


def via(client: Client, base_url: str) -> Client:
    """The same participant (session, trials, answers so far) talking to another instance."""
    return replace(client, base_url=base_url)


def hidden_fields(page: Reply) -> dict[str, str]:
    return {k: html.unescape(v) for k, v in HIDDEN_INPUT.findall(page.text)}


def arrive(base_url: str, slug: str, address: str) -> int:
    """A new participant by the study's plain link: the consent's status (200 once followed to the instructions)."""
    client = Client(base_url, slug, retry_for=10, address=address)
    entry = client.get(f"/study/{slug}")
    assert entry.status == 200, entry.message
    return client.post_form(f"/study/{slug}/consent", {**hidden_fields(entry), "choice": "agree"}).status


def login_form(base_url: str, address: str) -> tuple[str, str]:
    """The login page's cookie and CSRF token (the instances share the key that signs both)."""
    page = Client(base_url, "", retry_for=10, address=address).request("GET", "/admin/login")
    return page.headers["set-cookie"].split(";")[0], re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


def login(base_url: str, form: tuple[str, str], address: str, password: str) -> Reply:
    """One login attempt as `ada` with that cookie and token."""
    cookie, token = form
    return Client(base_url, "", retry_for=10, address=address).request(
        "POST", "/admin/login", f"csrf_token={token}&username=ada&password={password}".encode(),
        {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie})


@pytest.mark.postgres
def test_admission_limits_and_the_login_back_off_count_arrivals_on_both_instances(instances):
    a, b = instances.urls
    # Two new sessions per address and hour: the third from the same address is refused, on either instance.
    assert [arrive(url, "tight", "203.0.113.7") for url in (a, b, a, b)] == [200, 200, 429, 429]
    # Three new sessions a minute in all (two so far): one more from a fresh address, then none.
    assert [arrive(url, "tight", address) for url, address in ((b, "203.0.113.8"), (a, "203.0.113.9"))] == [200, 429]
    with psycopg.connect(instances.dsn) as conn:
        outcomes = sorted(o for (o,) in conn.execute(
            "SELECT outcome FROM arrival JOIN study ON study.id = arrival.study_id WHERE slug = 'tight'"))
    assert outcomes == ["admitted"] * 3 + ["per_address", "per_minute"]  # a repeat within 10 s is one row

    # Three free failures per (name, address), counted over both instances; then a back-off on both.
    form = login_form(a, "192.0.2.5")
    tries = [login(url, form, "192.0.2.5", "wrong" * 3) for url in (a, b, a, b, a)]
    assert [reply.status for reply in tries] == [401, 401, 401, 429, 429]
    assert "Too many failed logins" in tries[3].text
    # Sent all at once, half to each instance (four threads each), they get no more free tries.
    form = login_form(b, "192.0.2.6")
    with ThreadPoolExecutor(8) as pool:
        statuses = sorted(pool.map(lambda url: login(url, form, "192.0.2.6", "wrong" * 3).status, (a, b) * 4))
    assert statuses == [401] * 3 + [429] * 5


@pytest.mark.postgres
def test_cached_sessions_and_studies_give_way_when_the_other_instance_changes_them(instances):
    a, b = instances.urls

    def in_task_on_a(slug: str, address: str) -> Client:
        """Practice and the first main trial answered on instance a: its worker now holds the study's
        facts, the session's plan and the session as in task (answers.py), so the next answer there
        takes the one-statement path."""
        client = Client(a, slug, retry_for=10, address=address)
        client.start()
        for trial in client.data["trials"]:
            assert client.answer(trial["i"]).status == 201
            if trial["block"] == "main":
                return client
        raise AssertionError("the plan has no main trial")

    def public_id(client: Client) -> str:
        with instances.app.app_context():
            return public_id_from_token(client.token_path.split("/")[2])

    def state(client: Client) -> str:
        with psycopg.connect(instances.dsn) as conn:
            return conn.execute("SELECT state FROM participant_session WHERE public_id = %s", (public_id(client),)).fetchone()[0]

    # Withdrawn on b: a takes no more answers for the session.
    leaving = in_task_on_a("test-study", "203.0.113.20")
    via(leaving, b).withdraw()
    refused = leaving.answer(leaving.pending()[0])
    assert refused.status == 409 and "withdrawn" in refused.json()["error"], refused.text
    assert state(leaving) == "withdrawn"

    # The lease ran out and b gave the study's one place to a newcomer: a tells the first so.
    late = in_task_on_a("small", "203.0.113.21")
    with psycopg.connect(instances.dsn) as conn:  # the lease's end is past (as after lease_minutes of silence)
        conn.execute("UPDATE participant_session SET lease_expires_at = lease_expires_at - interval '1 day' "
                     "WHERE public_id = %s", (public_id(late),))
    assert arrive(b, "small", "203.0.113.22") == 200
    assert state(late) == "timed_out"
    lost = late.answer(late.pending()[0])
    assert lost.status == 409 and "place went to another participant" in lost.json()["error"], lost.text

    # Closed from the command line: a, which has served this study, admits no one new.
    with instances.app.app_context():
        close_study(find_study("small"), "cli")
        db.session.commit()
        db.engine.dispose()
    closed = Client(a, "small", retry_for=10, address="203.0.113.23").get("/study/small")
    assert closed.status == 410 and "closed" in closed.message


@pytest.mark.postgres
def test_two_instances_behind_nginx_survive_losing_one(instances):
    from study.simulate import AnswerModel, simulate

    dsn, slug = instances.dsn, BASE_CONFIG["id"]
    results: list = []
    run = threading.Thread(target=lambda: results.extend(
        simulate(instances.front, slug, BOTS, instances.bot_mark, AnswerModel(), concurrency=8, seed=5, retry_for=60)))
    run.start()
    # Kill one instance (master and workers, no goodbye) once about a third of the answers are in.
    before = answer_count(dsn)  # the earlier tests' few
    deadline = time.monotonic() + 60
    while answer_count(dsn) - before < BOTS * 4 and run.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    killed_at = answer_count(dsn) - before
    os.killpg(instances.servers[0].pid, signal.SIGKILL)
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
            "SELECT count(s.id) FROM assignment_list l JOIN study ON study.id = l.study_id LEFT JOIN participant_session s "
            "ON s.assignment_list_id = l.id AND s.is_bot AND s.state = 'completed' WHERE study.slug = %s GROUP BY l.id", (slug,))]
    acknowledged = {(r.session_id, i, v) for r in results if r.session_id for i, v in r.answers.items()}
    assert acknowledged <= set(stored), "an acknowledged answer is missing or changed"
    assert len(stored) == len({(s, i) for s, i, _ in stored}), "an answer is stored twice"
    assert states == {"completed": BOTS}, f"participants stranded: {states}"
    assert max(per_list) - min(per_list) <= 1, f"assignment spread {per_list}"
    print(f"{len(stored)} answers stored, {len(acknowledged)} acknowledged to the bots, sessions per list {per_list}")
