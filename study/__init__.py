"""The study server: the participant's session and the researcher's side of a running study.

`study` owns the database (Flask-SQLAlchemy; SQLite by default, PostgreSQL by URL; schema under
Alembic migrations in study/migrations), importing a stimulus set that follows
`contracts/stimulus_manifest.v1.schema.json`, the participant pages (Jinja templates in
study/templates, one vanilla-JS module in study/static), balanced assignment of stimulus
lists, and storing every answer the moment it is given. The `responses_long` view and its CSV
export (`contracts/response_row.v1.schema.json`) are all it promises to the analysis. Start it
with `flask --app study run` or `gunicorn 'study:create_app()'`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flask import Flask
from flask_migrate import Migrate
from sqlalchemy.engine import make_url
from werkzeug.middleware.proxy_fix import ProxyFix

from study.db import configure_engine, db
from study.security import from_proxies

MIGRATIONS = Path(__file__).with_name("migrations")
DEFAULT_SECRET = "dev-only-change-me"


def _create_private(database_url: str) -> None:
    """Create a new SQLite file readable by its owner only (SQLite gives its -wal and -shm files
    the same mode); the participants' data is nobody else's business on a shared machine."""
    path = make_url(database_url).database if database_url.startswith("sqlite") else None
    if path and path != ":memory:" and not Path(path).exists():
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=True)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    app.config.from_mapping(
        SECRET_KEY=os.environ.get("STUDY_SECRET_KEY", DEFAULT_SECRET),
        SQLALCHEMY_DATABASE_URI=os.environ.get(
            "STUDY_DATABASE_URL", f"sqlite:///{Path(app.instance_path) / 'study.sqlite'}"
        ),
        # An answer is a few hundred bytes; refuse anything much larger before parsing it.
        MAX_CONTENT_LENGTH=64 * 1024,
    )
    if test_config:
        app.config.update(test_config)
    if os.environ.get("STUDY_ENV") == "production" and app.config["SECRET_KEY"] in (DEFAULT_SECRET, ""):
        # Session tokens, CSRF tokens and participant hashes all derive from this key.
        raise RuntimeError("STUDY_ENV=production needs STUDY_SECRET_KEY set to a long random value "
                           "(python -c 'import secrets; print(secrets.token_hex(32))')")

    proxies = int(os.environ.get("STUDY_TRUSTED_PROXIES", "0"))
    if proxies:
        # Behind nginx: the client's address (the rate limits count by it) and scheme come from
        # the X-Forwarded-For/-Proto headers the trusted proxies set, and only on requests from
        # the proxies' own addresses. The host is never taken from a header a client can send.
        addresses = os.environ.get("STUDY_PROXY_ADDRESSES", "127.0.0.1,::1").split(",")
        app.wsgi_app = from_proxies(app.wsgi_app, ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=0),
                                    {a.strip() for a in addresses if a.strip()})

    _create_private(app.config["SQLALCHEMY_DATABASE_URI"])
    db.init_app(app)
    Migrate(app, db, directory=str(MIGRATIONS))
    with app.app_context():
        configure_engine(db.engine)

    from study import api, arrivals, auth, cli, dashboard, health, heartbeat, participant, views
    from study.security import install_security_headers

    app.register_blueprint(views.bp)
    app.register_blueprint(participant.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(heartbeat.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(dashboard.bp)
    app.register_blueprint(arrivals.bp)
    install_security_headers(app)
    health.install(app)
    cli.register(app)
    return app
