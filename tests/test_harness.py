"""Each harness fixture proven once against the real program."""
import json
import urllib.request

import pytest
from sqlalchemy import create_engine, text


@pytest.mark.postgres
def test_postgres_fixture_runs_a_real_server(postgres_url):
    engine = create_engine(postgres_url)
    with engine.connect() as conn:
        version = conn.execute(text("SHOW server_version")).scalar()
        conn.execute(text("CREATE TABLE t (x int)"))
        conn.execute(text("INSERT INTO t VALUES (1), (2)"))
        assert conn.execute(text("SELECT sum(x) FROM t")).scalar() == 3
    engine.dispose()
    assert int(version.split(".")[0]) >= 13


def test_app_serves_under_gunicorn_on_each_database(database_url):
    from conftest import gunicorn_server

    with gunicorn_server(database_url) as base:
        with urllib.request.urlopen(base + "/healthz") as resp:
            body = json.load(resp)
    assert body == {"status": "ok", "database": database_url.split(":")[0].split("+")[0], "writes": "ok"}


@pytest.mark.browser
def test_chromium_renders_the_landing_page(live_server, page):
    page.goto(live_server + "/")
    assert page.locator("h1").inner_text() == "Digit study"
    assert "No study is open" in page.locator("#status").inner_text()
