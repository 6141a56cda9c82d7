"""The dashboard in Chromium: an anonymous visitor gets the login page and no data; a researcher
logs in, watches bots fill the study in, and downloads responses.csv with one row per answer; the
default study's dashboard fits one screen, and its tables sort and page."""
from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

import contracts
from study.config import DEFAULT_CONFIG, load_config
from study.db import db
from study.testing.driver import Participant
from study.testing.synthetic import write_stimulus_set
from studyhelp import app_with_study, stimset, study_server, write_config  # noqa: F401  (fixtures)
from test_browser import serious_violations

pytestmark = pytest.mark.browser
PASSWORD = "correct horse battery"
BOTS = 6


def test_login_watch_bots_and_export(page, stimset, tmp_path):
    from study import create_app
    from study.security import session_mark
    from study.simulate import simulate

    url = f"sqlite:///{tmp_path / 'study.sqlite'}"
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "test-secret"})
    with study_server(url, write_config(tmp_path / "study.toml"), stimset) as (base, _proc):
        assert app.test_cli_runner().invoke(args=["create-admin", "ada", "--password", PASSWORD]).exit_code == 0
        assert app.test_cli_runner().invoke(args=["grant", "ada", "test-study", "owner"]).exit_code == 0

        page.goto(f"{base}/admin/study/test-study/export/responses.csv?include=bots")
        assert page.locator("h1").inner_text() == "Researcher login"  # anonymous: the login page, no data
        assert "study_id" not in page.content() and serious_violations(page) == []

        page.fill("#username", "ada")
        page.fill("#password", "wrong password!")
        page.click("button[type=submit]")
        assert "Wrong user name or password" in page.locator("#message").inner_text()
        page.fill("#username", "ada")
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.goto(f"{base}/admin/")
        page.click("text=test-study")
        page.click("text=show all sessions")
        assert page.locator('[data-state="completed"]').inner_text() == "0"

        with app.app_context():
            results = simulate(base, "test-study", BOTS, session_mark("test-study", "bot"), concurrency=3)
        assert [r.outcome for r in results] == ["completed"] * BOTS
        page.reload()
        page.uncheck("#auto-refresh")  # no reload of its own in the middle of the download below
        assert page.locator('[data-state="completed"]').inner_text() == str(BOTS)
        assert serious_violations(page) == []
        assert page.locator("#accuracy svg circle.dot").count() == 3  # the stimulus set's conditions

        with page.expect_download() as download:
            page.click("#exports li:first-child >> text=with withdrawn, bot and pilot sessions")
        frame = pd.read_csv(download.value.path())
    assert list(frame.columns) == contracts.response_columns()
    assert len(frame) == sum(len(r.answers) for r in results) and frame["is_bot"].all()
    contracts.validate_responses_frame(frame)


def test_the_default_study_dashboard_fits_one_screen_and_its_tables_sort_and_page(browser, tmp_path):
    """The default study's shape (six defenses and clean controls on 70 sources: 7 lists, 500
    stimuli) with 24 sessions, 2 of them complete: every chart of the summary is on the first
    1280×800 screen, the page is shorter than 3,000 px, the tables sort and page by keyboard, and
    axe finds nothing serious."""
    stimuli = write_stimulus_set(tmp_path / "set", sources=70, practice=4, catch=6, conditions=(
        "normal", "adversarial", "distilled", "gradreg", "pgd-adversarial", "trades", "clean"))  # engine/stimulus_design.toml
    url = f"sqlite:///{tmp_path / 'study.sqlite'}"
    # All 24 bots arrive from one address within a second: admission limits and the too-fast
    # screening (tested in test_security*.py) would turn them away.
    config = load_config(DEFAULT_CONFIG)
    config = dataclasses.replace(config, min_seconds_per_answer=0.0, admission=dataclasses.replace(
        config.admission, anonymous_link=True, new_sessions_per_address_per_hour=10_000, new_sessions_per_minute=10_000))
    app = app_with_study(url, config, stimuli)
    for i in range(24):
        bot = Participant("http://test", "digits-demo", params={"participant": f"p{i}"}, client=app.test_client(), seed=i)
        if i < 2:
            bot.run()
        else:
            bot.start()
    assert app.test_cli_runner().invoke(args=["create-admin", "ada", "--password", PASSWORD]).exit_code == 0
    assert app.test_cli_runner().invoke(args=["grant", "ada", "digits-demo", "viewer"]).exit_code == 0
    with app.app_context():
        db.engine.dispose()
    with study_server(url, None, None) as (base, _proc):
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        page.goto(f"{base}/admin/login")
        page.fill("#username", "ada")
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.goto(f"{base}/admin/study/digits-demo")
        page.uncheck("#auto-refresh")
        assert page.locator('[data-state="completed"]').inner_text() == "2"
        bottoms = page.evaluate("[...document.querySelectorAll('#summary > section')].map((s) => s.getBoundingClientRect().bottom)")
        assert len(bottoms) == 6 and max(bottoms) <= 800, bottoms
        assert page.evaluate("document.documentElement.scrollHeight") < 3000
        names = page.locator("#accuracy svg text.label").all_text_contents()
        assert names == ["normal", "adversarial", "distilled", "gradreg", "pgd-adversarial", "trades", "clean"], names
        assert "each list's share of the target (3.4)" in page.locator("#lists").inner_text()  # 24 / 7, as people write it
        assert page.locator("#lists svg rect.bar:not(.extra)").count() == 7 and page.locator("#accuracy svg circle.dot").count() == 7
        assert serious_violations(page) == []

        page.focus("nav.tables a >> nth=0")  # the stimulus table, by keyboard
        page.keyboard.press("Enter")
        page.wait_for_selector("h1:text('Answers per stimulus')")
        assert page.locator("#stimuli tbody tr").count() == 50 and page.locator("nav.pages a").count() == 9  # 10 pages: the 9 others
        heading = page.locator("#stimuli th a", has_text="Label answers")
        heading.focus()
        page.keyboard.press("Enter")  # ascending
        page.locator("#stimuli th a", has_text="Label answers").click()  # descending
        counts = [int(t) for t in page.locator("#stimuli tbody td:nth-child(4)").all_inner_texts()]
        assert counts == sorted(counts, reverse=True) and counts[0] > 0
        page.locator("nav.pages a", has_text="2").click()
        where = page.url
        page.reload()
        assert page.url == where and "sort=-label" in where and "page=2" in where
        assert page.locator("[aria-current=page]").inner_text() == "2" and serious_violations(page) == []
        context.close()
