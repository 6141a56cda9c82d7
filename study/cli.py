"""`flask --app study …` commands: init-db, create-study, export.

User mistakes (a bad config, a broken stimulus set, a duplicate study id) end with a short
`Error: …` message and exit status 1, never a traceback.
"""
from __future__ import annotations

from pathlib import Path

import click
import flask_migrate
from flask import Flask
from flask.cli import with_appcontext

from contracts import ContractError
from study.config import ConfigError, load_config
from study.db import db
from study.design import DesignError
from study.responses import export_csv
from study.studies import StudyExists, create_study


@click.command("init-db")
@with_appcontext
def init_db() -> None:
    """Create or upgrade the database schema to the latest migration (idempotent)."""
    flask_migrate.upgrade()
    click.echo(f"database ready: {db.engine.url.render_as_string(hide_password=True)}")


@click.command("create-study")
@with_appcontext
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--stimuli", "stimuli_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Stimulus set directory: manifest.json plus images/.")
def create_study_command(config: Path, stimuli_dir: Path) -> None:
    """Create a study from a TOML CONFIG and a stimulus set; the study opens at once."""
    try:
        study, design = create_study(load_config(config), stimuli_dir)
    except (ConfigError, ContractError, DesignError, StudyExists) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"study {study.slug!r} created: {len(design.lists)} lists of {len(design.lists[0])} images "
               f"({', '.join(design.conditions)}), {len(design.practice)} practice and {len(design.catch)} catch images; "
               f"target {study.target_participants} participants")
    if design.unused_sources:
        click.echo(f"note: {len(design.unused_sources)} source(s) left over after cutting lists are not shown: "
                   f"{', '.join(design.unused_sources[:10])}")
    click.echo(f"participants start at /study/{study.slug}")


@click.command("export")
@with_appcontext
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output directory.")
@click.option("--study", "study_slug", default=None, help="Only this study's answers (default: all).")
def export_command(out_dir: Path, study_slug: str | None) -> None:
    """Stream the responses_long view to OUT/responses.csv (one row per answer)."""
    path, count = export_csv(out_dir, study_slug)
    click.echo(f"wrote {count} answers to {path}")


def register(app: Flask) -> None:
    for command in (init_db, create_study_command, export_command):
        app.cli.add_command(command)
