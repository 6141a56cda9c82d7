"""What a participant can see and click, checked by geometry in Chromium at desktop and phone size.

For every page state (pagestates.STATES), the controls a person can reach (visible, not inert,
on top at their centre: document.elementFromPoint) are exactly the state's intended ones, none
overlaps another, and nothing scrolls sideways; clicking where a hidden control would be posts
no answer. And clicking through a session, every stored answer is the one its question asked.
With twenty classes of non-square images, every class's button fits beside the image, the image
keeps its shape in the square frame, and by keyboard a class number is typed, shown, edited and
sent with Enter.
"""
from __future__ import annotations

import re

import pytest
from sqlalchemy import create_engine

from pagestates import (ANSWER_LABEL, EXPECTED, STATES, TASK_STATES, Walk, create_studies, enter_on_focused, fill, new_page,
                        wait_ready, walk)
from studyhelp import TALL, TWENTY, stimset, study_server, twenty  # noqa: F401  (fixtures)
from test_browser import SENT, serious_violations, session_rows

pytestmark = pytest.mark.browser

# Every control a person could click or Tab to; `expected` are the selectors of those the state
# should offer. Controls below the fold are scrolled to first (on the task page nothing may need
# scrolling: the answer buttons must be on screen with the image).
REACHABLE_JS = """([expected, mustFit]) => {
  const controls = [...document.querySelectorAll('a[href], button, input:not([type=hidden]), select, textarea, [tabindex]:not([tabindex="-1"])')];
  const wanted = new Set(expected.flatMap((s) => [...document.querySelectorAll(s)]));
  const name = (el) => ((el.getAttribute('aria-label') || el.textContent).trim().replace(/\\s+/g, ' ') || el.id || el.tagName);
  const result = { reachable: [], missing: [], overlaps: [], small: [], offscreen: [],
                   sideways: document.documentElement.scrollWidth > innerWidth };
  const shown = [];
  for (const el of controls) {
    if (!el.checkVisibility({ checkOpacity: true, checkVisibilityCSS: true })) continue;
    let box = el.getBoundingClientRect();
    if (box.width === 0 || box.height === 0) continue;
    shown.push([el, box]);
    if (box.top < 0 || box.bottom > innerHeight) {
      if (mustFit && wanted.has(el)) result.offscreen.push(name(el));
      el.scrollIntoView({ block: 'center' });
      box = el.getBoundingClientRect();
    }
    const part = el.getClientRects()[0]; // a link wrapped over two lines: its first line
    const top = document.elementFromPoint(part.left + part.width / 2, part.top + part.height / 2);
    if (!el.closest('[inert]') && top && (top === el || el.contains(top))) result.reachable.push(name(el));
    else if (wanted.has(el)) result.missing.push(name(el));
    if (el.closest('.buttons') && (box.width < 44 || box.height < 44)) result.small.push(name(el));
    scrollTo(0, 0);
  }
  for (let i = 0; i < shown.length; i++) for (let j = i + 1; j < shown.length; j++) {
    const [a, p] = shown[i], [b, q] = shown[j];
    if (a.contains(b) || b.contains(a)) continue;
    if (Math.min(p.right, q.right) - Math.max(p.left, q.left) > 0.5 && Math.min(p.bottom, q.bottom) - Math.max(p.top, q.top) > 0.5)
      result.overlaps.push(`${name(a)} / ${name(b)}`);
  }
  result.wanted = [...wanted].map(name);
  return result;
}"""

# Centres of the buttons a person cannot use now: inside a [hidden] element (measured by
# unhiding it for an instant, without a paint in between) or inert. Points that land on a control
# the state does offer are left out, since clicking those is meant to work.
PHANTOM_JS = """(expected) => {
  const wanted = new Set(expected.flatMap((s) => [...document.querySelectorAll(s)]));
  const hidden = [...document.querySelectorAll('main [hidden]')];
  hidden.forEach((el) => { el.hidden = false; });
  const points = [...document.querySelectorAll('main button, main a[href]')]
    .filter((el) => hidden.some((h) => h.contains(el)) || el.closest('[inert]'))
    .map((el) => el.getBoundingClientRect()).filter((r) => r.width > 0)
    .map((r) => [r.left + r.width / 2, r.top + r.height / 2]);
  hidden.forEach((el) => { el.hidden = true; });
  return points.filter(([x, y]) => {
    const top = document.elementFromPoint(x, y);
    return y > 0 && y < innerHeight && !(top && [...wanted].some((w) => w.contains(top)));
  });
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory, stimset, twenty):
    """One server for the module, with the studies pagestates walks and clicks through."""
    url = f"sqlite:///{tmp_path_factory.mktemp('geometry') / 'study.sqlite'}"
    create_studies(url, stimset, twenty)
    with study_server(url, None, None) as (base, _):
        fill(base)
        yield base, create_engine(url)


@pytest.mark.parametrize("viewport", ["desktop", "phone"])
def test_each_state_offers_exactly_its_controls_and_nothing_else_answers(server, browser, viewport):
    base, _engine = server
    page = new_page(browser, viewport)
    seen, checked = Walk(), []
    for state in walk(page, base, seen):
        found = page.evaluate(REACHABLE_JS, [EXPECTED[state], state in TASK_STATES])
        problems = {k: found[k] for k in ("missing", "overlaps", "small", "offscreen") if found[k]}
        if found["sideways"]:
            problems["sideways"] = "the page scrolls sideways"
        assert sorted(found["reachable"]) == sorted(found["wanted"]) and not problems, (state, found)
        if state in TASK_STATES:  # the bar shows what the words say: "Image N of M" is N - 1 of M done
            value, text = page.evaluate("[document.getElementById('progress').value, "
                                        "document.getElementById('progress-text').textContent]")
            number, of = map(int, re.search(r"(\d+) of (\d+)", text).groups())
            assert (number - 1) / of <= value < number / of, (state, value, text)
        if state not in ("consent", "resume-offer", "full", "withdrawn"):
            assert found["wanted"], state  # every running-session state offers its controls

        before = (len(seen.posted), page.url, page.evaluate("document.getElementById('trial')?.dataset.index"))
        points = page.evaluate(PHANTOM_JS, EXPECTED[state])
        if state in TASK_STATES or state in ("break", "saving"):
            assert points, (state, "no hidden or inert answer button to click")
        for x, y in points:
            page.mouse.click(x, y)
        page.wait_for_timeout(150)  # time for a posted answer to show up in `seen`
        after = (len(seen.posted), page.url, page.evaluate("document.getElementById('trial')?.dataset.index"))
        assert after == before, (state, "a click where no control is offered did something")
        checked.append(state)
    assert checked == list(STATES)
    page.context.close()


def test_every_visible_button_answers_what_its_question_asked(server, browser):
    """Click, across the session, every answer button a person can see, in turn. A click on a
    button of the other question would be posted for the question on screen (the old page stored
    "5 Completely" as the digit 5): each posted and stored answer must be the clicked button's."""
    base, engine = server
    page = new_page(browser, "desktop")
    seen = Walk()
    page.on("request", seen.record)
    page.goto(f"{base}/study/clicks?participant=clicker")
    page.click("button[value=agree]")  # the step forms post by fetch (retry.js), then the page moves on
    page.wait_for_selector("h1:text('Instructions')")
    page.click("text=Start the practice images")
    wait_ready(page, 0)
    n = page.evaluate("JSON.parse(document.getElementById('study-data').textContent).trials.length")
    clicked, used = [], set()
    for index in range(n):
        task = wait_ready(page, index)
        visible = page.evaluate("""() => [...document.querySelectorAll('.buttons button')]
            .filter((b) => b.checkVisibility({ checkOpacity: true, checkVisibilityCSS: true }))
            .map((b) => [b.closest('.buttons').id.split('-')[0], Number(b.dataset.value)])""")
        fresh = [b for b in visible if tuple(b) not in used] or visible
        group, value = fresh[0]
        used.add((group, value))
        page.locator(f"#{group}-buttons button[data-value='{value}']").click()
        page.wait_for_function(f"() => document.getElementById('trial').dataset.index != {index}"
                               " || !!document.getElementById('saving').textContent", timeout=5000)
        clicked.append((index, task, group, value))
        assert group == task, f"trial {index} asked for a {task}; a {group} button ({value}) answered it"
        assert seen.posted[-1]["trial_index"] == index and seen.posted[-1]["response"] == value
    page.wait_for_selector("#completion-code", timeout=20000)
    assert {(g, v) for _, _, g, v in clicked} == {("label", d) for d in range(10)} | {("rate", r) for r in range(1, 6)}
    stored = [(r["trial_index"], r["task"], r["response_label"] if r["task"] == "label" else r["response_rating"])
              for r in session_rows(engine, page)]
    assert stored == [(i, t, v) for i, t, _, v in clicked]
    page.context.close()


def test_tab_and_enter_reach_only_the_question_on_screen(server, browser):
    """By keyboard without digit keys: Tab walks the visible group only, Enter answers, and the
    focus then waits on the next question, one Tab before its first button."""
    base, _engine = server
    page = new_page(browser, "desktop")
    seen = Walk()
    page.on("request", seen.record)
    page.goto(f"{base}/study/clicks?participant=tabber")
    enter_on_focused(page, "I agree to take part")
    page.wait_for_selector("h1:text('Instructions')")
    enter_on_focused(page, "Start the practice images")
    wait_ready(page, 0)
    focused = "document.activeElement.closest('.buttons')?.id + ':' + document.activeElement.dataset.value"
    stops = []
    for _ in range(12):  # the withdraw link, then the ten digits
        page.keyboard.press("Tab")
        stops.append(page.evaluate(focused))
    assert [s for s in stops if s != "undefined:undefined"][:10] == [f"label-buttons:{d}" for d in range(10)], stops
    page.keyboard.press("Shift+Tab")  # back to digit 9 or 8, whichever: Enter answers with it
    answer = int(page.evaluate("document.activeElement.dataset.value"))
    page.keyboard.press("Enter")
    assert wait_ready(page, 1) == "rate"
    assert page.evaluate("document.activeElement.id") == "question"
    page.keyboard.press("Tab")
    assert page.evaluate(focused) == "rate-buttons:1"
    page.keyboard.press("Enter")
    wait_ready(page, 2)
    assert [(p["trial_index"], p["response"]) for p in seen.posted] == [(0, answer), (1, 1)]
    page.context.close()


# The drawn image and its frame, in CSS pixels, and how the image is scaled.
IMAGE_JS = """() => {
  const img = document.getElementById('stimulus'), frame = img.parentElement.getBoundingClientRect(), box = img.getBoundingClientRect();
  return { image: [box.left, box.top, box.width, box.height], frame: [frame.left, frame.top, frame.width, frame.height],
           rendering: getComputedStyle(img).imageRendering, natural: [img.naturalHeight, img.naturalWidth] };
}"""


def start_twenty(page, base: str, participant: str, seen: Walk) -> None:
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
    start_twenty(page, base, f"fit-{viewport}", Walk())
    found = page.evaluate(REACHABLE_JS, [ANSWER_LABEL, True])
    problems = {k: found[k] for k in ("missing", "overlaps", "small", "offscreen", "sideways") if found[k]}
    assert not problems and sorted(found["reachable"]) == sorted(found["wanted"]), found
    assert page.locator("#label-buttons button .class-name").all_inner_texts() == list(TWENTY)
    drawn = page.evaluate(IMAGE_JS)
    (left, top, width, height), (fleft, ftop, fwidth, fheight) = drawn["image"], drawn["frame"]
    assert drawn["natural"] == list(TALL) and drawn["rendering"] == "auto"  # the study's image_scaling is "smooth"
    assert abs(fwidth - fheight) < 0.5 and abs(height - fheight) < 0.5  # the frame is square; the tall image spans its height
    assert abs(width / height - TALL[1] / TALL[0]) < 0.01, drawn  # 3:4, not stretched to the square
    assert abs((left - fleft) - (fleft + fwidth - left - width)) < 1, drawn  # centred: equal bars either side
    assert serious_violations(page) == []
    page.context.close()


def test_a_class_number_is_typed_shown_edited_and_sent_with_enter(server, browser):
    base, engine = server
    page = new_page(browser, "desktop")
    seen = Walk()
    start_twenty(page, base, "typist", seen)
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
    page.keyboard.type("07")  # a leading zero is the same number; a one-digit number needs its Enter too
    assert page.locator("#label-buttons button.typed").all_inner_texts() == ["7beetle"]
    page.keyboard.press("Enter")
    wait_ready(page, 3)
    assert [(p["trial_index"], p["response"]) for p in seen.posted] == [(0, 12), (1, 3), (2, 7)]
    page.wait_for_function(SENT)
    stored = [(r["task"], r["response_label"] if r["task"] == "label" else r["response_rating"]) for r in session_rows(engine, page)]
    assert stored == [("label", 12), ("rate", 3), ("label", 7)]
    page.context.close()
