"""Participant identity in Chromium: the MTurk iframe (a cross-site frame, whose cookies the
server does not count on) finds its session again by its assignment, and a second browser with
the same worker id and another assignment is turned away."""
from __future__ import annotations

import pytest

from conftest import CHROMIUM, CHROMIUM_ARGS
from studyhelp import stimset, study_server, write_config  # noqa: F401  (fixtures)

pytestmark = pytest.mark.browser
HIT = "workerId=A2BROWSER&assignmentId=ASSIGN-B1&hitId=HIT1&turkSubmitTo=https://workersandbox.mturk.com"


@pytest.fixture(scope="module")
def server(tmp_path_factory, stimset):
    tmp = tmp_path_factory.mktemp("security-browser")
    with study_server(f"sqlite:///{tmp / 'study.sqlite'}", write_config(tmp / "study.toml"), stimset) as (base, _proc):
        yield base


@pytest.fixture(scope="module")
def mturk_browser(browser):
    """Chromium that lets a public page frame a loopback one: here the study runs on 127.0.0.1,
    which its local-network checks refuse to a page from MTurk's host (a deployed study is public).
    Launched through the harness's Playwright (one per process)."""
    own = browser.browser_type.launch(executable_path=CHROMIUM, headless=True, args=[
        *CHROMIUM_ARGS, "--disable-features=LocalNetworkAccessChecks,PrivateNetworkAccessForNavigations"])
    yield own
    own.close()


def mturk_page(browser, base: str):
    """A page on MTurk's own host (served by Playwright) that frames the HIT as MTurk does."""
    context = browser.new_context()
    frame_html = f'<!doctype html><title>HIT</title><iframe src="{base}/study/test-study?{HIT}" width="900" height="900"></iframe>'
    context.route("https://workersandbox.mturk.com/**", lambda route: route.fulfill(body=frame_html, content_type="text/html"))
    page = context.new_page()
    page.goto("https://workersandbox.mturk.com/projects/HIT1/tasks")
    return context, page


def test_the_mturk_iframe_resumes_by_its_assignment_and_another_assignment_is_refused(server, mturk_browser):
    browser = mturk_browser
    context, page = mturk_page(browser, server)
    frame = page.frame_locator("iframe")
    frame.locator("text=I agree to take part").click()
    frame.locator("text=Start the practice images").click()
    for index in range(2):
        trial = frame.locator(f'#trial[data-index="{index}"][data-ready="true"]')
        trial.wait_for(timeout=15000)
        frame.locator(f"#{trial.get_attribute('data-task')}-buttons button >> nth=1").click()
    frame.locator('#trial[data-index="2"][data-ready="true"]').wait_for(timeout=15000)
    session_url = page.frames[1].url

    page.reload()  # the worker reopens the HIT: the same session, at the first unanswered trial
    page.frame_locator("iframe").locator('#trial[data-index="2"][data-ready="true"]').wait_for(timeout=15000)
    assert page.frames[1].url == session_url
    context.close()

    other = browser.new_context().new_page()  # another browser, the same worker, a made-up assignment
    other.goto(f"{server}/study/test-study?{HIT.replace('ASSIGN-B1', 'ASSIGN-FORGED')}")
    assert "already open in another browser" in other.locator("#message").inner_text()
    other.context.close()
