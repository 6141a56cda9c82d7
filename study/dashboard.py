"""The researcher dashboard (/admin, login required): a study's live progress, its links per
panel, one-click exports, open/close, and deleting a participant's data.

A study's page opens with one screen of charts (completed against target, each list's fill
against its Latin-square share, per-condition means with intervals, the completion funnel, catch
failures and speeders); the per-stimulus and per-session tables have pages of their own, sorted
and paged by their URL, so a reload (every 15 s while the box is ticked) keeps the place.
Progress is computed by a few aggregate queries per page view, and
/admin/study/<slug>/progress.json serves the same numbers to scripts. By default it counts real
participants only; `?sessions=all` adds bots and pilots (e.g. to watch a simulation). Every POST
checks the researcher's CSRF token; GETs never change anything.
"""
from __future__ import annotations

import statistics
from typing import Any

from flask import Blueprint, Response, abort, jsonify, redirect, render_template, request, stream_with_context, url_for
from markupsafe import Markup
from sqlalchemy import and_, case, func, select

from contracts import CONDITIONS
from study import charts
from study.api import server_seconds_per_answer
from study.auth import admin_csrf, admin_required, check_admin_csrf, current_admin, current_user, has_role, require_role
from study.config import config_from_dict
from study.db import begin_write, db, utcnow
from study.export import EXPORTS, Selection, csv_chunks, dictionary_csv
from study.health import write_problem
from study.lifecycle import LifecycleError, close_study, open_study
from study.models import ACTIVE_STATES, STATES, Answer, AssignmentList, ParticipantSession, Stimulus, Study, StudyRole
from study.payments import COLUMNS as PAYMENT_COLUMNS, payment_rows
from study.privacy import delete_participant
from study.security import session_mark

bp = Blueprint("dashboard", __name__, url_prefix="/admin")

FUNNEL = ("consented", "assigned", "instructed", "in_task", "completed")
FLAGGABLE = (*ACTIVE_STATES, "timed_out", "completed", "screened_out")
PER_PAGE = 50
# The sortable columns of the two tables, in the order shown.
STIMULUS_COLUMNS = {"stimulus_id": "Stimulus", "condition": "Condition", "source_id": "Source", "label": "Label answers",
                    "rate": "Rating answers"}
SESSION_COLUMNS = {"session_id": "Session", "kind": "Kind", "state": "State", "list": "List", "answers": "Answers",
                   "catch_failed": "Catch failed", "seconds_per_answer": "Seconds per answer", "last_seen_at": "Last activity"}


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
    """Everything the dashboard shows about a running study, as plain data.

    Speed is the server's measure (study.api.server_seconds_per_answer, the too-fast screening's
    own): a session answering faster than the study's min_seconds_per_answer is flagged while it
    runs, before the screening ends it; a client's reported reaction times cannot hide it."""
    ps, now = ParticipantSession, utcnow()
    min_pace = config_from_dict(study.config).min_seconds_per_answer
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
    answered = (select(Answer.session_id, func.count().label("n"), func.max(Answer.received_at).label("last"))
                .group_by(Answer.session_id).subquery())
    sessions = db.session.execute(
        select(ps.public_id, ps.state, ps.last_seen_at, ps.catch_failed, ps.is_bot, ps.is_pilot, AssignmentList.name,
               func.coalesce(answered.c.n, 0), answered.c.last, ps.instructed_at, ps.plan)
        .outerjoin(answered, answered.c.session_id == ps.id).outerjoin(AssignmentList, AssignmentList.id == ps.assignment_list_id)
        .where(*kinds).order_by(ps.last_seen_at.desc())).all()
    every, active, flagged = [], [], []
    for public_id, state, last_seen, catch_failed, is_bot, is_pilot, list_name, n, last, instructed, plan in sessions:
        pace = server_seconds_per_answer(instructed, last, n)
        row = {"session_id": public_id, "state": state, "list": list_name, "answers": n, "trials": len(plan or []),
               "last_seen_at": last_seen.isoformat(timespec="seconds") + "Z" if last_seen else None,
               "idle_s": round((now - last_seen).total_seconds()) if last_seen else None,
               "catch_failed": catch_failed, "seconds_per_answer": round(pace, 2) if pace is not None else None,
               "too_fast": not is_bot and pace is not None and pace < min_pace,
               "kind": "bot" if is_bot else "pilot" if is_pilot else "real"}
        row["flagged"] = state in FLAGGABLE and bool(catch_failed or row["too_fast"])
        every.append(row)
        if state in ACTIVE_STATES:
            active.append(row)
        if row["flagged"]:
            flagged.append(row)
    return {
        "study": study.slug, "is_open": study.is_open, "target": study.target_participants,
        "sessions": "all" if all_sessions else "real",
        "by_state": {state: by_state.get(state, 0) for state in STATES},
        "funnel": dict(zip(FUNNEL, funnel)),
        "answers_per_condition": [{"condition": c, "task": t, "answers": n} for c, t, n in per_condition],
        "answers_per_stimulus": [{"stimulus_id": k, "condition": c, "source_id": s, "label": nl, "rate": nr}
                                 for k, c, s, nl, nr in per_stimulus],
        "active": active, "flagged": flagged, "sessions_list": every,
        "catch_failed": sum(1 for r in flagged if r["catch_failed"]),
        "too_fast": sum(1 for r in flagged if r["too_fast"]),
        "too_fast_rule": f"under {min_pace:g} s per answer by the server's clock, instructions to last answer"
                         if min_pace else "no minimum set (min_seconds_per_answer = 0)",
        "lists": _list_fill(study, every),
        "condition_means": _condition_means(answers),
        "seconds_per_answer": _median_seconds_per_answer(every),
    }


def _list_fill(study: Study, sessions: list[dict]) -> list[dict[str, Any]]:
    """Completed and running sessions per list, against the list's share of the target."""
    names = db.session.scalars(select(AssignmentList.name).where(AssignmentList.study_id == study.id)
                               .order_by(AssignmentList.position)).all()
    share = study.target_participants / len(names) if names else 0
    rows = {name: {"list": name, "completed": 0, "running": 0, "target": share} for name in names}
    for s in sessions:
        if s["list"] in rows and s["state"] in ("completed", *ACTIVE_STATES):
            rows[s["list"]]["completed" if s["state"] == "completed" else "running"] += 1
    return list(rows.values())


def _condition_means(answers) -> list[dict[str, Any]]:
    """Per condition (main block, catch images left out): the share of labels naming the true
    class and the mean rating, each with a 95% interval that treats answers as independent (a
    live look, not the analysis: that models participants and images)."""
    rating = answers.c.response_rating
    correct = case((answers.c.response_label == Stimulus.true_label, 1), else_=0)
    found = db.session.execute(
        select(Stimulus.condition, answers.c.task, func.count(), func.sum(correct), func.avg(rating), func.avg(rating * rating))
        .join(answers, answers.c.stimulus_id == Stimulus.id).where(answers.c.block == "main", ~answers.c.is_catch)
        .group_by(Stimulus.condition, answers.c.task)).all()
    rows: dict[str, dict[str, Any]] = {}
    for condition, task, n, n_correct, mean, mean_sq in found:
        row = rows.setdefault(condition, {"condition": condition, "labels": 0, "ratings": 0})
        if task == "label":
            low, high = charts.wilson(int(n_correct), n)
            row.update(labels=n, accuracy=n_correct / n, accuracy_low=low, accuracy_high=high)
        else:
            low, high = charts.mean_interval(n, float(mean), float(mean_sq))
            row.update(ratings=n, rating=float(mean), rating_low=low, rating_high=high)
    # The vocabulary's order (normal first, clean last), as in the analysis; a condition outside it goes last.
    order = {c: i for i, c in enumerate(CONDITIONS)}
    return [rows[c] for c in sorted(rows, key=lambda c: (order.get(c, len(order)), c))]


def _median_seconds_per_answer(sessions: list[dict[str, Any]]) -> float | None:
    """Median server-timed seconds per answer of completed sessions: the measure to set a config's
    seconds_per_answer from after a pilot."""
    paces = [s["seconds_per_answer"] for s in sessions if s["state"] == "completed" and s["seconds_per_answer"] is not None]
    return round(statistics.median(paces), 2) if paces else None


def panel_links(study: Study) -> dict[str, str]:
    """The entry link to give each panel the study recruits on, plus, for owners, a pilot link
    (its signed mark passes the admission limits and any panel: a capability, not a view)."""
    entry = url_for("participant.entry", slug=study.slug, _external=True)
    links = {
        "prolific": entry + "?PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}",
        # MTurk appends workerId, assignmentId, hitId and turkSubmitTo to an ExternalQuestion's URL.
        "mturk": entry,
        "link": entry + "?participant=ID",  # or the bare entry link for anonymous participants
    }
    shown = {panel: links[panel] for panel in study.config.get("panels", links)}
    if has_role(study, "owner"):
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


def summary_charts(study: Study, p: dict[str, Any]) -> dict[str, Markup]:
    """The first screen's charts, from `progress` output."""
    completed = p["by_state"]["completed"]
    running = sum(p["by_state"][s] for s in ACTIVE_STATES)
    means = p["condition_means"]
    return {
        "target": charts.bars([charts.Bar("completed", completed, running, f"{completed} / {p['target']}")],
                              f"{completed} of {p['target']} completed, {running} running", scale=p["target"]),
        "lists": charts.bars([charts.Bar(r["list"], r["completed"], r["running"], f"{r['completed']} + {r['running']} running")
                              for r in p["lists"]],
                             "Completed sessions per list: " + ", ".join(f"{r['list']} {r['completed']}" for r in p["lists"])
                             + f"; each list's share of the target is {round(p['lists'][0]['target'], 1):g}" if p["lists"] else "No lists",
                             target=p["lists"][0]["target"] if p["lists"] else None),
        "funnel": charts.bars([charts.Bar(step.replace("_", " "), n) for step, n in p["funnel"].items()],
                              "Sessions that reached each step: " + ", ".join(f"{k.replace('_', ' ')} {n}" for k, n in p["funnel"].items())),
        "accuracy": charts.intervals(
            [charts.Interval(r["condition"], r.get("accuracy"), r.get("accuracy_low"), r.get("accuracy_high"),
                             f"{r['accuracy']:.0%} (n={r['labels']})" if r.get("accuracy") is not None else "") for r in means],
            "Share of labels naming the true class per condition: " + ", ".join(
                f"{r['condition']} {r['accuracy']:.0%} ({r['accuracy_low']:.0%} to {r['accuracy_high']:.0%})"
                for r in means if r.get("accuracy") is not None), 0, 1),
        "rating": charts.intervals(
            [charts.Interval(r["condition"], r.get("rating"), r.get("rating_low"), r.get("rating_high"),
                             f"{r['rating']:.2f} (n={r['ratings']})" if r.get("rating") is not None else "") for r in means],
            "Mean rating per condition: " + ", ".join(
                f"{r['condition']} {r['rating']:.2f} ({r['rating_low']:.2f} to {r['rating_high']:.2f})"
                for r in means if r.get("rating") is not None), study.rating_min, study.rating_max),
    }


def _all_sessions() -> bool:
    return request.args.get("sessions") == "all"


@bp.get("/study/<slug>")
@admin_required
def study_page(slug: str):
    study = get_study(slug)
    p = progress(study, _all_sessions())
    return render_template("admin/study.html", study=study, p=p, charts=summary_charts(study, p), links=panel_links(study),
                           write_problem=write_problem(),
                           external_question=mturk_external_question(study), exports=[*EXPORTS, "data_dictionary.csv", "payments.csv"],
                           admin=current_admin(), csrf=admin_csrf(), message=request.args.get("message"))


def table_page(rows: list[dict[str, Any]], columns: dict[str, str], default: str) -> dict[str, Any]:
    """One page of `rows`, sorted as the URL asks (?sort=column, ?sort=-column for descending, ?page=N)."""
    sort = request.args.get("sort", default)
    key = sort.lstrip("-")
    if key not in columns:
        abort(400, f"sort takes one of {', '.join(columns)} (a leading - sorts descending)")
    try:
        number = max(1, int(request.args.get("page", "1")))
    except ValueError:
        abort(400, "page must be a whole number")
    ordered = sorted(rows, key=lambda r: (r[key] is None, r[key] if r[key] is not None else 0), reverse=sort.startswith("-"))
    pages = max(1, -(-len(ordered) // PER_PAGE))
    number = min(number, pages)
    return {"rows": ordered[(number - 1) * PER_PAGE:number * PER_PAGE], "columns": columns, "sort": sort, "key": key,
            "descending": sort.startswith("-"), "page": number, "pages": pages, "total": len(ordered)}


@bp.get("/study/<slug>/stimuli")
@admin_required
def stimuli_page(slug: str):
    study = get_study(slug)
    table = table_page(progress(study, _all_sessions())["answers_per_stimulus"], STIMULUS_COLUMNS, "stimulus_id")
    return render_template("admin/table.html", study=study, table=table, what="stimuli", title="Answers per stimulus",
                           endpoint="dashboard.stimuli_page", admin=current_admin(), csrf=admin_csrf())


@bp.get("/study/<slug>/sessions")
@admin_required
def sessions_page(slug: str):
    study = get_study(slug)
    rows = progress(study, _all_sessions())["sessions_list"]
    flagged = request.args.get("flagged") == "1"
    table = table_page([r for r in rows if r["flagged"]] if flagged else rows, SESSION_COLUMNS, "-last_seen_at")
    return render_template("admin/table.html", study=study, table=table, what="sessions", flagged=flagged,
                           title="Flagged sessions" if flagged else "Sessions", endpoint="dashboard.sessions_page",
                           admin=current_admin(), csrf=admin_csrf())


@bp.get("/study/<slug>/progress.json")
@admin_required
def progress_json(slug: str):
    return jsonify({**progress(get_study(slug), request.args.get("sessions") == "all"), "write_problem": write_problem()})


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
