"""A study's life on SQLite and PostgreSQL: panels, completion codes per outcome, open/close
under the frozen hash, the "study full" page, and online backups."""
from __future__ import annotations

import sqlite3
import subprocess
import uuid

from sqlalchemy import create_engine, func, select, text, update

from study.db import db
from study.testing.driver import Participant
from study.models import Answer, AuditEvent, ParticipantSession, Stimulus
from study.security import session_mark
from studyhelp import make_app, stimset  # noqa: F401  (fixtures)


def bot(app, **params) -> Participant:
    return Participant("http://test", "test-study", params=params, client=app.test_client(), seed=1)


def test_panels_codes_full_page_and_open_close(make_app):
    app = make_app(panels=["prolific"], target_participants=1,
                   completion={"code": "CODE-OK", "declined_code": "CODE-NO", "withdrawn_code": "CODE-LEFT"})
    client = app.test_client()
    refused = client.get("/study/test-study?participant=someone")
    assert refused.status_code == 403 and b"only through Prolific" in refused.data
    with app.app_context():
        marked = session_mark("test-study", "bot")
    assert bot(app, participant="sim-1", mark=marked).run() == "CODE-OK"  # researcher's bots may use any panel

    leaver = bot(app, PROLIFIC_PID="leaver")
    leaver.start()
    leaver.withdraw()
    page = leaver.get(f"{leaver.token_path}/end").text
    assert "CODE-LEFT" in page and "https://app.prolific.com/submissions/complete?cc=CODE-LEFT" in page

    assert bot(app, PROLIFIC_PID="first").run() == "CODE-OK"  # the one real place
    full = client.get("/study/test-study?PROLIFIC_PID=second").get_data(as_text=True)  # told before consenting
    assert "The study is full" in full and "Return submission" in full and "Consent" not in full

    runner = app.test_cli_runner()
    assert runner.invoke(args=["close", "test-study"]).exit_code == 0
    assert client.get("/study/test-study?PROLIFIC_PID=third").status_code == 410
    assert "no study 'nope'" in runner.invoke(args=["close", "nope"]).output
    reopened = runner.invoke(args=["open", "test-study"])
    assert reopened.exit_code == 0 and "is open" in reopened.output
    with app.app_context():
        db.session.execute(update(Stimulus).where(Stimulus.key == "stim-0000").values(image=b"tampered"))
        db.session.commit()
    runner.invoke(args=["close", "test-study"])
    tampered = runner.invoke(args=["open", "test-study"])
    assert tampered.exit_code == 1 and "changed since it was opened" in tampered.output and "Traceback" not in tampered.output
    with app.app_context():
        actions = db.session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
    assert actions == ["open", "close", "open", "close"]


def test_online_backup_restores_every_answer(make_app, database_url, request, tmp_path):
    app = make_app()
    bot(app, participant="p1").run()
    with app.app_context():
        answers = db.session.scalar(select(func.count()).select_from(Answer))
    out = tmp_path / "backup.bin"
    result = app.test_cli_runner().invoke(args=["backup", "--out", str(out)])
    assert result.exit_code == 0 and "backup written" in result.output, result.output
    assert "exists" in app.test_cli_runner().invoke(args=["backup", "--out", str(out)]).output
    if database_url.startswith("sqlite"):
        with sqlite3.connect(out) as conn:
            restored = conn.execute("SELECT count(*) FROM responses_long").fetchone()[0]
    else:
        postgres_server = request.getfixturevalue("postgres_server")
        name = f"r_{uuid.uuid4().hex[:10]}"
        engine = create_engine(f"{postgres_server}/postgres", isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
        engine.dispose()
        plain = f"{postgres_server}/{name}".replace("postgresql+psycopg", "postgresql")
        subprocess.run(["pg_restore", "--no-owner", "-d", plain, str(out)], check=True, capture_output=True)
        engine = create_engine(f"{postgres_server}/{name}")
        with engine.connect() as conn:
            restored = conn.execute(text("SELECT count(*) FROM responses_long")).scalar()
        engine.dispose()
    assert restored == answers > 0


def test_a_finished_session_that_failed_checks_gets_its_own_code(make_app):
    app = make_app(completion={"code": "CODE-OK", "declined_code": "CODE-NO", "failed_checks_after": 1,
                               "failed_checks_code": "CODE-CHECK"})
    careless = bot(app, PROLIFIC_PID="careless")
    careless.start()
    with app.app_context():
        plan = db.session.scalar(select(ParticipantSession.plan).where(ParticipantSession.public_id == careless.data["session"]))
        truth = dict(db.session.execute(select(Stimulus.id, Stimulus.true_label)).all())
    wrong = {i: (truth[pk] + 1) % 10 for i, (pk, task, _block, is_catch) in enumerate(plan) if is_catch and task == "label"}
    assert careless.run(lambda trial, data: wrong.get(trial["i"], 1 if trial["task"] == "rate" else 0)) == "CODE-CHECK"
    assert "https://app.prolific.com/submissions/complete?cc=CODE-CHECK" in careless.get(f"{careless.token_path}/debrief").text
