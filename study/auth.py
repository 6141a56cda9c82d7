"""Researcher accounts: `flask --app study create-admin`, the login page, and `admin_required`.

Passwords are stored as werkzeug.security hashes (scrypt). Failed logins are rows in the
database, so the rate limit (per user name and per client address) holds across all gunicorn
workers and servers. A logged-in researcher is a name in Flask's signed session cookie
(HttpOnly, SameSite=Lax). Every researcher form carries a CSRF token from study.security bound
to that name; the login form's token is bound to a random nonce in the cookie.
"""
from __future__ import annotations

import datetime as dt
import functools
import os
import re
import secrets
from typing import Callable

from flask import Blueprint, redirect, render_template, request, session, url_for
from sqlalchemy import delete, func, select
from werkzeug.security import check_password_hash, generate_password_hash

from study.db import db, utcnow
from study.models import AdminUser, LoginFailure
from study.security import check_csrf, csrf_token

bp = Blueprint("auth", __name__, url_prefix="/admin")

USERNAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
MIN_PASSWORD = 12
WINDOW = dt.timedelta(minutes=15)
MAX_FAILURES = {"user": 5, "ip": 30}  # within WINDOW
# Checked when the user does not exist, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = generate_password_hash(secrets.token_hex(16))


class AccountError(ValueError):
    pass


@bp.record_once
def _cookie_settings(state) -> None:
    # The session cookie carries only the researcher's login (participants use URL tokens).
    state.app.config.update(
        SESSION_COOKIE_SAMESITE="Lax", PERMANENT_SESSION_LIFETIME=dt.timedelta(hours=8),
        # In production the dashboard is served over HTTPS only (deploy/nginx-study.conf).
        SESSION_COOKIE_SECURE=os.environ.get("STUDY_ENV") == "production",
    )


def create_admin(username: str, password: str) -> AdminUser:
    """Add a researcher, or set a new password for an existing one. Caller commits."""
    if not USERNAME.match(username):
        raise AccountError("the user name may use letters, digits and . _ @ - (at most 64)")
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"the password must have at least {MIN_PASSWORD} characters")
    user = db.session.scalar(select(AdminUser).where(AdminUser.username == username))
    if user is None:
        user = AdminUser(username=username, created_at=utcnow())
        db.session.add(user)
    user.password_hash = generate_password_hash(password)
    return user


def current_admin() -> str | None:
    return session.get("admin")


def admin_csrf() -> str:
    return csrf_token(f"admin:{current_admin()}")


def check_admin_csrf() -> None:
    check_csrf(f"admin:{current_admin()}")


def admin_required(view: Callable) -> Callable:
    """Anonymous visitors get the login page (a 302 to it), never the view's content."""
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if current_admin() is None:
            return redirect(url_for("auth.login", next=request.path))
        return view(*args, **kwargs)
    return wrapped


def _keys(username: str) -> dict[str, str]:
    return {"user": f"user:{username[:64]}", "ip": f"ip:{request.remote_addr or '?'}"}


def _blocked(keys: dict[str, str], now: dt.datetime) -> bool:
    counts = dict(db.session.execute(
        select(LoginFailure.key, func.count()).where(LoginFailure.key.in_(keys.values()), LoginFailure.at > now - WINDOW)
        .group_by(LoginFailure.key)).all())
    return any(counts.get(key, 0) >= MAX_FAILURES[kind] for kind, key in keys.items())


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
        # Old failures are dropped as they fall out of the window, so the table stays small.
        db.session.execute(delete(LoginFailure).where(LoginFailure.at <= now - WINDOW))
        if _blocked(keys, now):
            db.session.commit()
            error, status = f"Too many failed logins. Try again in {WINDOW.seconds // 60} minutes.", 429
        else:
            user = db.session.scalar(select(AdminUser).where(AdminUser.username == username)) if username else None
            if check_password_hash(user.password_hash if user else _DUMMY_HASH, password) and user is not None:
                db.session.execute(delete(LoginFailure).where(LoginFailure.key == keys["user"]))
                db.session.commit()
                session.clear()  # a fresh session on login: no fixation of a pre-login cookie
                session.permanent = True
                session["admin"] = user.username
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
    session.clear()
    return redirect(url_for("auth.login"), 303)

