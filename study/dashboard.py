"""The researcher dashboard (/admin, login required): a study's live progress, its links per
panel, one-click exports, open/close, and deleting a participant's data.

Progress is computed by a few aggregate queries per page view; the page reloads itself every
15 s, and /admin/study/<slug>/progress.json serves the same numbers to scripts. By default it
counts real participants only; `?sessions=all` adds bots and pilots (e.g. to watch a
simulation). Every POST checks the researcher's CSRF token; GETs never change anything.
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, jsonify, redirect, render_template, request, stream_with_context, url_for
from sqlalchemy import and_, case, func, select

from study.auth import admin_csrf, admin_required, check_admin_csrf, current_admin, current_user, require_role
from study.db import begin_write, db, utcnow
from study.export import EXPORTS, Selection, csv_chunks, dictionary_csv
from study.lifecycle import LifecycleError, close_study, open_study
from study.models import ACTIVE_STATES, STATES, Answer, AssignmentList, ParticipantSession, Stimulus, Study, StudyRole
from study.payments import COLUMNS as PAYMENT_COLUMNS, payment_rows
from study.privacy import delete_participant
from study.security import session_mark

bp = Blueprint("dashboard", __name__, url_prefix="/admin")

TOO_FAST_MS = 250  # answers faster than this are hardly read
TOO_FAST_SHARE = 0.3  # sessions with more than this share of such answers are flagged
FUNNEL = ("consented", "assigned", "instructed", "in_task", "completed")


def get_study(slug: str, needed: str = "viewer") -> Study:
    """The study, if the researcher holds at least the `needed` role on it (403 otherwise)."""
    study = db.session.scalar(select(Study).where(Study.slug == slug))
    if study is None:
        abort(404, f"There is no study {slug!r}.")
    require_role(study, needed)
    return study


def _kinds(all_sessions: bool) -> list:
    ps = ParticipantSession
    return [] if all_sessions else [~ps.is_bot, ~ps.is_pilot]


def progress(study: Study, all_sessions: bool) -> dict[str, Any]:
    """Everything the dashboard shows about a running study, as plain data."""
    ps, now = ParticipantSession, utcnow()
    kinds = [ps.study_id == study.id, *_kinds(all_sessions)]
    by_state = dict(db.session.execute(select(ps.state, func.count()).where(*kinds).group_by(ps.state)).all())
    funnel = db.session.execute(select(*[func.count(getattr(ps, f"{s}_at")) for s in FUNNEL]).where(*kinds)).one()
    answers = select(Answer).join(ps, ps.id == Answer.session_id).where(*kinds).subquery()
    per_condition = db.session.execute(
        select(Stimulus.condition, answers.c.task, func.count()).join(answers, answers.c.stimulus_id == Stimulus.id)
        .where(answers.c.block == "main", ~answers.c.is_catch).group_by(Stimulus.condition, answers.c.task)
        .order_by(Stimulus.condition, answers.c.task)).all()
    per_stimulus = db.session.execute(
        select(Stimulus.key, Stimulus.condition, Stimulus.source_id,
               func.count(case((answers.c.task == "label", 1))), func.count(case((answers.c.task == "rate", 1))))
        .outerjoin(answers, answers.c.stimulus_id == Stimulus.id)
        .where(Stimulus.study_id == study.id, Stimulus.role == "experimental")
        .group_by(Stimulus.key, Stimulus.condition, Stimulus.source_id).order_by(Stimulus.key)).all()
    answered = (select(Answer.session_id, func.count().label("n"),
                       func.sum(case((Answer.rt_ms < TOO_FAST_MS, 1), else_=0)).label("fast"))
                .group_by(Answer.session_id).subquery())
    sessions = db.session.execute(
        select(ps.public_id, ps.state, ps.last_seen_at, ps.catch_failed, ps.is_bot, ps.is_pilot, AssignmentList.name,
               func.coalesce(answered.c.n, 0), func.coalesce(answered.c.fast, 0), ps.plan)
        .outerjoin(answered, answered.c.session_id == ps.id).outerjoin(AssignmentList, AssignmentList.id == ps.assignment_list_id)
        .where(*kinds, ps.state.in_((*ACTIVE_STATES, "timed_out", "completed", "screened_out")))
        .order_by(ps.last_seen_at.desc())).all()
    active, flagged = [], []
    for public_id, state, last_seen, catch_failed, is_bot, is_pilot, list_name, n, fast, plan in sessions:
        row = {"session_id": public_id, "state": state, "list": list_name, "answers": n, "trials": len(plan or []),
               "last_seen_at": last_seen.isoformat(timespec="seconds") + "Z" if last_seen else None,
               "idle_s": round((now - last_seen).total_seconds()) if last_seen else None,
               "catch_failed": catch_failed, "too_fast": fast, "kind": "bot" if is_bot else "pilot" if is_pilot else "real"}
        if state in ACTIVE_STATES:
            active.append(row)
        if catch_failed or (n and fast / n > TOO_FAST_SHARE):
            flagged.append(row)
    return {
        "study": study.slug, "is_open": study.is_open, "target": study.target_participants,
        "sessions": "all" if all_sessions else "real",
        "by_state": {state: by_state.get(state, 0) for state in STATES},
        "funnel": dict(zip(FUNNEL, funnel)),
        "answers_per_condition": [{"condition": c, "task": t, "answers": n} for c, t, n in per_condition],
        "answers_per_stimulus": [{"stimulus_id": k, "condition": c, "source_id": s, "label": nl, "rate": nr}
                                 for k, c, s, nl, nr in per_stimulus],
        "active": active, "flagged": flagged,
        "too_fast_rule": f"more than {TOO_FAST_SHARE:.0%} of answers under {TOO_FAST_MS} ms",
    }


def panel_links(study: Study) -> dict[str, str]:
    """The entry link to give each panel the study recruits on, plus a pilot link."""
    entry = url_for("participant.entry", slug=study.slug, _external=True)
    links = {
        "prolific": entry + "?PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}",
        # MTurk appends workerId, assignmentId, hitId and turkSubmitTo to an ExternalQuestion's URL.
        "mturk": entry,
        "link": entry + "?participant=ID",  # or the bare entry link for anonymous participants
    }
    shown = {panel: links[panel] for panel in study.config.get("panels", links)}
    shown["pilot"] = entry + "?participant=pilot-NAME&mark=" + session_mark(study.slug, "pilot")
    return shown


def mturk_external_question(study: Study) -> str:
    return ('<ExternalQuestion xmlns="http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/'
            f'2006-07-14/ExternalQuestion.xsd"><ExternalURL>{url_for("participant.entry", slug=study.slug, _external=True)}'
            '</ExternalURL><FrameHeight>0</FrameHeight></ExternalQuestion>')


@bp.get("/")
@admin_required
def index():
    studies = db.session.execute(
        select(Study, func.count(case((and_(ParticipantSession.state == "completed", ~ParticipantSession.is_bot,
                                            ~ParticipantSession.is_pilot), 1))))
        .outerjoin(ParticipantSession, ParticipantSession.study_id == Study.id)
        .join(StudyRole, (StudyRole.study_id == Study.id) & (StudyRole.user_id == current_user().id))
        .group_by(Study.id).order_by(Study.id)).all()
    return render_template("admin/index.html", studies=studies, admin=current_admin(), csrf=admin_csrf())


@bp.get("/study/<slug>")
@admin_required
def study_page(slug: str):
    study = get_study(slug)
    all_sessions = request.args.get("sessions") == "all"
    return render_template("admin/study.html", study=study, p=progress(study, all_sessions), links=panel_links(study),
                           external_question=mturk_external_question(study), exports=[*EXPORTS, "data_dictionary.csv", "payments.csv"],
                           admin=current_admin(), csrf=admin_csrf(), message=request.args.get("message"))


@bp.get("/study/<slug>/progress.json")
@admin_required
def progress_json(slug: str):
    return jsonify(progress(get_study(slug), request.args.get("sessions") == "all"))


@bp.get("/study/<slug>/export/<name>")
@admin_required
def export(slug: str, name: str):
    """Stream one export file; ?include=withdrawn,bots,pilots widens the selection. Analysts get
    the pseudonymised files, only owners the payment list with its raw panel ids."""
    study = get_study(slug, "owner" if name == "payments.csv" else "analyst")
    include = set(filter(None, request.args.get("include", "").split(",")))
    if include - {"withdrawn", "bots", "pilots"}:
        abort(400, "include takes a comma-separated list of withdrawn, bots, pilots")
    if name in EXPORTS:
        chunks = EXPORTS[name](Selection(study.slug, "withdrawn" in include, "bots" in include, "pilots" in include))
    elif name == "data_dictionary.csv":
        chunks = dictionary_csv()
    elif name == "payments.csv":
        chunks = csv_chunks(PAYMENT_COLUMNS, payment_rows(study))
    else:
        abort(404, f"There is no export {name!r}.")
    return Response(stream_with_context(chunks), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{study.slug}-{name}"',
                             "Cache-Control": "no-store"})


def _back(study: Study, message: str):
    return redirect(url_for("dashboard.study_page", slug=study.slug, message=message), 303)


@bp.post("/study/<slug>/state")
@admin_required
def set_state(slug: str):
    check_admin_csrf()
    begin_write()
    study = get_study(slug, "owner")
    action = request.form.get("action")
    if action not in ("open", "close"):
        abort(400, "action must be open or close")
    try:
        (open_study if action == "open" else close_study)(study, f"admin:{current_admin()}")
    except LifecycleError as exc:
        db.session.rollback()
        return _back(study, str(exc))
    db.session.commit()
    return _back(study, f"The study is {'open' if action == 'open' else 'closed'}.")


@bp.post("/study/<slug>/delete-participant")
@admin_required
def delete_participant_view(slug: str):
    check_admin_csrf()
    begin_write()
    study = get_study(slug, "owner")
    raw_id = request.form.get("panel_id", "").strip()
    if not raw_id or len(raw_id) > 200:
        abort(400, "Give the participant's panel id (Prolific id, MTurk worker id or link id).")
    deleted = delete_participant(raw_id, f"admin:{current_admin()}", study.slug)
    db.session.commit()
    return _back(study, f"Deleted {deleted['sessions']} session(s) and {deleted['answers']} answer(s)."
                 if deleted["sessions"] else "No session of this study has that panel id; nothing was deleted.")
