"""The participant's session through the real HTTP routes (Flask test client), on SQLite and
PostgreSQL: storage, validation, state machine, the responses_long view and its export."""
from __future__ import annotations

import json
import time
import uuid

import pandas as pd
import pytest
from sqlalchemy import func, select

import contracts
from study.db import db
from study.testing.driver import Participant
from study.models import Answer, ParticipantSession
from study.export import Selection, export_all
from study.responses import responses_query
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
        count, path = export_all(tmp_path / "out", Selection())["responses.csv"], tmp_path / "out" / "responses.csv"
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


def post_answer(bot: Participant, payload, content_type="application/json"):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return bot.request("POST", bot.data["answers_url"], body, {"Content-Type": content_type})


def good(bot: Participant, index: int, **changes):
    trial = bot.data["trials"][index]
    payload = {"client_id": uuid.uuid4().hex, "trial_index": index, "stimulus": trial["stimulus"],
               "response": 3, "rt_ms": 812.5, "presented_at": time.time() * 1000, "responded_at": time.time() * 1000 + 812.5}
    return {**payload, **changes}


def test_invalid_answers_get_a_readable_4xx_and_write_nothing(make_app):
    app = make_app()
    bot = participant(app, participant="link-1")
    bot.start()
    rate = next(t["i"] for t in bot.data["trials"] if t["task"] == "rate")
    other = bot.data["trials"][rate + 2]["stimulus"]
    cases = [
        (good(bot, rate, response=6), 422, "rating must be a whole number from 1 to 5"),
        (good(bot, 0, response=10), 422, "digit from 0 to 9"),
        (good(bot, 0, stimulus=other), 422, "is not the image of trial 0"),
        (good(bot, 0, stimulus="no-such-image"), 422, "is not the image of trial 0"),
        (good(bot, 0, trial_index=999), 422, "trial_index must be a whole number from 0 to"),
        (good(bot, 0, rt_ms=-5), 422, "rt_ms"),
        (good(bot, 0, extra=1), 422, "unknown field(s): extra"),
        ({"trial_index": 0}, 422, "missing field(s)"),
        ([1, 2], 400, "must be a JSON object"),
        (b"{not json", 400, "not valid JSON"),
    ]
    for payload, status, message in cases:
        reply = post_answer(bot, payload)
        assert reply.status == status and message in reply.json()["error"], (payload, reply.text)
    assert post_answer(bot, good(bot, 0), content_type="text/plain").status == 415
    assert answer_count(app) == 0

    first = good(bot, 0)
    assert post_answer(bot, first).status == 201
    replay = post_answer(bot, first)  # a retry of the same answer: acknowledged, not stored twice
    assert replay.status == 200 and replay.json()["duplicate"] is True
    conflict = post_answer(bot, good(bot, 0, response=4))  # a different answer for a filled slot
    assert conflict.status == 409 and "already has a different answer" in conflict.json()["error"]
    assert answer_count(app) == 1
    # A session token from nowhere, or another session's trial, is refused.
    assert bot.request("POST", "/s/forged.token/answers", json.dumps(first).encode(),
                       {"Content-Type": "application/json"}).status == 404


def test_completion_code_only_after_the_server_holds_every_answer(make_app):
    app = make_app()
    bot = participant(app, PROLIFIC_PID="pid-2")
    bot.start()
    for index in bot.pending()[:-1]:
        assert bot.answer(index).status == 201
    reply = bot.post_json(bot.data["complete_url"], {})
    assert reply.status == 409 and reply.json()["missing"] == [len(bot.data["trials"]) - 1]
    assert "completion-code" not in bot.get(f"{bot.token_path}/debrief").text
    assert bot.run() == "CODE-OK"
    page = bot.get(f"{bot.token_path}/debrief").text
    assert "https://app.prolific.com/submissions/complete?cc=CODE-OK" in page


def test_repeat_visit_resumes_the_same_session_and_preview_writes_nothing(make_app):
    app = make_app()
    preview = participant(app, assignmentId="ASSIGNMENT_ID_NOT_AVAILABLE", hitId="h1",
                          turkSubmitTo="https://workersandbox.mturk.com")
    page = preview.get("/study/test-study?" + "assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE&hitId=h1")
    assert page.status == 200 and "This is a preview" in page.text
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(ParticipantSession)) == 0

    params = {"workerId": "w1", "assignmentId": "a1", "hitId": "h1", "turkSubmitTo": "https://workersandbox.mturk.com"}
    first = participant(app, **params)
    first.start()
    first.answer(0), first.answer(1)
    again = participant(app, **params)  # same worker, new browser: same session, same order
    again.start()
    assert again.token_path == first.token_path
    assert again.data["trials"] == first.data["trials"] and again.pending() == first.pending()
    assert again.run() == "CODE-OK"
    page = again.get(f"{again.token_path}/debrief").text
    assert 'action="https://workersandbox.mturk.com/mturk/externalSubmit"' in page and 'value="a1"' in page
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(ParticipantSession)) == 1


def test_withdrawal_and_decline_end_the_session_and_flag_its_answers(make_app):
    app = make_app()
    bot = participant(app, participant="leaver")
    bot.start()
    bot.answer(0)
    bot.withdraw()
    refused = bot.answer(1)
    assert refused.status == 409 and "withdrawn" in refused.json()["error"] and refused.json()["next"].endswith("/end")
    with app.app_context():
        rows = [dict(r._mapping) for r in db.session.execute(responses_query())]
    assert len(rows) == 1 and rows[0]["withdrawn"] is True and rows[0]["session_state"] == "withdrawn"

    decliner = participant(app, participant="no-thanks")
    entry = decliner.get("/study/test-study?participant=no-thanks")
    fields = dict(__import__("re").findall(r'name="([^"]+)" value="([^"]*)"', entry.text))
    page = decliner.post_form("/study/test-study/consent", {**fields, "choice": "decline"})
    assert "You chose not to take part" in page.text and "CODE-NO" in page.text
    with app.app_context():
        states = dict(db.session.execute(select(ParticipantSession.participant_hash, ParticipantSession.state)).all())
    assert sorted(states.values()) == ["declined", "withdrawn"]


def test_forms_need_their_csrf_token_and_bad_panel_ids_are_refused(make_app):
    app = make_app()
    client = app.test_client()
    reply = client.post("/study/test-study/consent", data={"participant": "x", "choice": "agree", "csrf_token": "forged"})
    assert reply.status_code == 400 and b"did not come from this page" in reply.data
    assert client.get("/study/test-study?PROLIFIC_PID=<script>").status_code == 400
    assert client.get("/study/test-study?workerId=w&assignmentId=a&turkSubmitTo=javascript:alert(1)").status_code == 400
    assert client.get("/study/nope").status_code == 404
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(ParticipantSession)) == 0


def test_catch_failures_screen_out_when_configured(make_app):
    app = make_app(screen_out_after_catch_failures=1)
    bot = participant(app, participant="careless")
    bot.start()
    with app.app_context():
        plan = db.session.scalar(select(ParticipantSession.plan))
    catch = next(i for i, (_pk, task, _block, is_catch) in enumerate(plan) if is_catch and task == "label")
    for index in range(catch):
        bot.answer(index)
    with app.app_context():
        from study.models import Stimulus
        true = db.session.scalar(select(Stimulus.true_label).where(Stimulus.id == plan[catch][0]))
    reply = bot.answer(catch, (true + 1) % 10)
    assert reply.status == 201 and reply.json()["next"].endswith("/end")
    assert "CODE-OUT" in bot.get(reply.json()["next"]).text


def test_answers_on_the_fast_path_still_see_retries_conflicts_and_withdrawal(make_app):
    """After its first main answer a session is known to be in task, and its answers are stored
    by one conditional statement; that path must settle everything the full one does."""
    from study import answers

    app = make_app()
    bot = participant(app, participant="fast")
    bot.start()
    main = [t["i"] for t in bot.data["trials"] if t["block"] == "main" and t["task"] == "label"]
    for index in range(main[1] + 1):
        assert bot.answer(index).status == 201
    with app.app_context():
        assert answers.answer_store().in_task  # this database's store saw the session in task

    replay = bot.answer(main[1])  # same client id: acknowledged again, stored once
    assert replay.status == 200 and replay.json()["duplicate"] is True
    conflict = post_answer(bot, good(bot, main[1]))  # another client id for a filled slot
    assert conflict.status == 409 and "already has a different answer" in conflict.json()["error"]
    bot.withdraw()
    refused = bot.answer(main[1] + 1)
    assert refused.status == 409 and "withdrawn" in refused.json()["error"]
    assert answer_count(app) == main[1] + 1


def test_a_deleted_participant_leaves_nothing_cached_for_the_one_who_gets_its_row_id(make_app):
    """SQLite gives the next row the id of a deleted newest one: what a worker keeps of the deleted
    session (its plan, its being in task) must not serve the newcomer who gets that id."""
    from study.privacy import delete_participant

    app = make_app()
    gone = participant(app, PROLIFIC_PID="gone-1", STUDY_ID="s", SESSION_ID="a")
    gone.start()
    first_main = next(t["i"] for t in gone.data["trials"] if t["block"] == "main")
    for index in range(first_main + 1):
        assert gone.answer(index).status == 201  # plan cached, session known to be in task
    with app.app_context():
        gone_id = db.session.scalar(select(ParticipantSession.id))
        delete_participant("gone-1", "researcher")
        db.session.commit()
    newcomer = participant(app, PROLIFIC_PID="next-1", STUDY_ID="s", SESSION_ID="b")
    newcomer.start()
    with app.app_context():  # the premise: SQLite reuses the id, PostgreSQL's sequence does not
        assert (db.session.scalar(select(ParticipantSession.id)) == gone_id) == (db.engine.dialect.name == "sqlite")
    for index in range(first_main + 1):
        reply = newcomer.answer(index)
        assert reply.status == 201, reply.text  # checked against its own plan
    late = gone.answer(first_main + 1)  # the deleted participant's page, still open
    assert late.status == 404, late.text
    assert newcomer.run() == "CODE-OK"
    assert answer_count(app) == len(newcomer.data["trials"])
