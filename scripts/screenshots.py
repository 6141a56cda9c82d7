"""`make screenshots`: a PNG of every participant page state at desktop and phone size.

Serves a throwaway study (synthetic random-pixel images, so no engine run is needed) with
gunicorn, walks Chromium through it with the browser tests' own state driver
(tests/study/pagestates.py) and writes docs/screens/<viewport>-<state>.png.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from study.testing.synthetic import write_stimulus_set  # first: once tests/ is on the path, tests/study would shadow study

REPO = Path(__file__).resolve().parent.parent
sys.path += [str(REPO / "tests"), str(REPO / "tests" / "study")]  # the test harness's helpers

from conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from pagestates import STATES, VIEWPORTS, Walk, create_studies, fill, new_page, walk  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402
from studyhelp import study_server  # noqa: E402

OUT = REPO / "docs" / "screens"


def main() -> int:
    if not Path(CHROMIUM).exists():
        print(f"error: {CHROMIUM} not found; run `make system-deps` first", file=sys.stderr)
        return 1
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="screens-") as tmp, sync_playwright() as pw:
        url = f"sqlite:///{tmp}/study.sqlite"
        create_studies(url, write_stimulus_set(Path(tmp) / "stimuli"))
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
        browser.close()
    print(f"wrote {len(STATES) * len(VIEWPORTS)} screenshots to {OUT.relative_to(REPO)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
