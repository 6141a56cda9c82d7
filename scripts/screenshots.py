"""`make screenshots`: a PNG of every participant page state at desktop and phone size.

Serves a throwaway study (synthetic random-pixel images, so no engine run is needed) with
gunicorn, walks Chromium through it with the browser tests' own state driver
(tests/study/pagestates.py) and writes docs/screens/<viewport>-<state>.png; then the two
questions of a study with named classes (a 3-class RGB set), as docs/screens/<viewport>-classes-*.png,
and the label question of a study of twenty classes (24×32 images), docs/screens/<viewport>-twenty-label.png.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from study.testing.synthetic import write_stimulus_set  # first: once tests/ is on the path, tests/study would shadow study

REPO = Path(__file__).resolve().parent.parent
sys.path += [str(REPO / "tests"), str(REPO / "tests" / "study")]  # the test harness's helpers

from conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from pagestates import STATES, VIEWPORTS, Walk, create_studies, fill, new_page, wait_ready, walk  # noqa: E402
from playwright.sync_api import Page, sync_playwright  # noqa: E402
from study.config import parse_config  # noqa: E402
from study.db import db  # noqa: E402
from studyhelp import BASE_CONFIG, SHAPE_WORDS, SHAPES, app_with_study, study_server, write_twenty  # noqa: E402

OUT = REPO / "docs" / "screens"


CLASS_STATES = ("classes-label", "classes-rate")


def create_class_study(database_url: str, directory: Path) -> None:
    stimuli = write_stimulus_set(directory, sources=6, classes=SHAPES, rgb=True)
    config = parse_config({**BASE_CONFIG, **SHAPE_WORDS, "id": "shapes", "title": "Shape study", "target_participants": 100})
    with app_with_study(database_url, config, stimuli).app_context():
        db.engine.dispose()  # the server must not share this process's connections


def class_states(page: Page, base: str, viewport: str) -> None:
    """The named-class study's label question, then (after a click on a name) its rating question."""
    page.goto(f"{base}/study/shapes?participant=screens-{viewport}")
    page.click("text=I agree to take part")
    page.click("text=Start the practice images")
    for index, state in enumerate(CLASS_STATES):
        wait_ready(page, index)
        page.screenshot(path=OUT / f"{viewport}-{state}.png", animations="disabled", caret="hide")
        page.locator(f"#{'label' if index == 0 else 'rate'}-buttons button").nth(1).click()


def twenty_label(page: Page, base: str, viewport: str) -> None:
    """The twenty-class study's first question (it has no practice), with a class number typed."""
    page.goto(f"{base}/study/twenty?participant=screens-{viewport}")
    page.click("text=I agree to take part")
    page.click("form button[type=submit]")
    wait_ready(page, 0)
    page.keyboard.type("12")
    page.screenshot(path=OUT / f"{viewport}-twenty-label.png", animations="disabled", caret="hide")


def main() -> int:
    if not Path(CHROMIUM).exists():
        print(f"error: {CHROMIUM} not found; run `make system-deps` first", file=sys.stderr)
        return 1
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="screens-") as tmp, sync_playwright() as pw:
        url = f"sqlite:///{tmp}/study.sqlite"
        create_studies(url, write_stimulus_set(Path(tmp) / "stimuli"), write_twenty(Path(tmp) / "twenty"))
        create_class_study(url, Path(tmp) / "shapes")
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        with study_server(url, None, None) as (base, _proc):
            fill(base)
            for viewport in VIEWPORTS:
                page = new_page(browser, viewport)
                shot = []
                for state in walk(page, base, Walk()):
                    page.screenshot(path=OUT / f"{viewport}-{state}.png", animations="disabled", caret="hide")
                    shot.append(state)
                page.context.close()
                assert shot == list(STATES), shot
                page = new_page(browser, viewport)
                class_states(page, base, viewport)
                page.context.close()
                page = new_page(browser, viewport)
                twenty_label(page, base, viewport)
                page.context.close()
        browser.close()
    print(f"wrote {(len(STATES) + len(CLASS_STATES) + 1) * len(VIEWPORTS)} screenshots to {OUT.relative_to(REPO)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
