"""The participant's pages: entry (or preview), consent, instructions, the trial page, debrief,
withdrawal and endings. Every state change is a POST; GET pages only read and redirect.

A session lives at /s/<token>; /s/<token> itself sends the participant to the page their
session's state calls for, so any refresh, back button or repeat visit lands in the right place.
"""
from __future__ import annotations

import hashlib
import secrets

from flask import Blueprint, Response, abort, redirect, render_template, request, url_for
from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError

from study import admission, identity
from study.answers import ANSWERABLE_STATES, missing_trials
from study.assignment import StudyFull, assign, places_taken
from study.config import StudyConfig, config_from_dict
from study.db import begin_write, db, single_statement, utcnow
from study.leases import place_free, resume
from study.lifecycle import audit
from study.models import TRANSITIONS, PageView, ParticipantSession, Stimulus, Study
from study.panels import Entry, EntryError, completion_target, parse_entry
from study.security import check_csrf, csrf_token, participant_hash, public_id_from_token, read_mark, session_token

bp = Blueprint("participant", __name__)

ENDED_STATES = ("declined", "withdrawn", "screened_out")


def require_open_study(slug: str) -> tuple[Study, StudyConfig]:
    """The open study at this slug, or the request ends with 404 (none) or 410 (closed). Opening a
    study (a state change) is study.lifecycle.open_study."""
    study = db.session.scalar(select(Study).where(Study.slug == slug))
    if study is None:
        abort(404, "There is no study at this address. Please check the link you were given.")
    if not study.is_open:
        abort(410, "This study is closed and takes no new participants. Thank you for your interest.")
    return study, config_from_dict(study.config)


def load_session(token: str, write: bool = False) -> ParticipantSession:
    """The session a URL token names (404 otherwise). `write`: the request will change it."""
    public_id = public_id_from_token(token)
    if public_id is None:
        abort(404, "This study link is not valid. Please use the link you were given, unchanged.")
    if write:
        begin_write()
    session = db.session.scalar(select(ParticipantSession).where(ParticipantSession.public_id == public_id))
    if session is None:
        abort(404, "This study session does not exist.")
    return session


def home_url(session: ParticipantSession) -> str:
    """The page the session's state calls for."""
    if session.state == "timed_out" and not place_free(session, utcnow()):
        return url_for("participant.ended", token=session_token(session.public_id))  # study.leases
    return page_url(session.public_id, session.state, instructed=session.instructed_at is not None)


def page_url(public_id: str, state: str, instructed: bool = True) -> str:
    token = session_token(public_id)
    if state in ENDED_STATES:
        return url_for("participant.ended", token=token)
    if state == "completed":
        return url_for("participant.debrief", token=token)
    if not instructed:
        return url_for("participant.instructions", token=token)
    return url_for("participant.task", token=token)


def _page(template: str, session: ParticipantSession | None = None, **context) -> str:
    config = context.pop("config", None) or config_from_dict(session.study.config)
    token = session_token(session.public_id) if session else None
    withdraw = url_for("participant.withdraw", token=token) if session and session.state not in (*ENDED_STATES, "consented") else None
    return render_template(template, config=config, session=session, token=token, withdraw_url=withdraw,
                           csrf=csrf_token(session.public_id) if session else None, **context)


def _entry_binding(slug: str, entry: Entry) -> str:
    return f"consent:{slug}:{entry.panel}:{sorted(entry.ids.items())}:{entry.mark}"


PANEL_NAMES = {"prolific": "Prolific", "mturk": "Mechanical Turk", "link": "the researcher's own link"}


def _parsed_entry(slug: str, config: StudyConfig, args) -> tuple[Entry, str | None]:
    """The entry parameters and the verified session mark ("bot", "pilot" or None); 400 if bad,
    403 if the study does not recruit on the link's panel (marked sessions may use any)."""
    try:
        found = parse_entry(args)
    except EntryError as exc:
        abort(400, str(exc))
    mark = read_mark(slug, found.mark) if found.mark else None
    if found.mark and mark is None:
        abort(400, "The link's mark parameter is not valid for this study. Ask the researcher for a new link.")
    if mark is None and found.panel not in config.panels:
        abort(403, "This study takes part only through " + " or ".join(PANEL_NAMES[p] for p in config.panels)
              + ". Please open it from there.")
    return found, mark


def _existing(study: Study, found: Entry) -> ParticipantSession | None:
    """The person's latest session of this study."""
    if not found.identity:
        return None
    return db.session.scalar(select(ParticipantSession).where(
        ParticipantSession.study_id == study.id, ParticipantSession.participant_hash == participant_hash(found.identity))
        .order_by(ParticipantSession.attempt.desc()).limit(1))


def _refuse(study: Study, panel: str, reason: str, status: int, session: ParticipantSession | None = None):
    """Record a refused arrival (in its own commit) and tell the participant why."""
    db.session.rollback()
    if request.method != "HEAD":
        begin_write()
        recorded = admission.record(study, panel, reason, utcnow())
        if recorded and session is not None:  # someone else's session: the researcher sees it in the audit log
            audit("participant", "entry_refused", study=study.slug, session_id=session.public_id, reason=reason)
        db.session.commit()
    return render_template("message.html", title="You cannot start this study here", message=admission.REFUSALS[reason]), status


@bp.get("/study/<slug>")
def entry(slug: str):
    study, config = require_open_study(slug)
    found, mark = _parsed_entry(slug, config, request.args)
    if found.preview:
        return render_template("preview.html", study=study, config=config)
    existing = _existing(study, found)
    repeat = existing is not None and identity.may_repeat(existing, found, config.admission.sessions_per_person)
    if existing is not None and not repeat:  # a repeat visit resumes, it never restarts; but only for the owner
        if identity.is_owner(existing, found, slug):
            return redirect(home_url(existing), 303)
        if not identity.replaceable(existing, utcnow(), config.admission.start_lease):
            return _refuse(study, found.panel, "open_elsewhere", 409, existing)
    if mark is None and not found.raw_id and not config.admission.anonymous_link:
        return _refuse(study, found.panel, "anonymous_off", 403)
    # Told before reading the consent text; consent checks again, under the assignment lock.
    if mark is None and places_taken(study.id, utcnow()) >= study.target_participants:
        return render_template("full.html", config=config, panel=found.panel)
    params = {**found.ids, **({"mark": found.mark} if found.mark else {})}
    return render_template("consent.html", study=study, config=config, params=params,
                           csrf=csrf_token(_entry_binding(slug, found)))


@bp.post("/study/<slug>/consent")
def consent(slug: str):
    begin_write()
    study, config = require_open_study(slug)
    found, mark = _parsed_entry(slug, config, request.form)
    if found.preview:
        abort(400, "This is a preview; accept the task on the recruiting site to take part.")
    check_csrf(_entry_binding(slug, found))
    choice = request.form.get("choice")
    if choice not in ("agree", "decline"):
        abort(400, "Please choose whether you agree to take part.")
    now = utcnow()
    existing = _existing(study, found)
    attempt = 1 if existing is None else existing.attempt + 1
    if existing is not None and not identity.may_repeat(existing, found, config.admission.sessions_per_person):
        if identity.is_owner(existing, found, slug):
            return redirect(home_url(existing), 303)
        if not identity.replaceable(existing, now, config.admission.start_lease):
            return _refuse(study, found.panel, "open_elsewhere", 409, existing)
        attempt = existing.attempt  # the replaced session's number: it never counted
        # Nothing of it was used (no instructions, no answers): this arrival's own consent counts.
        audit("participant", "session_replaced", study=study.slug, session_id=existing.public_id, state=existing.state)
        db.session.execute(delete(PageView).where(PageView.session_id == existing.id))
        db.session.delete(existing)
        db.session.flush()
    if mark is None:
        if not found.raw_id and not config.admission.anonymous_link:
            return _refuse(study, found.panel, "anonymous_off", 403)
        limited = admission.over_limit(study, config, now)
        if limited:
            return _refuse(study, found.panel, limited, 429)
    # An anonymous plain link gets a random id: that participant resumes by the session URL.
    phash = participant_hash(found.identity or "anon" + secrets.token_hex(16))
    key, key_hash = identity.new_browser_key()
    session = ParticipantSession(
        public_id=secrets.token_hex(16), study=study, participant_hash=phash, attempt=attempt, panel=found.panel,
        panel_ids=found.ids, state="consented", consented_at=now, catch_failed=0, is_bot=mark == "bot", is_pilot=mark == "pilot",
        consent_version=hashlib.sha256(config.texts.consent.encode()).hexdigest(),
        user_agent=request.headers.get("User-Agent", "")[:500],
        browser_key_hash=key_hash, submission_hash=identity.submission_hash(found),
    )
    if choice == "decline":
        # Nothing is kept of a participant who declines but the fact (no panel ids: the page says so).
        session.state, session.consented_at, session.declined_at, session.panel_ids = "declined", None, now, {}
    try:
        if choice == "agree":
            assign(session, study, now)
            # Until the instructions are done the place is held briefly: an arrival that goes no
            # further (or a script filling the study) gives it back within minutes.
            session.lease_expires_at = min(session.lease_expires_at, now + config.admission.start_lease)
        db.session.add(session)
        if mark is None:
            admission.record(study, found.panel, "admitted", now)
        db.session.commit()
    except StudyFull:
        db.session.rollback()
        return render_template("full.html", config=config, panel=found.panel), 200
    except IntegrityError:  # the same participant consented in another tab at the same moment
        db.session.rollback()
        existing = _existing(study, found)
        if existing is None or not identity.is_owner(existing, found, slug):
            return _refuse(study, found.panel, "open_elsewhere", 409, existing)
        return redirect(home_url(existing), 303)
    response = redirect(home_url(session), 303)
    identity.set_browser_key(response, slug, key)
    return response


@bp.get("/s/<token>")
def home(token: str):
    return redirect(home_url(load_session(token)), 303)


@bp.route("/s/<token>/instructions", methods=["GET", "POST"])
def instructions(token: str):
    session = load_session(token, write=request.method == "POST")
    if session.state not in ("assigned", "timed_out") or session.instructed_at is not None:
        return redirect(home_url(session), 303)
    if request.method != "POST":  # GET and HEAD only read
        record_page_view(session, "instructions")
        return _page("instructions.html", session)
    check_csrf(session.public_id)
    now = utcnow()
    if session.state == "timed_out" and not resume(session, now):
        return redirect(home_url(session), 303)
    session.move_to("instructed", now)
    session.touch(now)
    db.session.commit()
    return redirect(home_url(session), 303)


def record_page_view(session: ParticipantSession, page: str) -> None:
    """Store the server's time of a page shown (never on HEAD), committed at once in a statement of
    its own: the page's read transaction stays a read, and the write lock is held only for it."""
    if request.method != "GET":
        return
    with db.engine.connect() as conn:
        single_statement(conn).execute(insert(PageView).values(session_id=session.id, page=page, at=utcnow()))
        conn.commit()


def trial_data(session: ParticipantSession, config: StudyConfig, answered: list[int]) -> dict:
    """Everything the trial page needs, embedded in the page (no extra round trip on load).

    Holds no condition, model or catch flag: participants stay blind to the design.
    """
    token = session_token(session.public_id)
    stimuli = {s.id: s for s in db.session.scalars(select(Stimulus).where(Stimulus.id.in_({p[0] for p in session.plan})))}
    names = session.study.class_names
    trials = []
    for index, (pk, task, block, _is_catch) in enumerate(session.plan):
        stimulus = stimuli[pk]
        trial = {"i": index, "task": task, "block": block, "stimulus": stimulus.public_id,
                 "image": url_for("participant.image", public_id=stimulus.public_id)}
        if task == "rate":
            trial["target"] = names[stimulus.rated_label]
        if block == "practice" and task == "label":
            trial["correct"] = stimulus.true_label
        trials.append(trial)
    return {
        "session": session.public_id,
        "answers_url": url_for("api.answers", token=token),
        "complete_url": url_for("api.complete", token=token),
        "environment_url": url_for("api.environment", token=token),
        "label_question": config.label_question,
        # The answer buttons' names by label; a digit study's are "0" … "9" (study.models.Study).
        "classes": names,
        "digits": session.study.is_digits,
        # One key per class runs out after ten: with more, a class number is typed and Enter answers.
        "typed_keys": len(names) > 10,
        "image_alt": "A handwritten digit" if session.study.is_digits else "The image to answer about",
        "rating": {"question": config.rating.question, "min": config.rating.min, "max": config.rating.max,
                   "anchors": config.rating.anchors},
        "tasks_per_image": len(config.tasks),
        "break_every": config.break_every,
        "trials": trials,
        "answered": answered,
    }


@bp.get("/s/<token>/task")
def task(token: str):
    session = load_session(token)
    if session.state not in ANSWERABLE_STATES or session.instructed_at is None \
            or session.state == "timed_out" and not place_free(session, utcnow()):
        return redirect(home_url(session), 303)
    config = config_from_dict(session.study.config)
    missing = set(missing_trials(session))
    answered = [i for i in range(len(session.plan)) if i not in missing]
    record_page_view(session, "task")
    return _page("task.html", session, config=config, data=trial_data(session, config, answered))


@bp.get("/s/<token>/debrief")
def debrief(token: str):
    session = load_session(token)
    if session.state != "completed":
        return redirect(home_url(session), 303)
    target = completion_target(session.panel, session.panel_ids, session.completion_code)
    return _page("debrief.html", session, code=session.completion_code, target=target)


@bp.route("/s/<token>/withdraw", methods=["GET", "POST"])
def withdraw(token: str):
    session = load_session(token, write=request.method == "POST")
    if "withdrawn" not in TRANSITIONS[session.state]:
        return redirect(home_url(session), 303)
    if request.method != "POST":
        return _page("withdraw.html", session)
    check_csrf(session.public_id)
    session.move_to("withdrawn")
    db.session.commit()
    return redirect(home_url(session), 303)


@bp.get("/s/<token>/end")
def ended(token: str):
    session = load_session(token)
    if session.state not in ENDED_STATES and home_url(session) != request.path:  # a timed-out session's lost place
        return redirect(home_url(session), 303)
    completion = config_from_dict(session.study.config).completion
    code = {"declined": completion.declined_code, "screened_out": completion.screened_out_code,
            "withdrawn": completion.withdrawn_code, "timed_out": completion.timed_out_code}.get(session.state)
    target = completion_target(session.panel, session.panel_ids, code) if code else None
    return _page("ended.html", session, code=code, target=target)


@bp.get("/img/<public_id>.png")
def image(public_id: str):
    data = db.session.scalar(select(Stimulus.image).where(Stimulus.public_id == public_id))
    if data is None:
        abort(404, "No such image.")
    # Images never change under a public id (a new study gets new ids), so caches may keep them.
    return Response(data, mimetype="image/png", headers={"Cache-Control": "public, max-age=31536000, immutable"})
