"""Leases never over-pay (study.leases): a participant back after their lease ran out resumes if
their place is still free, is turned away with the panel's timed-out code if it was taken
(unless the study allows over-fill, up to its margin), and an open page's heartbeat keeps a slow
participant's place. The export carries the timed-out-and-returned history."""
from __future__ import annotations

import time

import pytest
from sqlalchemy import select, text

from study.db import db
from study.testing.driver import DriverError, Participant, StudyFullReply
from study.models import ParticipantSession
from studyhelp import BASE_CONFIG, make_app, stimset  # noqa: F401  (fixtures)

LEASE = {"lease_minutes": 1 / 60, "completion": {**BASE_CONFIG["completion"], "timed_out_code": "CODE-LATE"}}


def person(app, name: str) -> Participant:
    return Participant("http://test", "test-study", {"participant": name}, client=app.test_client(), seed=len(name))


def answer_some(bot: Participant, n: int) -> None:
    for index in bot.pending()[:n]:
        assert bot.answer(index).status == 201


def completed(app) -> int:
    with app.app_context():
        return db.session.scalar(text("SELECT count(*) FROM participant_session WHERE state = 'completed'"))


def test_a_returner_whose_place_was_taken_is_turned_away_with_the_timed_out_code(make_app):
    app = make_app(target_participants=2, **LEASE)
    late = person(app, "late")
    late.start()
    answer_some(late, 2)
    time.sleep(1.3)  # the lease (1 s) runs out
    assert person(app, "first").run() == "CODE-OK"  # arriving, it expires the late one's lease
    second = person(app, "second")
    second.start()

    reply = late.answer(late.pending()[0])
    assert reply.status == 409 and reply.json()["next"].endswith("/end")
    with pytest.raises(DriverError, match="complete: HTTP 409"):
        late.complete()
    page = late.get(late.token_path)
    assert "Your time for this study ran out" in page.text and 'id="completion-code">CODE-LATE<' in page.text
    assert late.get(f"{late.token_path}/task").text == page.text  # the task page sends them there too
    beat = late.post_json(f"{late.token_path}/heartbeat", {})
    assert beat.status == 409 and beat.json()["next"].endswith("/end")

    assert second.run() == "CODE-OK"
    assert completed(app) == 2  # the target, never more


def test_a_returner_whose_place_is_free_resumes_and_the_export_shows_it(make_app):
    app = make_app(target_participants=3, **LEASE)
    back = person(app, "back")
    back.start()
    answer_some(back, 2)
    time.sleep(1.3)
    person(app, "newcomer").start()  # expires the lease; two places are still free
    assert back.run() == "CODE-OK"
    with app.app_context():
        session = db.session.scalar(select(ParticipantSession).where(ParticipantSession.public_id == back.data["session"]))
        assert session.state == "completed" and session.timed_out_at < session.returned_at
        rows = db.session.execute(text("SELECT trial_index, after_timeout, session_timed_out_at, session_returned_at "
                                       "FROM responses_long WHERE session_id = :s ORDER BY trial_index"),
                                  {"s": back.data["session"]}).all()
    assert [bool(r.after_timeout) for r in rows] == [False, False] + [True] * (len(rows) - 2)
    assert all(r.session_timed_out_at and r.session_returned_at for r in rows)


def test_over_fill_is_allowed_only_up_to_the_stated_margin(make_app):
    app = make_app(target_participants=1, overfill_places=1, **LEASE)
    returners = [person(app, f"r{i}") for i in range(2)]
    for bot in returners:
        bot.start()
        answer_some(bot, 1)
        time.sleep(1.3)
    assert person(app, "fresh").run() == "CODE-OK"  # both returners have timed out: the place is free
    assert returners[0].run() == "CODE-OK"  # the margin's one extra place
    with pytest.raises(DriverError, match="answer .*: HTTP 409"):
        returners[1].run()
    assert completed(app) == 2


def test_an_open_pages_heartbeat_keeps_a_slow_participants_place(make_app):
    app = make_app(target_participants=1, **LEASE)
    slow = person(app, "slow")
    slow.start()
    for _ in range(5):  # 2.5 s without an answer, twice the lease
        beat = slow.post_json(f"{slow.token_path}/heartbeat", {})
        assert beat.status == 200 and 1 <= beat.json()["every_s"] <= 120
        time.sleep(0.5)
    with pytest.raises(StudyFullReply):
        person(app, "hopeful").start()
    assert slow.run() == "CODE-OK"
