"""Pages and endpoints served to everyone (health check, landing page) and the error pages."""
from flask import Blueprint, jsonify, render_template
from sqlalchemy import select, text
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from study.db import db
from study.health import write_problem
from study.models import Study
from study.texts import Workload, fill, study_workload

bp = Blueprint("site", __name__)


@bp.get("/")
def index():
    try:
        studies = db.session.scalars(select(Study).where(Study.is_open).order_by(Study.id)).all()
    except SQLAlchemyError:
        # Before `init-db` there are no tables; the landing page still answers (/healthz is the
        # check that reports database trouble).
        db.session.rollback()
        studies = []
    return render_template("index.html", studies=studies)


@bp.get("/healthz")
def healthz():
    """Readiness: a round trip to the database (a deploy check catches a bad DATABASE_URL) and a
    one-row write (study.health), so a database that takes no writes answers 503, not "ok"."""
    db.session.execute(text("SELECT 1"))
    problem = write_problem()
    if problem:
        return jsonify(status="unavailable", database=db.engine.dialect.name, writes=problem), 503
    return jsonify(status="ok", database=db.engine.dialect.name, writes="ok")


@bp.app_template_filter("paragraphs")
def paragraphs(text_block: str) -> list[str]:
    """Config texts are plain text; blank lines separate paragraphs (rendered autoescaped)."""
    return [p.strip() for p in text_block.strip().split("\n\n") if p.strip()]


# The numbers a participant of a study is asked for, for the texts that describe them.
bp.add_app_template_global(study_workload)


@bp.app_template_filter("fill")
def fill_placeholders(text_block: str, numbers: Workload) -> str:
    return fill(text_block, numbers)


@bp.app_errorhandler(HTTPException)
def error_page(exc: HTTPException):
    """Readable pages for every 4xx/5xx, in plain words."""
    return render_template("message.html", title=exc.name, message=exc.description), exc.code
