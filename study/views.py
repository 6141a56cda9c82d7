"""Pages and endpoints served to everyone (health check, landing page)."""
from flask import Blueprint, jsonify, render_template
from sqlalchemy import text

from study.db import db

bp = Blueprint("site", __name__)


@bp.get("/")
def index():
    return render_template("index.html")


@bp.get("/healthz")
def healthz():
    """Liveness plus a round trip to the database, so a deploy check catches a bad DATABASE_URL."""
    db.session.execute(text("SELECT 1"))
    return jsonify(status="ok", database=db.engine.dialect.name)
