"""`flask --app study …` commands."""
import click
from flask import Flask

from study.db import db


@click.command("init-db")
def init_db() -> None:
    """Create the database tables (idempotent)."""
    db.create_all()
    click.echo(f"database ready: {db.engine.url.render_as_string(hide_password=True)}")


def register(app: Flask) -> None:
    app.cli.add_command(init_db)
