"""Helpers and fixtures for the study tests, imported by the test modules (a conftest.py here
would shadow the harness's tests/conftest.py, which these build on)."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
import tomli_w

from study.synthetic import write_stimulus_set

from conftest import VENV_BIN, free_port, wait_for_http

BASE_CONFIG: dict[str, Any] = {
    "id": "test-study", "title": "Digit study (test)", "estimated_minutes": 5, "target_participants": 12,
    "trials_per_participant": 3, "tasks": ["label", "rate"], "catch_rate": 0.25, "practice_trials": 2, "lease_minutes": 30,
    "texts": {"consent": "Consent text.\n\nSecond paragraph.", "instructions": "Do the task.", "debrief": "Thanks."},
    "completion": {"code": "CODE-OK", "declined_code": "CODE-NO", "screened_out_code": "CODE-OUT"},
}


def write_config(path: Path, **overrides: Any) -> Path:
    path.write_text(tomli_w.dumps({**BASE_CONFIG, **overrides}))
    return path


@pytest.fixture(scope="session")
def stimset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 sources × normal/gradreg/clean, 3 practice and 4 catch images."""
    return write_stimulus_set(tmp_path_factory.mktemp("stimset"))


@pytest.fixture
def make_app(database_url: str, stimset: Path):
    """Build an app on a fresh database (both dialects) holding one study made from `config`."""
    import flask_migrate

    from study import create_app
    from study.config import parse_config
    from study.studies import create_study

    def make(**config: Any):
        app = create_app({"SQLALCHEMY_DATABASE_URI": database_url, "TESTING": True, "SECRET_KEY": "test-secret"})
        with app.app_context():
            flask_migrate.upgrade()
            create_study(parse_config({**BASE_CONFIG, **config}), stimset)
        return app

    return make


def flask_cli(database_url: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "STUDY_DATABASE_URL": database_url}
    result = subprocess.run([str(VENV_BIN / "flask"), "--app", "study", *args], env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(result.stdout + result.stderr)
    return result


@contextlib.contextmanager
def study_server(database_url: str, config_path: Path | None, stimset: Path | None, workers: int = 2,
                 port: int | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """gunicorn in its own process group, so a test can SIGKILL master and workers at once.
    With a config, the database is created and the study made first; without, it is reused."""
    env = {**os.environ, "STUDY_DATABASE_URL": database_url, "STUDY_SECRET_KEY": "test-secret"}
    if config_path is not None:
        flask_cli(database_url, "init-db")
        flask_cli(database_url, "create-study", str(config_path), "--stimuli", str(stimset))
    port = port or free_port()
    proc = subprocess.Popen(
        [str(VENV_BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "study:create_app()"],
        env=env, stdout=subprocess.DEVNULL, stderr=open(os.environ.get("STUDY_TEST_LOG", os.devnull), "a"), start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(base + "/healthz", proc=proc)
        yield base, proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
