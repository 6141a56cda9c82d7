"""Helpers and fixtures for the study tests, imported by the test modules (a conftest.py here
would shadow the harness's tests/conftest.py, which these build on)."""
from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path
from typing import Any, Iterator

import flask_migrate
import pytest
import tomli_w
from flask import Flask

from study import create_app
from study.config import StudyConfig, load_config, parse_config
from study.db import db
from study.studies import create_study
from study.testing.servers import gunicorn
from study.testing.synthetic import write_stimulus_set

BASE_CONFIG: dict[str, Any] = {
    "id": "test-study", "title": "Digit study (test)", "target_participants": 12,
    "trials_per_participant": 3, "tasks": ["label", "rate"], "catch_rate": 0.25, "practice_trials": 2, "lease_minutes": 30,
    "texts": {"consent": "Consent text.\n\nSecond paragraph.", "instructions": "Do the task.", "debrief": "Thanks."},
    "completion": {"code": "CODE-OK", "declined_code": "CODE-NO", "screened_out_code": "CODE-OUT"},
    # The tests' participants all come from 127.0.0.1 at machine speed, most by the plain link:
    # admission control and the too-fast screening have their own tests (test_security*.py).
    "admission": {"anonymous_link": True, "new_sessions_per_address_per_hour": 10_000, "new_sessions_per_minute": 10_000},
    "min_seconds_per_answer": 0,
}


def write_config(path: Path, **overrides: Any) -> Path:
    path.write_text(tomli_w.dumps({**BASE_CONFIG, **overrides}))
    return path


@pytest.fixture(scope="session")
def stimset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 sources × normal/gradreg/clean, 3 practice and 4 catch images."""
    return write_stimulus_set(tmp_path_factory.mktemp("stimset"))


SHAPES = ("circle", "square", "triangle")
# A shapes study's own words: the rating question names the target class by {class}.
SHAPE_WORDS: dict[str, Any] = {"label": {"question": "Which of these is it?"},
                               "rate": {"question": "How much does this look like a genuine {class}?"}}


@pytest.fixture(scope="session")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-class RGB set with class names (SHAPES): 6 sources × normal/gradreg/clean, 3 practice, 4 catch."""
    return write_stimulus_set(tmp_path_factory.mktemp("shapes"), sources=6, classes=SHAPES, rgb=True)


# More classes than keys 0-9 (names as in CIFAR-100): the page's buttons shrink to fit, numbers are typed.
TWENTY = ("apple", "aquarium fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle", "bowl", "boy",
          "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle")
TALL = (32, 24)  # (height, width) of the twenty-class set's images: taller than wide, so letterboxed


def write_twenty(directory: Path) -> Path:
    """A 20-class grayscale set of 24-wide × 32-tall images: 20 sources × normal/gradreg/clean, 3 practice, 4 catch."""
    return write_stimulus_set(directory, sources=20, classes=TWENTY, size=TALL)


@pytest.fixture(scope="session")
def twenty(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_twenty(tmp_path_factory.mktemp("twenty"))


def app_with_study(database_url: str, config: StudyConfig, stimset: Path) -> Flask:
    """Migrate a database and create one study in it, in-process (what `flask init-db` and
    `flask create-study` do, without two interpreter start-ups)."""
    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url, "TESTING": True, "SECRET_KEY": "test-secret"})
    with app.app_context():
        flask_migrate.upgrade()
        create_study(config, stimset)
    return app


@pytest.fixture
def make_app(database_url: str, stimset: Path):
    """Build an app on a fresh database (both dialects) holding one study made from `config`."""
    return lambda **config: app_with_study(database_url, parse_config({**BASE_CONFIG, **config}), stimset)


@contextlib.contextmanager
def study_server(database_url: str, config_path: Path | None, stimset: Path | None, workers: int = 2,
                 port: int | None = None, env: dict[str, str] | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """gunicorn in its own process group, so a test can SIGKILL master and workers at once.
    With a config, the database is created and the study made first; without, it is reused.
    `env` adds to the server's environment (e.g. STUDY_ENV=production)."""
    env = {**os.environ, "STUDY_DATABASE_URL": database_url, "STUDY_SECRET_KEY": "test-secret", **(env or {})}
    if config_path is not None:
        with app_with_study(database_url, load_config(config_path), stimset).app_context():
            db.engine.dispose()  # the server must not share this process's connections
    with open(os.environ.get("STUDY_TEST_LOG", os.devnull), "a") as log:
        with gunicorn(env, port, ["--workers", str(workers)], stderr=log) as served:
            yield served
