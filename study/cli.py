"""`flask --app study …` commands: init-db, create-study, open, close, export, simulate, backup,
create-admin, grant, payments, delete-participant, purge-panel-ids.

User mistakes (a bad config, a broken stimulus set, a duplicate study id) end with a short
`Error: …` message and exit status 1, never a traceback.

A command acts for the server's operator (who holds the database and the secret key anyway;
audit actor `cli`) unless `--as USER` names the researcher it acts for: then it runs only if
USER holds the study role it needs, the dashboard's own rule (analyst: export; owner: payments,
open, close, delete-participant, purge-panel-ids, grant), and the audit log names `cli:USER`. A
wrapper that lets researchers run commands (sudo) passes `--as "$SUDO_USER"`.
"""
from __future__ import annotations

import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import click
import flask_migrate
from flask import Flask
from flask.cli import with_appcontext
from sqlalchemy import inspect, select

from contracts import ContractError
from study.config import ConfigError, config_from_dict, load_config
from study.db import db, utcnow
from study.design import DesignError
from study.models import CONDITIONS, RESEARCHER_ROLES, Study
from study.security import session_mark
from study.testing.driver import DEFAULT_RETRY_FOR
from study.simulate import AnswerModel, simulate, study_stimuli, summary
from study.auth import AccountError, act_for, create_admin, grant
from study.backup import BackupError, backup, default_path
from study.export import Selection, csv_chunks, export_all, export_psychds, left_out_counts, write_atomically
from study.lifecycle import LifecycleError, close_study, find_study, open_study
from study.payments import COLUMNS as PAYMENT_COLUMNS, payment_rows
from study.privacy import delete_participant, purge_panel_ids
from study.studies import StudyExists, create_study


def as_option(command):
    return click.option("--as", "as_user", default=None, metavar="USER",
                        help="Act for this researcher: refused unless USER holds the study role this needs; logged as cli:USER.")(command)


def _actor(study: Study, as_user: str | None, needed: str) -> str:
    """`cli` for the operator, `cli:USER` once USER's role on the study allows the command."""
    if as_user is None:
        return "cli"
    try:
        return act_for(study, as_user, needed)
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None


def _study(slug: str) -> Study:
    try:
        return find_study(slug)
    except LifecycleError as exc:
        raise click.ClickException(str(exc)) from None


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
@click.option("--owner", default=None, help="Researcher who owns the study on the dashboard (see also `grant`).")
def create_study_command(config: Path, stimuli_dir: Path, owner: str | None) -> None:
    """Create a study from a TOML CONFIG and a stimulus set; the study opens at once."""
    if not inspect(db.engine).has_table(Study.__tablename__):  # a fresh database: its first query would be a traceback
        raise click.ClickException(f"the database {db.engine.url.render_as_string(hide_password=True)} has no study tables; "
                                   "run `flask --app study init-db` first")
    try:
        study, design = create_study(load_config(config), stimuli_dir, owner)
    except (ConfigError, ContractError, DesignError, StudyExists, AccountError) as exc:
        db.session.rollback()
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
@click.option("--study", "study_slug", default=None, help="Only this study (default: all).")
@click.option("--include-withdrawn", is_flag=True, help="Keep sessions whose participant withdrew.")
@click.option("--include-bots", is_flag=True, help="Keep simulated participants' sessions.")
@click.option("--include-pilots", is_flag=True, help="Keep pilot sessions.")
@click.option("--format", "fmt", type=click.Choice(["csv", "psych-ds"]), default="csv", show_default=True,
              help="csv: responses.csv, participants.csv, data_dictionary.csv; psych-ds: a Psych-DS dataset folder of the responses.")
@as_option
def export_command(out_dir: Path, study_slug: str | None, include_withdrawn: bool, include_bots: bool,
                   include_pilots: bool, fmt: str, as_user: str | None) -> None:
    """Write OUT/responses.csv (one row per answer), participants.csv and data_dictionary.csv,
    or with --format psych-ds a Psych-DS folder (dataset_description.json, data/study-<id>_data.csv)."""
    study = db.session.scalar(select(Study).where(Study.slug == study_slug)) if study_slug is not None else None
    if study_slug is not None and study is None:
        raise click.BadParameter(f"no study {study_slug!r} in this database", param_hint="--study")
    if as_user is not None:
        if study is None:
            raise click.UsageError("--as needs --study: a researcher's roles are per study")
        _actor(study, as_user, "analyst")
    selection = Selection(study_slug, include_withdrawn, include_bots, include_pilots)
    left_out = left_out_counts(selection)
    try:
        if fmt == "psych-ds":
            written = export_psychds(out_dir, selection)
        else:
            written = export_all(out_dir, selection)
    except OSError as exc:
        raise click.ClickException(f"cannot write to {out_dir}: {exc.strerror}") from None
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    if fmt == "psych-ds":
        click.echo(f"wrote {sum(written.values())} answers in {len(written)} data file(s) and dataset_description.json to {out_dir}")
    else:
        click.echo(f"wrote {written['responses.csv']} answers and {written['participants.csv']} sessions to {out_dir} "
                   "(responses.csv, participants.csv, data_dictionary.csv)")
    for reason, n in left_out.items():
        if n:
            click.echo(f"left out {n} answers of {reason.rstrip('s')} sessions (add --include-{reason} to keep them)")


def _per_condition(option: str, pairs: tuple[str, ...], lo: float, hi: float) -> dict[str, float]:
    """Parse repeated COND=VALUE options, checking the condition name and the value's range."""
    values: dict[str, float] = {}
    for pair in pairs:
        condition, _, value = pair.partition("=")
        if condition not in CONDITIONS:
            raise click.BadParameter(f"{pair!r}: the condition must be one of {', '.join(CONDITIONS)}", param_hint=option)
        try:
            values[condition] = float(value)
        except ValueError:
            raise click.BadParameter(f"{pair!r}: give COND=NUMBER", param_hint=option) from None
        if not lo <= values[condition] <= hi:
            raise click.BadParameter(f"{pair!r}: the value must be from {lo} to {hi}", param_hint=option)
    return values


def _default_study(slug: str | None) -> str:
    if slug:
        return slug
    slugs = db.session.scalars(select(Study.slug).where(Study.is_open)).all()
    if len(slugs) != 1:
        raise click.UsageError("give --study SLUG" + (f" (open studies: {', '.join(slugs)})" if slugs else ""))
    return slugs[0]


@click.command("simulate")
@with_appcontext
@click.option("--url", default="http://127.0.0.1:5000", show_default=True, help="Base URL of the running study server.")
@click.option("--study", "slug", default=None, help="Study id (default: the only open study in this database).")
@click.option("--participants", "-n", default=10, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--concurrency", default=8, show_default=True, type=click.IntRange(1, 512), help="Bots at once.")
@click.option("--seed", default=0, show_default=True, type=int, help="Fixes every bot's answers.")
@click.option("--accuracy", multiple=True, metavar="COND=P",
              help="Label accuracy for a condition (repeat per condition); other conditions at chance.")
@click.option("--rating", multiple=True, metavar="COND=MEAN",
              help="Mean legitimacy rating for a condition (repeat); other conditions uniform on the scale.")
@click.option("--rating-by-l2", type=(float, float), default=None, metavar="BASE SLOPE",
              help="Instead of --rating: an experimental image's mean rating is BASE + SLOPE × its L2 change from "
                   "its source (0..1 pixels), one rule for every condition.")
@click.option("--participant-sd", default=0.0, type=click.FloatRange(0, 10), help="Participant variability (logit / scale points).")
@click.option("--image-sd", default=0.0, type=click.FloatRange(0, 10), help="Image variability (logit / scale points).")
@click.option("--careless", default=0.0, type=click.FloatRange(0, 1), help="Share of bots answering at chance (failing catch trials).")
@click.option("--dropout", default=0.0, type=click.FloatRange(0, 1), help="Share of bots that abandon at a random trial.")
@click.option("--retry-for", default=DEFAULT_RETRY_FOR, show_default=True, type=click.FloatRange(0, 24 * 3600),
              help="Seconds a bot keeps retrying an unreachable server or a 5xx before it gives up.")
def simulate_command(url: str, slug: str | None, participants: int, concurrency: int, seed: int, accuracy: tuple[str, ...],
                     rating: tuple[str, ...], rating_by_l2: tuple[float, float] | None, participant_sd: float, image_sd: float, careless: float, dropout: float,
                     retry_for: float) -> None:
    """Drive simulated participants (flagged as bots) through a running study over HTTP.

    Run it with the server's STUDY_SECRET_KEY (it signs the bot flag) and, for per-condition
    effects, the server's STUDY_DATABASE_URL (it reads each image's condition from there).
    """
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise click.BadParameter("give the server's base URL, e.g. http://127.0.0.1:8000 (plain HTTP)", param_hint="--url")
    try:  # fail fast with a readable message instead of every bot retrying for half a minute
        urllib.request.urlopen(url.rstrip("/") + "/healthz", timeout=5).close()
    except OSError as exc:
        raise click.ClickException(f"no study server answers at {url} ({getattr(exc, 'reason', exc)})") from None
    slug = _default_study(slug)
    if rating and rating_by_l2:
        raise click.UsageError("give --rating or --rating-by-l2, not both")
    model = AnswerModel(_per_condition("--accuracy", accuracy, 0, 1), _per_condition("--rating", rating, -100, 100),
                        rating_by_l2, participant_sd, image_sd, careless, dropout)
    stimuli = study_stimuli(slug)
    if model.needs_conditions and not stimuli:
        raise click.ClickException(f"study {slug!r} is not in this app's database, so the bots cannot tell conditions "
                                   "apart: run with the server's STUDY_DATABASE_URL, or drop --accuracy/--rating/--rating-by-l2")
    # The bots talk HTTP only: hand this process's connection back now, so that a database restart
    # during the run cannot surface here (it once ended the command in a psycopg AdminShutdown).
    db.session.remove()
    db.engine.dispose()
    start = time.perf_counter()
    results = simulate(url.rstrip("/"), slug, participants, session_mark(slug, "bot"), model, stimuli, concurrency, seed,
                       retry_for)
    click.echo(summary(results, time.perf_counter() - start))
    failed = [r for r in results if r.outcome in ("error", "stranded")]
    if failed:
        hint = " (is STUDY_SECRET_KEY the server's?)" if "mark parameter" in failed[0].error else ""
        raise click.ClickException(f"{len(failed)} bot(s) did not finish; first: {failed[0].error}{hint}")


@click.command("open")
@with_appcontext
@click.argument("slug")
@as_option
def open_command(slug: str, as_user: str | None) -> None:
    """Open (or reopen) study SLUG to new participants, if it is unchanged since it was frozen."""
    study = _study(slug)
    try:
        open_study(study, _actor(study, as_user, "owner"))
    except LifecycleError as exc:
        raise click.ClickException(str(exc)) from None
    db.session.commit()
    click.echo(f"study {slug!r} is open (frozen sha256 {study.frozen_sha256})")


@click.command("close")
@with_appcontext
@click.argument("slug")
@as_option
def close_command(slug: str, as_user: str | None) -> None:
    """Close study SLUG: no new sessions; sessions already running may finish."""
    study = _study(slug)
    close_study(study, _actor(study, as_user, "owner"))
    db.session.commit()
    click.echo(f"study {slug!r} is closed to new participants")


@click.command("backup")
@with_appcontext
@click.option("--out", "out", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Backup file (default: instance/backups/study-<UTC time>.sqlite or .pgdump).")
def backup_command(out: Path | None) -> None:
    """Take a consistent online backup of the database (SQLite backup API, or pg_dump)."""
    from flask import current_app

    out = out or default_path(Path(current_app.instance_path) / "backups", db.engine.url)
    try:
        path = backup(db.engine.url, out)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"backup written to {path} ({path.stat().st_size} bytes)")


@click.command("create-admin")
@with_appcontext
@click.argument("username")
@click.password_option("--password", envvar="STUDY_ADMIN_PASSWORD",
                       help="Asked for when not given (or set STUDY_ADMIN_PASSWORD).")
def create_admin_command(username: str, password: str) -> None:
    """Create a researcher account for the dashboard, or reset its password."""
    try:
        create_admin(username, password)
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None
    db.session.commit()
    click.echo(f"researcher {username!r} can log in at /admin/login")


@click.command("payments")
@with_appcontext
@click.argument("slug")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="CSV file to write.")
@as_option
def payments_command(slug: str, out: Path, as_user: str | None) -> None:
    """Write the payment and bonus list of study SLUG (completed real sessions; same data, same file).
    It holds raw panel ids: for owners only."""
    study = _study(slug)
    _actor(study, as_user, "owner")
    try:
        rows = write_atomically(out, csv_chunks(PAYMENT_COLUMNS, payment_rows(study)))
    except OSError as exc:
        raise click.ClickException(f"cannot write {out}: {exc.strerror}") from None
    click.echo(f"wrote {rows} payments to {out}")


@click.command("delete-participant")
@with_appcontext
@click.argument("panel_id")
@click.option("--study", "slug", default=None, help="Only in this study (default: every study).")
@click.confirmation_option(prompt="Delete this participant's sessions and answers for good?")
@as_option
def delete_participant_command(panel_id: str, slug: str | None, as_user: str | None) -> None:
    """Delete every session and answer of the participant with PANEL_ID (Prolific id, MTurk
    worker id or link id), e.g. on a withdrawal-of-data request. The deletion is logged."""
    if as_user is not None and slug is None:
        raise click.UsageError("--as needs --study: a researcher's roles are per study")
    actor = _actor(_study(slug), as_user, "owner") if slug is not None else "cli"
    deleted = delete_participant(panel_id, actor, slug)
    db.session.commit()
    click.echo(f"deleted {deleted['sessions']} session(s) and {deleted['answers']} answer(s)")


@click.command("grant")
@with_appcontext
@click.argument("username")
@click.argument("slug")
@click.argument("role", type=click.Choice([*RESEARCHER_ROLES, "none"]))
@as_option
def grant_command(username: str, slug: str, role: str, as_user: str | None) -> None:
    """Give researcher USERNAME a ROLE on study SLUG (viewer, analyst, owner; none takes it away)."""
    study = _study(slug)
    try:
        grant(study, username, None if role == "none" else role, _actor(study, as_user, "owner"))
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None
    db.session.commit()
    click.echo(f"{username!r} is {'no longer on' if role == 'none' else f'{role} of'} study {slug!r}")


@click.command("purge-panel-ids")
@with_appcontext
@click.argument("slug")
@click.option("--older-than-days", type=click.IntRange(0), default=None,
              help="Default: the study's keep_panel_ids_days.")
@as_option
def purge_panel_ids_command(slug: str, older_than_days: int | None, as_user: str | None) -> None:
    """Forget the raw panel ids of SLUG's sessions that ended long enough ago (paid by then)."""
    study = _study(slug)
    actor = _actor(study, as_user, "owner")
    days = older_than_days if older_than_days is not None else config_from_dict(study.config).keep_panel_ids_days
    n = purge_panel_ids(study, days, actor, utcnow())
    db.session.commit()
    click.echo(f"forgot the panel ids of {n} session(s) that ended more than {days} day(s) ago")


def register(app: Flask) -> None:
    for command in (init_db, create_study_command, open_command, close_command, export_command, simulate_command,
                    backup_command, create_admin_command, payments_command, delete_participant_command, grant_command,
                    purge_panel_ids_command):
        app.cli.add_command(command)
