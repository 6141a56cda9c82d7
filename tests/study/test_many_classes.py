"""More than ten classes, of non-square images, on the participant page (Chromium, both sizes):
every class's button fits beside the image without overlap or scrolling, the image keeps its shape
in the square frame, and by keyboard a class number is typed, shown, edited and sent with Enter."""
from __future__ import annotations

import pytest
from sqlalchemy import create_engine

from pagestates import ANSWER_LABEL, Walk, new_page, wait_ready
from study.config import parse_config
from study.db import db
from studyhelp import BASE_CONFIG, SHAPE_WORDS, TALL, TWENTY, app_with_study, study_server, twenty  # noqa: F401  (fixtures)
from test_browser import SENT, serious_violations, session_rows
from test_page_geometry import REACHABLE_JS

pytestmark = pytest.mark.browser

# The drawn image and its frame, in CSS pixels, and how the image is scaled.
IMAGE_JS = """() => {
  const img = document.getElementById('stimulus'), frame = img.parentElement.getBoundingClientRect(), box = img.getBoundingClientRect();
  return { image: [box.left, box.top, box.width, box.height], frame: [frame.left, frame.top, frame.width, frame.height],
           rendering: getComputedStyle(img).imageRendering, natural: [img.naturalHeight, img.naturalWidth] };
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory, twenty):
    url = f"sqlite:///{tmp_path_factory.mktemp('many')}/study.sqlite"
    # No practice: its feedback would only add waiting to the keyboard test.
    config = parse_config({**BASE_CONFIG, **SHAPE_WORDS, "id": "twenty", "target_participants": 100, "practice_trials": 0})
    with app_with_study(url, config, twenty).app_context():
        db.engine.dispose()  # the server must not share this process's connections
    with study_server(url, None, None) as (base, _):
        yield base, create_engine(url)


def start(page, base: str, participant: str, seen: Walk) -> None:
    page.on("request", seen.record)
    page.goto(f"{base}/study/twenty?participant={participant}")
    page.click("button[value=agree]")
    page.wait_for_selector("h1:text('Instructions')")
    page.click("form button[type=submit]")
    wait_ready(page, 0)


@pytest.mark.parametrize("viewport", ["desktop", "phone"])
def test_twenty_class_buttons_fit_beside_a_letterboxed_image(server, browser, viewport):
    base, _engine = server
    page = new_page(browser, viewport)
    start(page, base, f"fit-{viewport}", Walk())
    found = page.evaluate(REACHABLE_JS, [ANSWER_LABEL, True])
    problems = {k: found[k] for k in ("missing", "overlaps", "small", "offscreen", "sideways") if found[k]}
    assert not problems and sorted(found["reachable"]) == sorted(found["wanted"]), found
    assert page.locator("#label-buttons button .class-name").all_inner_texts() == list(TWENTY)
    drawn = page.evaluate(IMAGE_JS)
    (left, top, width, height), (fleft, ftop, fwidth, fheight) = drawn["image"], drawn["frame"]
    assert drawn["natural"] == list(TALL) and drawn["rendering"] == "pixelated"
    assert abs(fwidth - fheight) < 0.5 and abs(height - fheight) < 0.5  # the frame is square; the tall image spans its height
    assert abs(width / height - TALL[1] / TALL[0]) < 0.01, drawn  # 3:4, not stretched to the square
    assert abs((left - fleft) - (fleft + fwidth - left - width)) < 1, drawn  # centred: equal bars either side
    assert serious_violations(page) == []
    page.context.close()


def test_a_class_number_is_typed_shown_edited_and_sent_with_enter(server, browser):
    base, engine = server
    page = new_page(browser, "desktop")
    seen = Walk()
    start(page, base, "typist", seen)
    hint = page.locator("#hint")
    assert hint.inner_text() == "Type a class number from 0 to 19 and press Enter, or choose a button."
    page.keyboard.type("25")
    assert hint.inner_text() == "You typed 25: there is no class 25 (0 to 19); press Backspace to change it."
    page.keyboard.press("Enter")  # no class 25: nothing is answered
    page.keyboard.press("Backspace")
    page.keyboard.type("1")
    assert hint.inner_text() == "You typed 21: there is no class 21 (0 to 19); press Backspace to change it."
    page.keyboard.press("Backspace")
    page.keyboard.press("Backspace")
    page.keyboard.type("124")  # two digits at most: the 4 is dropped
    assert hint.inner_text() == "You typed 12 (bridge): press Enter to answer, Backspace to change it."
    assert page.locator("#label-buttons button.typed").all_inner_texts() == ["12bridge"]  # the typed class's button is marked
    assert seen.posted == []
    page.keyboard.press("Enter")
    assert wait_ready(page, 1) == "rate"
    page.keyboard.press("3")  # a rating is still one key
    wait_ready(page, 2)
    page.keyboard.type("7")  # a one-digit class number needs its Enter too
    page.keyboard.press("Enter")
    wait_ready(page, 3)
    assert [(p["trial_index"], p["response"]) for p in seen.posted] == [(0, 12), (1, 3), (2, 7)]
    page.wait_for_function(SENT)
    stored = [(r["task"], r["response_label"] if r["task"] == "label" else r["response_rating"]) for r in session_rows(engine, page)]
    assert stored == [("label", 12), ("rate", 3), ("label", 7)]
    page.context.close()
