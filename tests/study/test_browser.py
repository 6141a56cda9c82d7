"""The participant's session in Chromium: keyboard only, refresh, network drop, phone, axe-core."""
from __future__ import annotations

import io
import random
from pathlib import Path

import pytest
from PIL import Image, ImageChops
from sqlalchemy import create_engine, text

from conftest import REPO
from study.config import parse_config
from study.db import db
from pagestates import enter_on_focused, trial_count, wait_ready
from studyhelp import (BASE_CONFIG, SHAPE_WORDS, SHAPES, app_with_study, shapes, stimset,  # noqa: F401  (fixtures)
                       study_server, write_config)

pytestmark = pytest.mark.browser
AXE = REPO / "node_modules" / "axe-core" / "axe.min.js"


@pytest.fixture(scope="module")
def server(tmp_path_factory, stimset):
    tmp = tmp_path_factory.mktemp("browser")
    url = f"sqlite:///{tmp / 'study.sqlite'}"
    with study_server(url, write_config(tmp / "study.toml", target_participants=100), stimset) as (base, _proc):
        yield base, create_engine(url)


# Every answer given has reached the server (the page's outbox is empty).
SENT = """() => {
  const session = JSON.parse(document.getElementById("study-data").textContent).session;
  return (localStorage.getItem(`study-outbox:${session}`) || "[]") === "[]";
}"""


def session_rows(engine, page) -> list[dict]:
    """The view's rows for the session the page is in (its URL is /s/<session id>.<signature>)."""
    session = page.url.split("/s/")[1].split(".")[0]
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text(
            "SELECT * FROM responses_long WHERE session_id = :s ORDER BY trial_index"), {"s": session})]


def begin(page, base: str, pid: str, study: str = "test-study") -> None:
    """Entry, consent and instructions by keyboard only (Enter on the focused button)."""
    page.goto(f"{base}/study/{study}?PROLIFIC_PID={pid}&STUDY_ID=s&SESSION_ID=x")
    assert page.locator("h1").inner_text() == "Consent to take part"
    enter_on_focused(page, "I agree to take part")
    page.wait_for_selector("text=Instructions")
    enter_on_focused(page, "Start the practice images")


def answer_by_key(page, index: int) -> None:
    task = wait_ready(page, index)
    page.keyboard.press(str(random.randint(0, 9) if task == "label" else random.randint(1, 5)))


def finish(page, start: int) -> None:
    for index in range(start, trial_count(page)):
        answer_by_key(page, index)
    page.wait_for_selector("#completion-code", timeout=20000)
    assert page.locator("#completion-code").inner_text() == "CODE-OK"


def test_a_whole_session_by_keyboard(server, page):
    base, engine = server
    begin(page, base, "kb-1")
    wait_ready(page, 0)
    n = trial_count(page)
    finish(page, 0)
    rows = session_rows(engine, page)
    assert [r["trial_index"] for r in rows] == list(range(n))
    assert all(r["rt_ms"] > 0 for r in rows) and rows[0]["presented_at"] is not None


def test_a_refresh_resumes_at_the_first_unanswered_trial(server, page):
    base, engine = server
    begin(page, base, "refresh-1")
    wait_ready(page, 0)
    n = trial_count(page)
    stop = random.Random(7).randrange(1, n - 1)
    for index in range(stop):
        answer_by_key(page, index)
    wait_ready(page, stop)
    page.reload()
    assert wait_ready(page, stop)  # same session, same order, first unanswered trial
    finish(page, stop)
    assert [r["trial_index"] for r in session_rows(engine, page)] == list(range(n))


def test_a_plain_link_offers_to_continue_its_session_after_the_tab_is_closed(server, page):
    """No participant id to match on: the browser remembers the session, and the entry page offers it."""
    base, _engine = server
    page.goto(f"{base}/study/test-study")
    assert page.locator("#resume").is_hidden()  # nothing started in this browser yet
    enter_on_focused(page, "I agree to take part")
    page.wait_for_selector("text=Instructions")
    enter_on_focused(page, "Start the practice images")
    for index in range(3):
        answer_by_key(page, index)
    wait_ready(page, 3)
    token = page.url.split("/s/")[1].split("/")[0]
    tab = page.context.new_page()
    page.close()  # the tab is gone; the browser's storage is not
    tab.goto(f"{base}/study/test-study")
    tab.locator("#resume a").click()
    assert wait_ready(tab, 3) and tab.url.split("/s/")[1].split("/")[0] == token


def test_a_network_drop_loses_no_answer(server, page):
    base, engine = server
    begin(page, base, "offline-1")
    wait_ready(page, 0)
    n = trial_count(page)
    for index in range(4):
        answer_by_key(page, index)
    page.context.set_offline(True)
    for index in range(4, 8):
        answer_by_key(page, index)
    wait_ready(page, 8)
    assert "offline" in page.locator("#saving").inner_text()
    page.context.set_offline(False)
    finish(page, 8)
    assert [r["trial_index"] for r in session_rows(engine, page)] == list(range(n))


def test_a_break_waits_until_the_participant_continues(server, page, stimset):
    base, engine = server
    config = parse_config({**BASE_CONFIG, "id": "break-study", "break_every": 2, "target_participants": 100})
    with app_with_study(str(engine.url), config, stimset).app_context():
        db.engine.dispose()
    begin(page, base, "pause-1", study="break-study")
    first_after_break = (2 + 2) * 2  # after 2 practice and 2 main images, two questions each
    for index in range(first_after_break):
        answer_by_key(page, index)
    page.wait_for_selector("#pause:not([hidden])")
    assert page.evaluate("document.activeElement.id") == "resume"
    page.keyboard.press("Enter")
    finish(page, first_after_break)


def test_a_class_study_offers_its_names_and_stores_the_label_chosen(server, page, shapes):
    base, engine = server
    config = parse_config({**BASE_CONFIG, **SHAPE_WORDS, "id": "shapes", "target_participants": 100})
    with app_with_study(str(engine.url), config, shapes).app_context():
        db.engine.dispose()
    begin(page, base, "shapes-1", study="shapes")
    wait_ready(page, 0)
    buttons = page.locator("#label-buttons button:visible")
    assert buttons.locator(".class-name").all_inner_texts() == list(SHAPES)  # only K buttons, named
    assert page.locator("#question").inner_text() == "Which of these is it?"
    assert page.locator("#hint").inner_text() == "Press a key from 0 to 2, or choose a button."
    # The RGB image is drawn in colour: some pixel of it on screen is not grey.
    red, green, _blue = Image.open(io.BytesIO(page.locator("#stimulus").screenshot())).convert("RGB").split()
    assert ImageChops.difference(red, green).getbbox() is not None
    assert page.locator("#stimulus").evaluate("img => getComputedStyle(img).imageRendering") == "pixelated"  # the default
    assert serious_violations(page) == []
    page.get_by_role("button", name="square").click()
    page.wait_for_selector("#feedback:not(:empty)")
    first = page.evaluate("JSON.parse(document.getElementById('study-data').textContent).trials[0].stimulus")
    with engine.connect() as conn:
        true_name = SHAPES[conn.execute(text("SELECT true_label FROM stimulus WHERE public_id = :p"), {"p": first}).scalar_one()]
    assert page.locator("#feedback").inner_text() in (f"Correct: the answer is {true_name}.", f"Not quite: the answer is {true_name}.")
    wait_ready(page, 1)
    assert page.locator("#question").inner_text() == f"How much does this look like a genuine {true_name}?"  # practice: its own class
    page.keyboard.press("3")
    wait_ready(page, 2)
    page.keyboard.press("7")  # no eighth class: the question stays
    page.keyboard.press("2")
    wait_ready(page, 3)
    page.wait_for_function(SENT)
    rows = session_rows(engine, page)
    assert [(r["task"], r["response_label"]) for r in rows if r["task"] == "label"] == [("label", 1), ("label", 2)]


def test_a_phone_completes_by_touch_without_sideways_scrolling(server, browser):
    base, engine = server
    context = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True,
                                  device_scale_factor=3)
    page = context.new_page()
    page.goto(f"{base}/study/test-study?participant=phone-1")
    page.tap("text=I agree to take part")
    page.tap("text=Start the practice images")
    wait_ready(page, 0)
    for index in range(trial_count(page)):
        task = wait_ready(page, index)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.tap(f"#{'label' if task == 'label' else 'rate'}-buttons button >> nth=2")
    page.wait_for_selector("#completion-code", timeout=20000)
    with engine.connect() as conn:
        env = conn.execute(text("SELECT viewport_width, device_pixel_ratio, frame_ms FROM participant_session "
                                "WHERE viewport_width = 390")).one()
    assert env.device_pixel_ratio == 3 and env.frame_ms > 0
    context.close()


def serious_violations(page) -> list[str]:
    # Evaluated through DevTools, not as a <script> tag: the pages' CSP refuses inline scripts.
    page.evaluate(AXE.read_text())
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [f"{v['id']}: {v['help']}" for v in result["violations"] if v["impact"] in ("serious", "critical")]


def test_axe_finds_no_serious_problems_on_consent_instructions_and_trials(server, page):
    assert AXE.exists(), "run `make test` (it installs axe-core with npm)"
    base, _engine = server
    page.goto(f"{base}/study/test-study?participant=axe-1")
    assert serious_violations(page) == []
    enter_on_focused(page, "I agree to take part")
    page.wait_for_selector("text=Instructions")
    assert serious_violations(page) == []
    enter_on_focused(page, "Start the practice images")
    wait_ready(page, 0)
    assert serious_violations(page) == []  # labeling
    page.keyboard.press("4")
    wait_ready(page, 1)
    assert serious_violations(page) == []  # rating
