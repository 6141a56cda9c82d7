"""The dashboard's arrivals page: who was refused a session, when and why (study.admission).

Kept apart from study.dashboard so that the two pages change independently; it uses the same
login and roles (a viewer of the study may see it).
"""
from __future__ import annotations

from flask import Blueprint, jsonify, render_template, request

from study.admission import REFUSALS, refused_arrivals
from study.auth import admin_csrf, admin_required, current_admin
from study.dashboard import get_study

bp = Blueprint("arrivals", __name__, url_prefix="/admin")


@bp.get("/study/<slug>/arrivals")
@admin_required
def refused(slug: str):
    study = get_study(slug)
    rows = refused_arrivals(study)
    if request.args.get("format") == "json":
        return jsonify(study=study.slug, refused=rows)
    return render_template("admin/arrivals.html", study=study, rows=rows, reasons=REFUSALS, admin=current_admin(),
                           csrf=admin_csrf())
