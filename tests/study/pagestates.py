"""Drive Chromium through every state a participant's page can be in, stopping at each one.

`walk` is a generator: it yields the name of each state once the page shows it and holds it
there (a practice answer's feedback on held timers, "Saving…" on a held completion request)
until the caller asks for the next one. The geometry tests check each state; the screenshot
script (scripts/screenshots.py) photographs it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

from playwright.sync_api import Browser, Page, Request

from study.config import DEFAULT_CONFIG, load_config, parse_config
from study.db import db
from study.testing.driver import Participant
from study.studies import create_study
from studyhelp import BASE_CONFIG, SHAPE_WORDS, app_with_study

VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}

# The controls each state offers, as selectors; everything else a person could click must be
# hidden or inert. "a.withdraw" is the header's link, on every page of a running session.
ANSWER_LABEL = ["a.withdraw", "#label-buttons button"]
ANSWER_RATE = ["a.withdraw", "#rate-buttons button"]
EXPECTED: dict[str, list[str]] = {
    "consent": ["button[value=agree]", "button[value=decline]"],
    "instructions": ["a.withdraw", "form button[type=submit]"],
    "practice-label": ANSWER_LABEL,
    "practice-feedback": ["a.withdraw"],
    "practice-rate": ANSWER_RATE,
    "main-label": ANSWER_LABEL,
    "main-rate": ANSWER_RATE,
    "break": ["a.withdraw", "#resume"],
    "saving": ["a.withdraw"],
    "completion": ["a.withdraw"],
    "resume-offer": ["#resume a", "button[value=agree]", "button[value=decline]"],
    "withdraw": ["a.withdraw", "form button[type=submit]", "a.button"],
    "withdrawn": [],
    "full": [],
}
STATES = tuple(EXPECTED)
TASK_STATES = {"practice-label", "practice-feedback", "practice-rate", "main-label", "main-rate"}


# Holds a state that a timer would end (practice feedback): while held, timers that come due wait
# and run on release. The clock itself is not faked, so reaction times stay real.
HOLD_TIMERS = """
const realSetTimeout = window.setTimeout;
let heldTimers = null;
window.holdTimers = () => { heldTimers = heldTimers || []; };
window.releaseTimers = () => { const due = heldTimers || []; heldTimers = null; due.forEach((run) => run()); };
window.setTimeout = (callback, ms, ...args) => realSetTimeout(() => {
  if (heldTimers) heldTimers.push(() => callback(...args)); else callback(...args);
}, ms);
"""


@dataclass
class Walk:
    """What a walk saw: every answer the page posted, in order."""
    posted: list[dict] = field(default_factory=list)

    def record(self, request: Request) -> None:
        if request.method == "POST" and request.url.endswith("/answers"):
            self.posted.append(request.post_data_json)


def create_studies(database_url: str, stimset: Path, twenty: Path) -> None:
    """The walked study ("walk": 2 practice images, 4 main ones, a break after the 2nd), one that
    will be full ("full", see `fill`), one for clicking through ("clicks": 10 images, so 10
    label and 10 rating questions) and one of `twenty` classes (studyhelp.write_twenty) without
    practice, its images smoothed ("twenty")."""
    default = load_config(DEFAULT_CONFIG)  # its words and scale, so the screenshots show the real pages
    words = {"title": default.title, "texts": asdict(default.texts), "rate": asdict(default.rating),
             "label": {"question": default.label_question}}
    walked = {**BASE_CONFIG, **words, "id": "walk", "break_every": 2, "seconds_per_answer": 10, "target_participants": 100}
    app = app_with_study(database_url, parse_config(walked), stimset)
    with app.app_context():
        create_study(parse_config({**BASE_CONFIG, "id": "full", "target_participants": 1}), stimset)
        create_study(parse_config({**BASE_CONFIG, "id": "clicks", "trials_per_participant": 6,
                                   "target_participants": 100}), stimset)
        create_study(parse_config({**BASE_CONFIG, **SHAPE_WORDS, "id": "twenty", "title": "Picture study (test)",
                                   "target_participants": 100, "practice_trials": 0, "image_scaling": "smooth"}), twenty)
        db.engine.dispose()  # the server must not share this process's connections


def fill(base: str) -> None:
    """Take the full study's only place."""
    Participant(base, "full", params={"participant": "first"}, seed=1).start()


def new_page(browser: Browser, viewport: str) -> Page:
    phone = viewport == "phone"
    context = browser.new_context(viewport=VIEWPORTS[viewport], has_touch=phone, is_mobile=phone)
    return context.new_page()


def enter_on_focused(page: Page, label: str) -> None:
    """Press Enter once the page's autofocus has landed on the button reading `label`, as a
    keyboard user does once they see the focus ring (Chromium may focus after `load`)."""
    page.wait_for_function("(label) => document.activeElement?.textContent.trim() === label", arg=label,
                           timeout=15000)
    page.keyboard.press("Enter")


def wait_ready(page: Page, index: int) -> str:
    trial = page.wait_for_selector(f'#trial[data-index="{index}"][data-ready="true"]', timeout=15000)
    return trial.get_attribute("data-task")


def click_answer(page: Page, index: int) -> None:
    """Click a button of the question asked at `index` (the third one: any would do)."""
    task = wait_ready(page, index)
    page.locator(f"#{task}-buttons button").nth(2).click()


def trial_count(page: Page) -> int:
    return page.evaluate("JSON.parse(document.getElementById('study-data').textContent).trials.length")


def walk(page: Page, base: str, seen: Walk, study: str = "walk", full_study: str = "full") -> Iterator[str]:
    """Consent to completion of one session of `study` (2 practice images, a break after the 2nd
    main image), then the entry page's offer to continue, a withdrawal and a full study."""
    page.on("request", seen.record)
    page.add_init_script(HOLD_TIMERS)
    page.goto(f"{base}/study/{study}")
    yield "consent"
    page.click("button[value=agree]")
    page.wait_for_selector("h1:text('Instructions')")
    yield "instructions"
    page.click("text=Start the practice images")
    wait_ready(page, 0)
    yield "practice-label"
    page.evaluate("holdTimers()")  # the feedback stays on screen until released
    click_answer(page, 0)
    page.wait_for_selector("#feedback:not(:empty)")
    yield "practice-feedback"
    page.evaluate("releaseTimers()")
    wait_ready(page, 1)
    yield "practice-rate"
    for index in range(1, 4):
        click_answer(page, index)
    wait_ready(page, 4)
    yield "main-label"
    click_answer(page, 4)
    wait_ready(page, 5)
    yield "main-rate"
    for index in range(5, 8):
        click_answer(page, index)
    page.wait_for_selector("#pause:not([hidden])")
    yield "break"
    page.click("#resume")
    held = []
    page.route("**/complete", lambda route: held.append(route))
    last = trial_count(page) - 1
    for index in range(8, last + 1):
        click_answer(page, index)
    page.wait_for_function("document.getElementById('saving').textContent.startsWith('Saving')")
    page.wait_for_function("() => true")  # a round trip, so the held request has been routed
    yield "saving"
    for route in held:
        route.continue_()
    page.unroute("**/complete")
    page.wait_for_selector("#completion-code", timeout=20000)
    yield "completion"

    page.goto(f"{base}/study/{study}")
    page.wait_for_selector("#resume:not([hidden])")
    yield "resume-offer"
    page.click("button[value=agree]")
    page.wait_for_selector("h1:text('Instructions')")
    page.click("a.withdraw")
    page.wait_for_selector("h1:text('Withdraw from the study?')")
    yield "withdraw"
    page.click("text=Yes, withdraw")
    page.wait_for_selector("h1:text('You have withdrawn')")
    yield "withdrawn"
    page.goto(f"{base}/study/{full_study}?participant=late")
    page.wait_for_selector("h1:text('The study is full')")
    yield "full"
