"""What of deploy/ can be checked on this machine: the nginx site (`nginx -t`), the systemd unit
(`systemd-analyze verify`) and the refusal to run in production with the default secret. The
gunicorn config itself serves the bots of test_simulate_export.py on both databases."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from conftest import REPO

DEPLOY = REPO / "deploy"


def test_nginx_site_passes_nginx_t(tmp_path):
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    # A throwaway certificate where certbot's would be, and a minimal main config around the site.
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=study.example.org",
                    "-keyout", str(tmp_path / "privkey.pem"), "-out", str(tmp_path / "fullchain.pem")],
                   check=True, capture_output=True)
    site = (DEPLOY / "nginx-study.conf").read_text().replace("/etc/letsencrypt/live/study.example.org", str(tmp_path))
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n  access_log off;\n  include {tmp_path}/site.conf;\n}}\n")
    done = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c", str(tmp_path / "nginx.conf")],
                          capture_output=True, text=True)
    assert done.returncode == 0 and "test is successful" in done.stderr, done.stderr


def test_systemd_unit_verifies(tmp_path):
    unit = tmp_path / "study.service"
    unit.write_text((DEPLOY / "study.service").read_text().replace("/srv/study", str(REPO)))
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert done.returncode == 0 and "Unknown" not in done.stderr and "Invalid" not in done.stderr, done.stderr


def test_production_mode_refuses_the_default_secret(monkeypatch):
    from study import create_app

    monkeypatch.setenv("STUDY_ENV", "production")
    monkeypatch.delenv("STUDY_SECRET_KEY", raising=False)
    with pytest.raises(RuntimeError, match="needs STUDY_SECRET_KEY"):
        create_app()
    monkeypatch.setenv("STUDY_SECRET_KEY", "a" * 64)
    app = create_app()
    assert app.config["SECRET_KEY"] == "a" * 64 and app.config["SESSION_COOKIE_SECURE"]  # dashboard cookie over HTTPS only
