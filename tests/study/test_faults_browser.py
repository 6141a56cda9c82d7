"""Every participant step rides out an outage in Chromium (study/static/retry.js, trial.js):
consent sent while the server is killed, instructions sent while the network is down, the last
answer and the completion sent while the server is killed again. The participant carries on
each time and ends with the completion code, every answer stored once."""
from __future__ import annotations

import os
import signal
import time

import pytest
from sqlalchemy import create_engine, text

from conftest import free_port
from studyhelp import stimset, study_server, write_config  # noqa: F401  (fixtures)
from pagestates import trial_count, wait_ready
from test_browser import answer_by_key

pytestmark = pytest.mark.browser


def kill(proc) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def outage_note(page) -> str:
    return page.wait_for_selector("#connection-status:not([hidden])", timeout=20000).inner_text()


def test_consent_instructions_and_completion_survive_outages(stimset, tmp_path, page):
    url, port = f"sqlite:///{tmp_path / 'study.sqlite'}", free_port()
    with study_server(url, write_config(tmp_path / "s.toml"), stimset, port=port) as (base, proc):
        page.goto(f"{base}/study/test-study?PROLIFIC_PID=outage-1&STUDY_ID=s&SESSION_ID=x")
        page.wait_for_selector("button[value=agree]:focus")
        kill(proc)
    page.keyboard.press("Enter")  # "I agree", with no server to take it
    assert "interrupted" in outage_note(page)
    time.sleep(1)
    with study_server(url, None, None, port=port) as (_base, proc):
        page.wait_for_selector("text=Instructions", timeout=20000)
        # The page came by fetch and document.write: its retry.js runs once the page has loaded.
        page.wait_for_function("() => document.readyState === 'complete'")
        page.context.set_offline(True)
        page.click("text=Start the practice images")  # with no network
        assert "interrupted" in outage_note(page)
        time.sleep(1)
        page.context.set_offline(False)
        wait_ready(page, 0)
        n = trial_count(page)
        for index in range(n - 1):
            answer_by_key(page, index)
        wait_ready(page, n - 1)
        kill(proc)
    answer_by_key(page, n - 1)  # the last answer and the completion meet a dead server
    time.sleep(2)
    with study_server(url, None, None, port=port):
        page.wait_for_selector("#completion-code", timeout=30000)
        assert page.locator("#completion-code").inner_text() == "CODE-OK"

    engine = create_engine(url)
    with engine.connect() as conn:
        states = conn.execute(text("SELECT state FROM participant_session")).scalars().all()
        answers = conn.execute(text("SELECT count(*), count(DISTINCT trial_index) FROM answer")).one()
    engine.dispose()
    assert states == ["completed"] and tuple(answers) == (n, n)
