"""Researcher accounts: `flask --app study create-admin`, the login page, `admin_required` and
per-study roles.

Passwords are stored as werkzeug.security hashes (scrypt). Failed logins are rows in the
database (and attempts from one address take turns), so throttling holds across all gunicorn
workers and servers, also for attempts sent all at once. It slows guessing without
locking the real user out: each (user name, client address) pair waits twice as long after each
failure past the third (up to 15 minutes), and one address may fail at most 30 times in 15
minutes whatever the names; nothing ever blocks a user name from every address.

A logged-in researcher is a name, their account's session version, a random CSRF nonce and the
login's and last request's times in Flask's signed session cookie (HttpOnly, SameSite=Lax). The
version is checked against the database on every request, and logout or a new password increases
it, so a saved cookie stops working everywhere at once. A login also ends on its own: after
STUDY_ADMIN_IDLE_MINUTES without a request (default 30) and STUDY_ADMIN_SESSION_HOURS after it
began however busy (default 8); a copy of the cookie ages with it, since the times are signed. Every researcher form carries a CSRF token from study.security bound
to that login (name, version, nonce); the login form's token is bound to a nonce of its own.

Roles are per study: a viewer sees progress, an analyst also downloads the pseudonymised exports,
an owner also gets the payment list (raw panel ids), opens, closes, deletes participants and
grants roles (`flask --app study grant`). Every grant and revocation is in the audit log.
"""
from __future__ import annotations

import datetime as dt
import functools
import hashlib
import math
import os
import re
import secrets
import time
from dataclasses import dataclass
from typing import Callable

from flask import Blueprint, abort, current_app, g, redirect, render_template, request, session, url_for
from sqlalchemy import delete, func, select
from werkzeug.security import check_password_hash, generate_password_hash

from study.db import begin_write, db, utcnow
from study.lifecycle import audit
from study.models import RESEARCHER_ROLES, AdminUser, LoginFailure, Study, StudyRole
from study.security import check_csrf, csrf_token

bp = Blueprint("auth", __name__, url_prefix="/admin")

USERNAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")  # always used with fullmatch
MIN_PASSWORD = 12
WINDOW = dt.timedelta(minutes=15)
MAX_ADDRESS_FAILURES = 30  # within WINDOW, over every user name
FREE_FAILURES = 3  # per (user, address) before the back-off starts
# Checked when the user does not exist, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = generate_password_hash(secrets.token_hex(16))


class AccountError(ValueError):
    pass


def _lifetime(variable: str, default: float, unit: str) -> dt.timedelta:
    raw = os.environ.get(variable, "")
    try:
        value = float(raw) if raw.strip() else default
    except ValueError:
        value = -1.0
    if not 0 < value < 1e6:
        raise RuntimeError(f"{variable} must be a positive number of {unit}, not {raw!r}")
    return dt.timedelta(**{unit: value})


@bp.record_once
def _cookie_settings(state) -> None:
    # The session cookie carries only the researcher's login (participants use URL tokens).
    config = state.app.config
    config.setdefault("ADMIN_IDLE_TIMEOUT", _lifetime("STUDY_ADMIN_IDLE_MINUTES", 30, "minutes"))
    config.setdefault("ADMIN_SESSION_LIFETIME", _lifetime("STUDY_ADMIN_SESSION_HOURS", 8, "hours"))
    config.update(
        SESSION_COOKIE_SAMESITE="Lax", PERMANENT_SESSION_LIFETIME=config["ADMIN_SESSION_LIFETIME"],
        # In production the dashboard is served over HTTPS only (deploy/nginx-study.conf).
        SESSION_COOKIE_SECURE=os.environ.get("STUDY_ENV") == "production",
    )


def create_admin(username: str, password: str) -> AdminUser:
    """Add a researcher, or set a new password for an existing one. Caller commits."""
    if not USERNAME.fullmatch(username):
        raise AccountError("the user name may use letters, digits and . _ @ - (at most 64)")
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"the password must have at least {MIN_PASSWORD} characters")
    user = db.session.scalar(select(AdminUser).where(AdminUser.username == username))
    if user is None:
        user = AdminUser(username=username, created_at=utcnow(), session_version=0)
        db.session.add(user)
    else:
        user.session_version += 1  # a new password ends every session of the old one
    user.password_hash = generate_password_hash(password)
    return user


@dataclass(frozen=True)
class Login:
    id: int
    username: str


def current_user() -> Login | None:
    """The logged-in researcher, if the cookie's login is still current (checked per request).

    Read on a connection of its own, so the request's transaction has not begun when a view
    declares a write (study.db.begin_write)."""
    if "admin_user" not in g:
        name, version, found = session.get("admin"), session.get("version"), None
        if isinstance(name, str) and _login_current(time.time()):
            with db.engine.connect() as conn:
                found = conn.execute(select(AdminUser.id, AdminUser.username).where(
                    AdminUser.username == name, AdminUser.session_version == version)).first()
        if found:
            session["seen_at"] = time.time()  # this request keeps the login from idling out
        g.admin_user = Login(*found) if found else None
    return g.admin_user


def _login_current(now: float) -> bool:
    """Neither idle too long nor older than the login lifetime (times from the signed cookie)."""
    config = current_app.config
    began, seen = session.get("login_at"), session.get("seen_at")
    if not isinstance(began, (int, float)) or not isinstance(seen, (int, float)):
        return False  # a cookie from before logins expired: log in again
    return (now - began < config["ADMIN_SESSION_LIFETIME"].total_seconds()
            and now - seen < config["ADMIN_IDLE_TIMEOUT"].total_seconds())


def current_admin() -> str | None:
    user = current_user()
    return user.username if user else None


def _login_binding() -> str:
    return f"admin:{current_admin()}:{session.get('version')}:{session.get('csrf_nonce')}"


def admin_csrf() -> str:
    return csrf_token(_login_binding())


def check_admin_csrf() -> None:
    check_csrf(_login_binding())


def role_of(study: Study, user: Login | None = None) -> str | None:
    user = user or current_user()
    if user is None:
        return None
    return db.session.scalar(select(StudyRole.role).where(StudyRole.study_id == study.id, StudyRole.user_id == user.id))


def _at_least(role: str | None, needed: str) -> bool:
    return role is not None and RESEARCHER_ROLES.index(role) >= RESEARCHER_ROLES.index(needed)


def has_role(study: Study, needed: str) -> bool:
    return _at_least(role_of(study), needed)


def act_for(study: Study, username: str, needed: str) -> str:
    """The audit actor of a command run for researcher `username` (`flask --app study … --as
    USER`), who must hold at least the `needed` role on `study`; AccountError otherwise."""
    found = db.session.execute(select(AdminUser.id, AdminUser.username).where(AdminUser.username == username)).first() \
        if USERNAME.fullmatch(username) else None
    if found is None:
        raise AccountError(f"there is no researcher {username!r}")
    role = role_of(study, Login(*found))
    if not _at_least(role, needed):
        held = f"is {role} of" if role else "has no role on"
        raise AccountError(f"{username!r} {held} study {study.slug!r}; this needs the {needed} role (ask its owner)")
    return f"cli:{username}"


def require_role(study: Study, needed: str) -> None:
    if not has_role(study, needed):
        abort(403, f"You need the {needed} role on study {study.slug!r} for this; ask its owner.")


def grant(study: Study, username: str, role: str | None, actor: str) -> None:
    """Give `username` a role on `study` (None: take it away). Caller commits."""
    user = db.session.scalar(select(AdminUser).where(AdminUser.username == username))
    if user is None:
        raise AccountError(f"there is no researcher {username!r} (create-admin makes one)")
    if role is not None and role not in RESEARCHER_ROLES:
        raise AccountError(f"the role must be one of {', '.join(RESEARCHER_ROLES)}")
    db.session.execute(delete(StudyRole).where(StudyRole.study_id == study.id, StudyRole.user_id == user.id))
    if role is not None:
        db.session.add(StudyRole(study_id=study.id, user_id=user.id, role=role))
    audit(actor, "grant" if role else "revoke", study=study.slug, user=username, role=role)


def admin_required(view: Callable) -> Callable:
    """Anonymous visitors get the login page (a 302 to it), never the view's content."""
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if current_admin() is None:
            return redirect(url_for("auth.login", next=request.path))
        return view(*args, **kwargs)
    return wrapped


def _keys(username: str) -> dict[str, str]:
    # The name as typed may hold anything (a NUL byte, which PostgreSQL cannot store): its hash.
    address, name = request.remote_addr or "?", hashlib.sha256(username.encode(errors="replace")).hexdigest()[:32]
    return {"pair": f"pair:{name}|{address}"[:200], "ip": f"ip:{address}"[:200]}


def _wait(keys: dict[str, str], now: dt.datetime) -> float:
    """Seconds until this (user, address) may try again; 0 when it may now."""
    failures = {key: (n, last) for key, n, last in db.session.execute(
        select(LoginFailure.key, func.count(), func.max(LoginFailure.at))
        .where(LoginFailure.key.in_(keys.values()), LoginFailure.at > now - WINDOW).group_by(LoginFailure.key))}
    n, last = failures.get(keys["ip"], (0, None))
    if n >= MAX_ADDRESS_FAILURES:
        return (last + WINDOW - now).total_seconds()
    n, last = failures.get(keys["pair"], (0, None))
    if n < FREE_FAILURES:
        return 0.0
    back_off = min(2.0 ** (n - FREE_FAILURES), WINDOW.total_seconds())
    return max(0.0, (last - now).total_seconds() + back_off)


def _take_turns(keys: dict[str, str]) -> None:
    """Make concurrent attempts from one address take turns until their commit, on every worker and
    server, so each counts the failures before it: attempts sent all at once would otherwise all
    read the same count and all get a free try. SQLite's BEGIN IMMEDIATE serialises them already."""
    if db.engine.dialect.name == "postgresql":
        db.session.execute(select(func.pg_advisory_xact_lock(func.hashtext(keys["ip"]))))


def _safe_next(target: str | None) -> str:
    """Only local dashboard paths: a login link must not send the researcher elsewhere."""
    return target if target and target.startswith("/admin/") and not target.startswith("//") else url_for("dashboard.index")


@bp.route("/login", methods=["GET", "POST"])
def login():
    nonce = session.setdefault("login_nonce", secrets.token_hex(16))
    error, status = None, 200
    if request.method == "POST":
        check_csrf(f"login:{nonce}")
        username, password = request.form.get("username", "").strip(), request.form.get("password", "")
        keys, now = _keys(username), utcnow()
        begin_write()
        _take_turns(keys)
        # Old failures are dropped as they fall out of the window, so the table stays small.
        db.session.execute(delete(LoginFailure).where(LoginFailure.at <= now - WINDOW))
        wait = _wait(keys, now)
        if wait > 0:
            db.session.commit()
            error, status = f"Too many failed logins. Try again in {math.ceil(wait)} seconds.", 429
        else:
            # A name that cannot exist is never looked up (a NUL byte would upset PostgreSQL).
            user = db.session.scalar(select(AdminUser).where(AdminUser.username == username)) \
                if USERNAME.fullmatch(username) else None
            if check_password_hash(user.password_hash if user else _DUMMY_HASH, password) and user is not None:
                db.session.execute(delete(LoginFailure).where(LoginFailure.key == keys["pair"]))
                db.session.commit()
                session.clear()  # a fresh session on login: no fixation of a pre-login cookie
                session.permanent = True
                session.update(admin=user.username, version=user.session_version, csrf_nonce=secrets.token_hex(16),
                               login_at=time.time(), seen_at=time.time())
                return redirect(_safe_next(request.args.get("next")), 303)
            db.session.add_all(LoginFailure(key=key, at=now) for key in keys.values())
            db.session.commit()
            error, status = "Wrong user name or password.", 401
    return render_template("admin/login.html", csrf=csrf_token(f"login:{nonce}"), error=error), status


@bp.post("/logout")
def logout():
    if current_admin() is None:
        return redirect(url_for("auth.login"), 303)
    check_admin_csrf()
    begin_write()
    user = db.session.get(AdminUser, current_user().id)
    user.session_version += 1  # every cookie of this login, saved or stolen, stops working
    db.session.commit()
    session.clear()
    return redirect(url_for("auth.login"), 303)

