"""The demo's serving path (scripts/demo.py: nginx in front of gunicorn) against stalled clients:
connections that send a POST's headers and one byte of its body, then nothing (a phone losing
signal mid-POST), must not hold up new participants."""
from __future__ import annotations

import importlib.util
import os
import socket
import time

from conftest import REPO, free_port
from study.db import db
from study.config import load_config
from study.testing.driver import Participant
from studyhelp import app_with_study, stimset, write_config  # noqa: F401  (fixtures)

STALLED = 12  # more than the demo's gunicorn has workers × threads, several times over


def load_demo():
    spec = importlib.util.spec_from_file_location("demo", REPO / "scripts" / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    return demo


def stall(port: int, path: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 "Content-Length: 400\r\n\r\n{".encode())
    return sock


def test_stalled_clients_do_not_hold_up_new_participants(stimset, tmp_path):
    demo = load_demo()
    assert demo.find_nginx(), "nginx is missing: run bash scripts/ensure-system-deps.sh"
    url = f"sqlite:///{tmp_path / 'study.sqlite'}"
    with app_with_study(url, load_config(write_config(tmp_path / "s.toml", target_participants=50)), stimset).app_context():
        db.engine.dispose()
    env = {**os.environ, "STUDY_DATABASE_URL": url, "STUDY_SECRET_KEY": "test-secret"}
    port = free_port()
    procs = demo.start_server(env, tmp_path, port)
    stalled = []
    try:
        first = Participant(f"http://127.0.0.1:{port}", "test-study", {"participant": "before"}, seed=1, retry_for=5)
        first.start()
        stalled = [stall(port, first.data["answers_url"]) for _ in range(STALLED)]
        time.sleep(0.5)  # the stalled requests are all in
        slowest = 0.0
        for i in range(4):  # new participants arrive and answer while the stalled clients hang on
            bot = Participant(f"http://127.0.0.1:{port}", "test-study", {"participant": f"new{i}"}, seed=i, retry_for=5)
            start = time.monotonic()
            code = bot.run()
            slowest = max(slowest, time.monotonic() - start)
            assert code == "CODE-OK"
        assert slowest < 5, f"a whole session took {slowest:.1f} s with {STALLED} stalled clients"
    finally:
        for sock in stalled:
            sock.close()
        demo.stop_server(procs)
