"""The bots behind `flask simulate` ride out a server outage: gunicorn is SIGKILLed mid-run and
comes back ~10 s later on the same port, and every bot still finishes its own session, with each
acknowledged answer stored exactly once."""
from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter

from sqlalchemy import create_engine, text

from conftest import free_port
from study import create_app
from study.testing.driver import Participant, ServerUnavailable
from study.security import session_mark
from study.simulate import simulate, summary
from studyhelp import stimset, study_server, write_config  # noqa: F401  (fixtures)

BOTS = 12
OUTAGE_S = 10


def completed_sessions(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM participant_session WHERE state = 'completed'")).scalar()


def test_bots_finish_through_a_server_kill_and_restart(stimset, tmp_path):
    url = f"sqlite:///{tmp_path / 'study.sqlite'}"
    config = write_config(tmp_path / "bots.toml", target_participants=4)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with create_app({"SECRET_KEY": "test-secret"}).app_context():
        mark = session_mark("test-study", "bot")
    engine = create_engine(url)
    results: list = []
    with study_server(url, config, stimset, port=port) as (_base, proc):
        run = threading.Thread(target=lambda: results.extend(
            simulate(base, "test-study", BOTS, mark, concurrency=4, retry_for=60)))
        run.start()
        deadline = time.monotonic() + 30
        while completed_sessions(engine) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)  # master and workers at once, mid-run
        proc.wait()
    done_at_kill = completed_sessions(engine)
    time.sleep(OUTAGE_S)
    with study_server(url, None, None, port=port):
        run.join(timeout=90)
    assert not run.is_alive()

    assert 0 < done_at_kill < BOTS
    assert [r.outcome for r in results] == ["completed"] * BOTS, [r.error for r in results if r.error]
    assert summary(results, 1.0).startswith(f"{BOTS} bots: {BOTS} finished, 0 stranded")
    with engine.connect() as conn:
        states = dict(conn.execute(text("SELECT state, count(*) FROM participant_session GROUP BY state")).all())
        rows = conn.execute(text("SELECT ps.public_id, a.trial_index, a.response_label, a.response_rating FROM answer a "
                                 "JOIN participant_session ps ON ps.id = a.session_id")).all()
    engine.dispose()
    assert states == {"completed": BOTS}  # no session left in task, none doubled
    stored = Counter((session, index) for session, index, *_ in rows)
    assert set(stored.values()) == {1}
    values = {(s, i): label if label is not None else rating for s, i, label, rating in rows}
    for result in results:  # every answer a bot saw acknowledged is the one stored
        assert all(values[(result.session_id, i)] == v for i, v in result.answers.items())


def test_a_bot_gives_up_in_one_line_after_its_deadline():
    bot = Participant(f"http://127.0.0.1:{free_port()}", "test-study", {"participant": "p"}, retry_for=1.0)
    start = time.monotonic()
    try:
        bot.start()
    except ServerUnavailable as exc:
        message = str(exc)
    assert 1.0 <= time.monotonic() - start < 5
    assert message.startswith("GET /study/test-study: no usable reply for 1 s (last: ConnectionRefusedError")
    assert "\n" not in message
