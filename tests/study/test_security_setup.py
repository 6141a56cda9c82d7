"""Security of what runs before and beside the server: stimulus import (symlinks, foreign
paths, non-PNG bytes), the database file's mode, and the offline dependency audit."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from conftest import REPO, VENV_BIN, free_port, wait_for_http
from studyhelp import make_app, stimset, write_config  # noqa: F401  (fixtures)


def flask(tmp_path, *args: str):
    """`flask --app study ARGS` in this process (the CLI's own code, without an interpreter start-up)."""
    from study import create_app

    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'db' / 'study.sqlite'}", "SECRET_KEY": "k"})
    return app.test_cli_runner().invoke(args=list(args))


def retarget(images_dir, name: str, data_or_link) -> None:
    """Replace one image and fix its sha256 in the manifest, as an attacker who writes both would."""
    path = images_dir / name
    path.unlink()
    if isinstance(data_or_link, bytes):
        path.write_bytes(data_or_link)
    else:
        path.symlink_to(data_or_link)
    manifest_path = images_dir.parent / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for s in manifest["stimuli"]:
        if s["file"] == f"images/{name}":
            s["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest_path.write_text(json.dumps(manifest))


@pytest.mark.parametrize("attack", ["symlink", "not-png", "linked-folder"])
def test_create_study_refuses_symlinks_and_files_that_are_not_png(tmp_path, stimset, attack):
    evil = tmp_path / "set"
    shutil.copytree(stimset, evil)
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
    if attack == "symlink":
        retarget(evil / "images", "stim-0000.png", secret)
    elif attack == "not-png":
        retarget(evil / "images", "stim-0000.png", b"GIF89a not a png at all")
    else:  # the whole images/ folder is a link to somewhere else
        outside = tmp_path / "elsewhere"
        shutil.move(evil / "images", outside)
        (evil / "images").symlink_to(outside)
    assert flask(tmp_path, "init-db").exit_code == 0
    done = flask(tmp_path, "create-study", str(write_config(tmp_path / "s.toml")), "--stimuli", str(evil))
    assert done.exit_code == 1 and "Traceback" not in done.output
    assert ("symbolic link" if attack != "not-png" else "not a valid PNG") in done.output
    assert "no studies yet" in flask(tmp_path, "close", "test-study").output  # nothing was written


def test_a_new_sqlite_database_is_readable_by_its_owner_only(tmp_path):
    assert flask(tmp_path, "init-db").exit_code == 0
    assert stat.S_IMODE((tmp_path / "db" / "study.sqlite").stat().st_mode) == 0o600


def test_the_dependency_audit_passes_on_the_pins_and_fails_on_a_known_advisory(tmp_path):
    audit = [sys.executable, str(REPO / "scripts" / "audit_deps.py")]
    clean = subprocess.run(audit, capture_output=True, text=True)
    assert clean.returncode == 0 and "no known advisory applies" in clean.stdout, clean.stdout + clean.stderr
    old = tmp_path / "constraints.txt"
    old.write_text("Werkzeug==3.0.2\ngunicorn==23.0.0\n")
    found = subprocess.run([*audit, "--constraints", str(old)], capture_output=True, text=True)
    assert found.returncode == 1 and "werkzeug==3.0.2: GHSA-2g68-c3qc-8985" in found.stdout
    assert "gunicorn" not in found.stdout  # 23.0.0 is past the fix (22.0.0)


def test_session_tokens_stay_out_of_the_gunicorn_access_log(tmp_path):
    log = tmp_path / "access.log"
    port = free_port()
    env = {**os.environ, "STUDY_DATABASE_URL": f"sqlite:///{tmp_path / 'study.sqlite'}", "STUDY_SECRET_KEY": "k",
           "STUDY_ACCESS_LOG": str(log), "STUDY_WORKERS": "1", "STUDY_BIND": f"127.0.0.1:{port}"}
    # /healthz answers 200 only when a write succeeds, so the database must exist first.
    subprocess.run([str(VENV_BIN / "flask"), "--app", "study", "init-db"], env=env, check=True, capture_output=True)
    proc = subprocess.Popen([str(VENV_BIN / "gunicorn"), "-c", str(REPO / "deploy" / "gunicorn.conf.py"), "study:create_app()"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", proc=proc)
        with contextlib.suppress(urllib.error.HTTPError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/s/0123456789abcdef.SIGNATURE/task?x=1", timeout=10)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    text = log.read_text()
    assert "/s/-/task" in text and "0123456789abcdef" not in text and "SIGNATURE" not in text


def test_purge_panel_ids_forgets_raw_ids_of_ended_sessions_only(make_app):
    from sqlalchemy import select

    from study.db import db
    from study.testing.driver import Participant
    from study.models import AuditEvent, ParticipantSession

    app = make_app()
    Participant("http://test", "test-study", {"PROLIFIC_PID": "RAWPID-DONE"}, client=app.test_client(), seed=1).run()
    Participant("http://test", "test-study", {"PROLIFIC_PID": "RAWPID-BUSY"}, client=app.test_client(), seed=2).start()
    runner = app.test_cli_runner()
    kept = runner.invoke(args=["purge-panel-ids", "test-study"])  # the config's 90 days have not passed
    assert kept.exit_code == 0 and "0 session(s)" in kept.output
    purged = runner.invoke(args=["purge-panel-ids", "test-study", "--older-than-days", "0"])
    assert purged.exit_code == 0 and "1 session(s)" in purged.output
    with app.app_context():
        ids = {s.state: s.panel_ids for s in db.session.scalars(select(ParticipantSession))}
        assert ids == {"completed": {}, "instructed": {"PROLIFIC_PID": "RAWPID-BUSY"}}  # running sessions keep theirs
        assert db.session.scalars(select(AuditEvent.detail).where(AuditEvent.action == "purge_panel_ids")).all()[-1]["sessions"] == 1
    assert runner.invoke(args=["purge-panel-ids", "nope"]).exit_code == 1
