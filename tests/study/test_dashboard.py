"""The researcher's side through the Flask test client, on SQLite and PostgreSQL: login, rate
limit shared by every worker, CSRF on every researcher form, no state change on GET anywhere,
progress, exports, payments, deletion by panel id, framing rules, inert hostile input."""
from __future__ import annotations

import hashlib
import io
import re
import time

import pandas as pd
import pytest
from sqlalchemy import func, select, text

from study.config import parse_config
from study.db import db
from study.testing.driver import Participant
from study.models import AuditEvent, ParticipantSession
from study.security import session_mark, session_token
from studyhelp import BASE_CONFIG, app_with_study, make_app, stimset  # noqa: F401  (fixtures)

PASSWORD = "correct horse battery"
HOSTILE = "{{7*7}}<script>alert(1)</script>' OR 1=1; DROP TABLE answer;--"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def login(client, password: str = PASSWORD):
    token = CSRF.search(client.get("/admin/login").get_data(as_text=True)).group(1)
    return client.post("/admin/login", data={"csrf_token": token, "username": "ada", "password": password})


def admin_token(client, slug: str = "test-study") -> str:
    return CSRF.search(client.get(f"/admin/study/{slug}").get_data(as_text=True)).group(1)


def run(app, **params) -> Participant:
    bot = Participant("http://test", "test-study", params=params, client=app.test_client(), seed=7)
    bot.run()
    return bot


def db_fingerprint(app) -> str:
    """A hash of every row of every table: equal before and after means nothing was written."""
    digest = hashlib.sha256()
    with app.app_context():
        # page_view is the server's log of the pages it showed (their times), not state.
        for table in [t for t in db.metadata.sorted_tables if t.name != "page_view"]:
            for row in db.session.execute(select(table).order_by(*table.primary_key.columns)):
                digest.update(repr(tuple(row)).encode())
    return digest.hexdigest()


@pytest.fixture
def app(make_app):
    app = make_app(payment={"currency": "GBP", "base": 1.5, "bonus_per_correct_label": 0.25})
    assert app.test_cli_runner().invoke(args=["create-admin", "ada", "--password", PASSWORD]).exit_code == 0
    assert app.test_cli_runner().invoke(args=["grant", "ada", "test-study", "owner"]).exit_code == 0
    return app


def test_login_rate_limit_is_shared_by_workers_and_anonymous_users_see_nothing(app):
    short = app.test_cli_runner().invoke(args=["create-admin", "bob", "--password", "short"])
    assert short.exit_code == 1 and "at least 12 characters" in short.output
    anonymous = app.test_client()
    for path in ("/admin/", "/admin/study/test-study", "/admin/study/test-study/export/responses.csv",
                 "/admin/study/test-study/export/payments.csv", "/admin/study/test-study/progress.json"):
        reply = anonymous.get(path)
        assert reply.status_code == 302 and reply.headers["Location"].startswith("/admin/login") and b"study_id" not in reply.data
    assert anonymous.post("/admin/login", data={"username": "ada", "password": PASSWORD}).status_code == 400  # no CSRF

    # Two app objects on one database stand for two gunicorn workers: failures on one make the
    # same user at the same address wait on the other.
    from study import create_app

    for _ in range(3):
        assert login(app.test_client(), "wrong password!").status_code == 401
    other_worker = create_app({"SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"], "SECRET_KEY": "test-secret"})
    blocked = other_worker.test_client()
    reply = login(blocked)
    assert reply.status_code == 429 and b"Too many failed logins" in reply.data
    assert blocked.get("/admin/").status_code == 302


def test_logins_end_after_an_idle_time_and_after_their_lifetime(stimset, tmp_path, monkeypatch):
    # The lifetimes live in the signed cookie, so one database shows them.
    monkeypatch.setenv("STUDY_ADMIN_IDLE_MINUTES", "0.03")  # 1.8 s without a request
    monkeypatch.setenv("STUDY_ADMIN_SESSION_HOURS", "0.001")  # 3.6 s however busy
    app = app_with_study(f"sqlite:///{tmp_path / 'study.sqlite'}", parse_config(BASE_CONFIG), stimset)
    assert app.test_cli_runner().invoke(args=["create-admin", "ada", "--password", PASSWORD]).exit_code == 0
    assert app.test_cli_runner().invoke(args=["grant", "ada", "test-study", "viewer"]).exit_code == 0
    busy, idle = app.test_client(), app.test_client()
    assert login(busy).status_code == login(idle).status_code == 303
    began = time.monotonic()
    while time.monotonic() - began < 2.7:  # a request every 0.9 s keeps a login alive ...
        assert busy.get("/admin/study/test-study").status_code == 200
        time.sleep(0.9)
    saved = busy.get_cookie("session").value
    reply = idle.get("/admin/study/test-study")  # ... and 2.7 s without one ends it
    assert reply.status_code == 302 and reply.headers["Location"].startswith("/admin/login")
    time.sleep(max(0.0, 3.7 - (time.monotonic() - began)))
    assert busy.get("/admin/study/test-study").status_code == 302  # past its lifetime
    replay = app.test_client()
    replay.set_cookie("session", saved)
    assert replay.get("/admin/").status_code == 302  # a copy of the cookie ages with it

    from study import create_app

    monkeypatch.setenv("STUDY_ADMIN_IDLE_MINUTES", "soon")
    with pytest.raises(RuntimeError, match="STUDY_ADMIN_IDLE_MINUTES must be a positive number of minutes"):
        create_app({"SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"], "SECRET_KEY": "test-secret"})


def test_dashboard_progress_exports_payments_and_deletion(app, tmp_path):
    client = app.test_client()
    assert login(client).status_code == 303
    real = run(app, PROLIFIC_PID="RAWPID-REAL")
    with app.app_context():
        mark = session_mark("test-study", "bot")
    for i in range(3):
        run(app, participant=f"sim-{i}", mark=mark)

    shown = client.get("/admin/study/test-study?sessions=all").get_data(as_text=True)
    assert 'data-state="completed">4<' in shown and "all sessions, bots and pilots included" in shown
    assert "PROLIFIC_PID={{%PROLIFIC_PID%}}" in shown and "ExternalQuestion" in shown and "mark=" in shown
    progress = client.get("/admin/study/test-study/progress.json").get_json()
    assert progress["by_state"]["completed"] == 1 and progress["funnel"]["consented"] == 1
    assert sum(r["answers"] for r in progress["answers_per_condition"]) == 3 * 2  # 3 main images × 2 questions
    assert sum(r["label"] for r in progress["answers_per_stimulus"]) == 3

    def csv(name: str, **args) -> pd.DataFrame:
        reply = client.get(f"/admin/study/test-study/export/{name}", query_string=args)
        assert reply.status_code == 200 and reply.mimetype == "text/csv"
        return pd.read_csv(io.BytesIO(reply.data))

    assert len(csv("responses.csv")) == len(real.data["trials"])
    everyone = csv("responses.csv", include="bots")
    assert len(everyone) == 4 * len(real.data["trials"]) and everyone["is_bot"].sum() == 3 * len(real.data["trials"])
    assert len(csv("participants.csv")) == 1 and len(csv("data_dictionary.csv")) > 40
    assert client.get("/admin/study/test-study/export/secrets.txt").status_code == 404
    assert client.get("/admin/study/test-study/export/responses.csv?include=everything").status_code == 400
    payments = csv("payments.csv")
    assert list(payments["panel_participant_id"]) == ["RAWPID-REAL"] and payments["base"].tolist() == [1.5]
    assert payments["total"][0] == 1.5 + 0.25 * payments["correct_labels"][0]
    assert client.get("/admin/study/test-study/export/payments.csv").data == \
        client.get("/admin/study/test-study/export/payments.csv").data  # idempotent
    cli_payments = app.test_cli_runner().invoke(args=["payments", "test-study", "--out", str(tmp_path / "pay.csv")])
    assert cli_payments.exit_code == 0 and "wrote 1 payments" in cli_payments.output
    assert (tmp_path / "pay.csv").read_bytes() == client.get("/admin/study/test-study/export/payments.csv").data
    refused = app.test_cli_runner().invoke(args=["payments", "test-study", "--out", "/dev/null"])
    assert refused.exit_code == 1 and "not a regular file" in refused.output

    token = admin_token(client)
    closed = client.post("/admin/study/test-study/state", data={"csrf_token": token, "action": "close"},
                         follow_redirects=True)
    assert b"The study is closed" in closed.data and app.test_client().get("/study/test-study").status_code == 410
    deleted = client.post("/admin/study/test-study/delete-participant",
                          data={"csrf_token": token, "panel_id": "RAWPID-REAL"}, follow_redirects=True)
    assert b"Deleted 1 session(s)" in deleted.data
    assert csv("responses.csv").empty and csv("payments.csv").empty
    with app.app_context():
        assert db.session.scalar(text("SELECT count(*) FROM responses_long WHERE NOT is_bot")) == 0
        event = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "delete_participant")).one()
        assert event.actor == "admin:ada" and event.detail["answers"] == len(real.data["trials"])
        assert "RAWPID" not in str(event.detail)
    assert "deleted 0 session(s)" in app.test_cli_runner().invoke(args=["delete-participant", "nobody", "--yes"]).output


def test_commands_run_for_a_researcher_need_that_researchers_role(app, tmp_path):
    def flask(*args: str):
        return app.test_cli_runner().invoke(args=list(args))

    for name in ("ana", "vic"):
        assert flask("create-admin", name, "--password", PASSWORD).exit_code == 0
    assert flask("grant", "ana", "test-study", "analyst", "--as", "ada").exit_code == 0
    refused = flask("grant", "vic", "test-study", "owner", "--as", "ana")
    assert refused.exit_code == 1 and "'ana' is analyst of study 'test-study'; this needs the owner role" in refused.output
    assert flask("grant", "vic", "test-study", "viewer", "--as", "ada").exit_code == 0
    run(app, PROLIFIC_PID="RAWPID-CLI")

    # Payments hold raw panel ids: owners only.
    pay = tmp_path / "pay.csv"
    refused = flask("payments", "test-study", "--out", str(pay), "--as", "ana")
    assert refused.exit_code == 1 and "needs the owner role" in refused.output and not pay.exists()
    assert flask("payments", "test-study", "--out", str(pay), "--as", "ada").exit_code == 0
    assert "RAWPID-CLI" in pay.read_text()
    # Exports are pseudonymised: analysts and owners, not viewers; roles are per study.
    out = tmp_path / "export"
    refused = flask("export", "--out", str(out), "--study", "test-study", "--as", "vic")
    assert refused.exit_code == 1 and "'vic' is viewer of study" in refused.output and not out.exists()
    assert flask("export", "--out", str(out), "--as", "ana").exit_code == 2  # --as needs --study
    assert flask("export", "--out", str(out), "--study", "test-study", "--as", "ana").exit_code == 0
    assert not any("RAWPID" in f.read_text() for f in out.iterdir())
    assert "no researcher 'mallory'" in flask("close", "test-study", "--as", "mallory").output

    # Changes name the researcher in the audit log; an analyst cannot make them.
    assert flask("close", "test-study", "--as", "ana").exit_code == 1
    assert flask("delete-participant", "RAWPID-CLI", "--study", "test-study", "--yes", "--as", "ana").exit_code == 1
    assert flask("close", "test-study", "--as", "ada").exit_code == 0
    assert "deleted 1 session(s)" in flask("delete-participant", "RAWPID-CLI", "--study", "test-study", "--yes", "--as", "ada").output
    with app.app_context():
        actors = dict(db.session.execute(select(AuditEvent.action, AuditEvent.actor)
                                         .where(AuditEvent.action.in_(("close", "delete_participant")))).all())
        assert actors == {"close": "cli:ada", "delete_participant": "cli:ada"}
        assert db.session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.actor == "cli:ada")) == 4


def test_no_get_changes_state_and_every_researcher_post_needs_csrf(app):
    bot = Participant("http://test", "test-study", params={"participant": "victim"},
                      client=app.test_client(), seed=3)
    bot.start()
    with app.app_context():
        session = db.session.scalar(select(ParticipantSession))
        values = {"slug": "test-study", "token": session_token(session.public_id), "name": "responses.csv",
                  "public_id": bot.data["trials"][0]["stimulus"], "filename": "study.css"}
    client = app.test_client()
    login(client)
    before = db_fingerprint(app)
    checked = 0
    for rule in app.url_map.iter_rules():
        if "GET" in rule.methods:
            path = rule.build({k: values[k] for k in rule.arguments}, append_unknown=False)[1]
            assert client.get(path).status_code < 500, path
            checked += 1
    assert checked >= 15 and db_fingerprint(app) == before

    researcher_posts = [r for r in app.url_map.iter_rules() if "POST" in r.methods and r.rule.startswith("/admin/")]
    assert len(researcher_posts) >= 4
    for rule in researcher_posts:
        path = rule.build({k: values[k] for k in rule.arguments}, append_unknown=False)[1]
        reply = client.post(path, data={"action": "close", "panel_id": "victim", "username": "ada", "password": PASSWORD})
        assert reply.status_code == 400 and b"did not come from this page" in reply.data, path
    assert db_fingerprint(app) == before


def test_framing_headers_and_hostile_input_stays_inert(app):
    client = app.test_client()
    entry = client.get("/study/test-study?participant=p1")
    assert "https://www.mturk.com" in entry.headers["Content-Security-Policy"] and "X-Frame-Options" not in entry.headers
    for path in ("/admin/login", "/", "/healthz"):
        reply = client.get(path)
        policy = reply.headers["Content-Security-Policy"]
        assert policy.startswith("default-src 'self'") and policy.endswith("frame-ancestors 'none'")
        assert reply.headers["X-Frame-Options"] == "DENY"

    assert client.get("/study/test-study", query_string={"participant": HOSTILE}).status_code == 400  # not an id
    bot = Participant("http://test", "test-study", params={"participant": "p1"}, client=client, seed=1)
    client.environ_base["HTTP_USER_AGENT"] = HOSTILE
    bot.start()
    bot.client_ids[0] = HOSTILE[:64]  # the answer's client id is the other free-text field a participant sends
    assert bot.answer(0).status == 201
    bot.run()
    login(client)
    people = client.get("/admin/study/test-study/export/participants.csv").data.decode()
    assert pd.read_csv(io.StringIO(people))["user_agent"].tolist() == [HOSTILE]  # stored verbatim
    with app.app_context():
        assert db.session.scalar(text("SELECT count(*) FROM answer")) == len(bot.data["trials"])  # table intact
        assert db.session.scalar(text("SELECT client_id FROM answer WHERE trial_index = 0")) == HOSTILE[:64]
        assert db.session.scalar(select(func.count()).select_from(ParticipantSession)) == 1


def test_templates_hold_no_inline_script_or_style():
    """So a `default-src 'self'` content security policy breaks nothing: scripts come from files
    (the trial page's JSON data block is not executed), styles from stylesheets, and no element
    has a style attribute or an on* handler."""
    from pathlib import Path

    import study

    pages = sorted((Path(study.__file__).parent / "templates").rglob("*.html"))
    assert len(pages) > 15
    for page in pages:
        markup = page.read_text()
        for tag in re.findall(r"<script\b[^>]*>", markup):
            assert "src=" in tag or 'type="application/json"' in tag, (page.name, tag)
        assert not re.search(r"<style\b|\sstyle=|\son[a-z]+=", markup), page.name
