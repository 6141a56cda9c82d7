"""Storage trouble under a running study (SQLite behind gunicorn): a write lock held past the busy
timeout and a full disk answer 503 with Retry-After (never 500), /healthz fails while writes
fail, and participants finish once the trouble passes; a full disk recovers after freeing a
little space (the WAL is checkpointed and cut back, study.db)."""
from __future__ import annotations

import contextlib
import http.client
import json
import os
import sqlite3
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from study.config import parse_config
from study.testing.driver import Participant
from studyhelp import BASE_CONFIG, app_with_study, stimset, study_server, write_config  # noqa: F401  (fixtures)
from test_dashboard import PASSWORD, login

BUSY_MS = 1000


def health(base: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(base + "/healthz", timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as reply:
        return reply.code, json.loads(reply.read())


def post_answer(base: str, bot: Participant, index: int) -> http.client.HTTPResponse:
    trial = bot.data["trials"][index]
    conn = http.client.HTTPConnection(base.removeprefix("http://"), timeout=30)
    conn.request("POST", bot.data["answers_url"], json.dumps({
        "client_id": f"probe-{index:04d}", "trial_index": index, "stimulus": trial["stimulus"], "response": 1,
        "rt_ms": 500}), {"Content-Type": "application/json"})
    return conn.getresponse()


def finish_in_background(bots: list[Participant]) -> tuple[threading.Thread, list]:
    codes: list = []
    thread = threading.Thread(target=lambda: codes.extend(bot.run() for bot in bots))
    thread.start()
    return thread, codes


def test_a_lock_held_past_the_busy_timeout_answers_503_and_participants_carry_on(stimset, tmp_path, monkeypatch):
    monkeypatch.setenv("STUDY_SQLITE_BUSY_TIMEOUT_MS", str(BUSY_MS))
    path = tmp_path / "study.sqlite"
    with study_server(f"sqlite:///{path}", write_config(tmp_path / "s.toml"), stimset) as (base, _proc):
        bots = [Participant(base, "test-study", {"participant": f"p{i}"}, seed=i, retry_for=60) for i in range(3)]
        for bot in bots:
            bot.start()
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another process's long write transaction
        try:
            reply = post_answer(base, bots[0], 0)
            assert reply.status == 503 and reply.getheader("Retry-After") == "2"
            assert "error" in json.loads(reply.read())
            status, body = health(base)
            assert status == 503 and body["writes"] == "database is locked"
            thread, codes = finish_in_background(bots[1:])
            time.sleep(3 * BUSY_MS / 1000)  # their answers meet the lock and are retried
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        thread.join(timeout=60)
        assert codes == ["CODE-OK", "CODE-OK"]
        assert health(base)[0] == 200


def test_the_dashboard_says_when_answers_cannot_be_saved(stimset, tmp_path):
    path = tmp_path / "study.sqlite"
    app = app_with_study(f"sqlite:///{path}", parse_config(BASE_CONFIG), stimset)
    for command in (["create-admin", "ada", "--password", PASSWORD], ["grant", "ada", "test-study", "viewer"]):
        assert app.test_cli_runner().invoke(args=command).exit_code == 0
    client = app.test_client()
    login(client)
    assert "The database takes answers now" in client.get("/admin/study/test-study").get_data(as_text=True)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        page = client.get("/admin/study/test-study").get_data(as_text=True)
        progress = client.get("/admin/study/test-study/progress.json").get_json()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert '<p id="write-health" class="error" role="alert"><strong>Answers cannot be saved right now</strong> (database is locked)' in page
    assert progress["write_problem"] == "database is locked"
    assert client.get("/admin/study/test-study/progress.json").get_json()["write_problem"] is None


@contextlib.contextmanager
def small_disk(where: Path, size: str):
    """A tmpfs of `size` at `where` (needs root: CI runs `make test` as root)."""
    where.mkdir()
    assert os.geteuid() == 0, "this test mounts a small tmpfs and needs root"
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path) -> Path:
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as out, contextlib.suppress(OSError):  # unbuffered: ENOSPC in the loop
        while True:
            out.write(b"\0" * 65536)
    return filler


def test_a_full_disk_answers_503_and_recovers_once_a_little_space_is_freed(stimset, tmp_path):
    with small_disk(tmp_path / "disk", "32m") as disk:
        with study_server(f"sqlite:///{disk / 'study.sqlite'}", write_config(tmp_path / "s.toml"), stimset) as (base, _proc):
            bots = [Participant(base, "test-study", {"participant": f"d{i}"}, seed=i, retry_for=60) for i in range(4)]
            for bot in bots:
                bot.start()
            filler = fill(disk)
            status, body = health(base)
            failed = post_answer(base, bots[0], 0)
            thread, codes = finish_in_background(bots)
            time.sleep(2)  # answers are refused (503) and retried meanwhile
            os.truncate(filler, max(0, filler.stat().st_size - 512 * 1024))  # free 512 KB, far less than the old 4 MB WAL
            thread.join(timeout=60)
            after = health(base)
    assert failed.status == 503 and failed.getheader("Retry-After") == "2"
    assert status == 503 and "full" in body["writes"]
    assert codes == ["CODE-OK"] * 4
    assert after[0] == 200
