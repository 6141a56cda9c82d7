"""The dashboard in Chromium: an anonymous visitor gets the login page and no data; a researcher
logs in, watches bots fill the study in, and downloads responses.csv with one row per answer."""
from __future__ import annotations

import pandas as pd
import pytest

import contracts
from studyhelp import stimset, study_server, write_config  # noqa: F401  (fixtures)
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
        assert int(page.locator("#per-condition tbody tr td:nth-child(3)").first.inner_text()) > 0

        with page.expect_download() as download:
            page.click("#exports li:first-child >> text=with withdrawn, bot and pilot sessions")
        frame = pd.read_csv(download.value.path())
    assert list(frame.columns) == contracts.response_columns()
    assert len(frame) == sum(len(r.answers) for r in results) and frame["is_bot"].all()
    contracts.validate_responses_frame(frame)
