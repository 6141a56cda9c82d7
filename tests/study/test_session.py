"""The participant's session through the real HTTP routes (Flask test client), on SQLite and
PostgreSQL: storage, validation, state machine, the responses_long view and its export."""
from __future__ import annotations

import json
import uuid

import pandas as pd
import pytest
from sqlalchemy import func, select

import contracts
from study.db import db
from study.driver import Participant
from study.models import Answer, ParticipantSession
from study.responses import export_csv, responses_query
from studyhelp import make_app, stimset  # noqa: F401  (fixtures)


def participant(app, **params) -> Participant:
    return Participant("http://test", "test-study", params=params, client=app.test_client(), seed=1)


def answer_count(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Answer))


def test_full_session_is_stored_once_and_the_view_follows_the_contract(make_app, tmp_path):
    app = make_app()
    bot = participant(app, PROLIFIC_PID="pid-1", STUDY_ID="s", SESSION_ID="x")
    code = bot.run()
    assert code == "CODE-OK"
    n_trials = len(bot.data["trials"])
    # 2 practice + 3 experimental + round(0.25 * 3) = 1 catch image, two questions each
    assert n_trials == (2 + 3 + 1) * 2
    with app.app_context():
        rows = [dict(r._mapping) for r in db.session.execute(responses_query())]
        contracts.validate_response_rows(rows)
        path, count = export_csv(tmp_path / "out")
        session = db.session.scalar(select(ParticipantSession))
        assert session.state == "completed" and session.completed_at >= session.in_task_at >= session.instructed_at
        assert session.seed is not None and session.assignment_list_id is not None
        assert "pid-1" not in json.dumps(rows)  # the raw panel id stays out of the analysis data
    assert count == len(rows) == n_trials
    assert [r["trial_index"] for r in rows] == list(range(n_trials))
    assert sum(r["is_practice"] for r in rows) == 4 and sum(r["is_catch"] for r in rows) == 2
    assert {r["session_state"] for r in rows} == {"completed"} and not any(r["withdrawn"] for r in rows)
    frame = contracts.validate_responses_frame(pd.read_csv(path))
    assert list(frame.columns) == contracts.response_columns() and len(frame) == n_trials
