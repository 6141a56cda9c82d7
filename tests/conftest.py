"""Shared test harness: a throwaway PostgreSQL server, the app under gunicorn, and Chromium.

All three are the real programs (Debian's postgresql and chromium, gunicorn from the venv);
`make test` installs what is missing before pytest starts. Starting the servers is
study.testing.servers, which the benchmarks and the demo use too.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

# free_port, stop_group and wait_for_http are the harness's own, imported here for the helpers
# that take them from conftest (slurmhelp, studyhelp).
from study.testing.servers import (BIN as VENV_BIN, ServerError, create_database, free_port, gunicorn, pg_command,  # noqa: F401
                                   stop_group, throwaway_postgres, wait_for_http)

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
# Without these, Chromium keeps calling out to Google's hosts, which this network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


# --- PostgreSQL ---------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL cluster in a temp dir on a loopback port; yields its base URL (no database)."""
    try:
        pg_command("initdb")
    except ServerError as exc:
        pytest.fail(f"{exc}: run `make test`")
    with throwaway_postgres() as url:
        yield url


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A fresh, empty database on the throwaway server, for one test."""
    return create_database(postgres_server)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Runs a test once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.sqlite'}"
    return request.getfixturevalue("postgres_url")


# --- the app under gunicorn ---------------------------------------------------------------------

@contextlib.contextmanager
def gunicorn_server(database_url: str, workers: int = 2, env: dict[str, str] | None = None) -> Iterator[str]:
    """Serve `study:create_app()` with gunicorn on a free loopback port; yields the base URL."""
    full_env = {**os.environ, "STUDY_DATABASE_URL": database_url, **(env or {})}
    subprocess.run([str(VENV_BIN / "flask"), "--app", "study", "init-db"], env=full_env, check=True, capture_output=True)
    with gunicorn(full_env, args=["--workers", str(workers)]) as (base, _proc):
        yield base


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[str]:
    with gunicorn_server(f"sqlite:///{tmp_path / 'study.sqlite'}") as base:
        yield base


# --- Chromium through Playwright ----------------------------------------------------------------

@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: run `make test` (it installs Debian's chromium)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    p = context.new_page()
    yield p
    context.close()
