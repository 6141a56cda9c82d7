"""The study server: the participant's session and the researcher's side of a running study.

`study` owns the database (Flask-SQLAlchemy; SQLite by default, PostgreSQL by URL), importing a
stimulus set that follows `contracts/stimulus_manifest.v1.schema.json`, the participant pages
(templates in the top-level `templates/` folder), assignment of stimuli to participants, storing
every answer the moment it is given, panels (Prolific, MTurk, plain link), the dashboard and the
exports. The `responses_long` view and its CSV export (`contracts/response_row.v1.schema.json`)
are all it promises to the analysis. Start it with `flask --app study run` or
`gunicorn 'study:create_app()'`.
"""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

from flask import Flask

from study.db import db


def templates_dir() -> str:
    """The top-level templates/ folder, from a checkout (editable install) or a wheel alike."""
    return str(Path(str(resources.files("study_templates"))))


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=True, template_folder=templates_dir())
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    app.config.from_mapping(
        SECRET_KEY=os.environ.get("STUDY_SECRET_KEY", "dev-only-change-me"),
        SQLALCHEMY_DATABASE_URI=os.environ.get(
            "STUDY_DATABASE_URL", f"sqlite:///{Path(app.instance_path) / 'study.sqlite'}"
        ),
    )
    if test_config:
        app.config.update(test_config)

    db.init_app(app)

    from study import cli, views

    app.register_blueprint(views.bp)
    cli.register(app)
    return app
