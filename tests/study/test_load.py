"""Many participants at once against gunicorn, on SQLite and PostgreSQL: balanced assignment
under a rush, stimuli answered equally often at the target despite dropouts, and no
acknowledged answer lost or doubled when the whole server is SIGKILLed mid-session."""
from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import create_engine, text

from conftest import free_port
from study.testing.driver import Participant, StudyFullReply
from studyhelp import stimset, study_server, write_config  # noqa: F401  (fixtures)

RUSH = 64
LEASE_S = 3


def spread(counts) -> int:
    return max(counts) - min(counts)


def test_a_rush_of_arrivals_is_balanced_and_the_target_is_met_evenly(database_url, stimset, tmp_path):
    config = write_config(tmp_path / "load.toml", target_participants=RUSH, practice_trials=0, catch_rate=0,
                          lease_minutes=LEASE_S / 60)
    engine = create_engine(database_url)
    with study_server(database_url, config, stimset) as (base, _proc):
        bots = [Participant(base, "test-study", {"participant": f"p{i}"}, seed=i) for i in range(RUSH)]
        gate = threading.Barrier(RUSH)

        def arrive(bot: Participant) -> None:
            gate.wait()
            bot.start()

        with ThreadPoolExecutor(RUSH) as pool:
            list(pool.map(arrive, bots))
        with engine.connect() as conn:
            per_list = conn.execute(text("SELECT assignment_list_id, count(*) FROM participant_session "
                                         "GROUP BY assignment_list_id")).all()
        assert len(per_list) == 6 and spread([n for _, n in per_list]) <= 1, per_list

        # Dropouts: 8 withdraw, 8 vanish (their leases run out), the rest finish.
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda b: b.withdraw(), bots[:8]))
            list(pool.map(lambda b: b.run(), bots[16:]))
        time.sleep(LEASE_S + 0.5)
        newcomers = 0
        while True:  # latecomers take the freed places until the study is full
            try:
                Participant(base, "test-study", {"participant": f"late{newcomers}"}, seed=1000 + newcomers).run()
            except StudyFullReply:
                break
            newcomers += 1
        assert newcomers == 16

    with engine.connect() as conn:
        states = Counter(dict(conn.execute(text("SELECT state, count(*) FROM participant_session GROUP BY state")).all()))
        completed_per_list = conn.execute(text(
            "SELECT assignment_list_id, count(*) FROM participant_session WHERE state = 'completed' "
            "GROUP BY assignment_list_id")).all()
        per_stimulus = conn.execute(text(
            "SELECT stimulus_id, task, count(*) FROM responses_long WHERE session_state = 'completed' "
            "GROUP BY stimulus_id, task")).all()
    engine.dispose()
    assert states == {"completed": RUSH, "withdrawn": 8, "timed_out": 8}
    assert len(completed_per_list) == 6 and spread([n for _, n in completed_per_list]) <= 1
    assert len(per_stimulus) == 6 * 3 * 2  # every stimulus of every list, both questions
    assert spread([n for *_, n in per_stimulus]) <= 1, per_stimulus


def test_sigkill_of_the_whole_server_loses_no_acknowledged_answer(database_url, stimset, tmp_path):
    config = write_config(tmp_path / "fault.toml", target_participants=100, practice_trials=2)
    port = free_port()
    bots = [Participant(f"http://127.0.0.1:{port}", "test-study", {"participant": f"f{i}"}, seed=i) for i in range(8)]
    killed, codes = threading.Event(), []

    def answer_slowly(bot: Participant) -> None:
        for index in bot.pending():
            bot.answer(index)
            time.sleep(0.05)
        codes.append(bot.complete())

    with study_server(database_url, config, stimset, port=port) as (_base, proc):
        for bot in bots:
            bot.start()
        pool = ThreadPoolExecutor(len(bots))
        futures = [pool.submit(answer_slowly, bot) for bot in bots]
        time.sleep(0.4)
        os.killpg(proc.pid, signal.SIGKILL)  # master and workers at once, mid-answer
        proc.wait()
        killed.set()
    acked_before_kill = sum(len(b.acked) for b in bots)
    time.sleep(0.5)
    with study_server(database_url, None, None, port=port):
        for future in futures:
            future.result(timeout=60)
    pool.shutdown()

    assert killed.is_set() and 0 < acked_before_kill < sum(len(b.data["trials"]) for b in bots)
    assert codes == ["CODE-OK"] * len(bots)  # every driver completed
    engine = create_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT ps.public_id, a.trial_index, a.client_id FROM answer a "
                                 "JOIN participant_session ps ON ps.id = a.session_id")).all()
    engine.dispose()
    stored = Counter((session, index) for session, index, _ in rows)
    assert set(stored.values()) == {1}  # exactly once
    client_ids = {(session, index): client for session, index, client in rows}
    for bot in bots:
        session = bot.data["session"]
        assert {i for (s, i) in stored if s == session} == set(range(len(bot.data["trials"])))
        for index, client_id in bot.acked.items():  # every acknowledgement is backed by its row
            assert client_ids[(session, index)] == client_id
