"""The README's first command (`make demo`): the whole pipeline on the embedded data.

engine generate-stimuli → create and open a study → serve it with gunicorn behind nginx → (first
run) simulated participants → export → python analysis/report.py → print the URLs → serve until
Ctrl-C. Every stage is the command a user would type; a stage whose output exists is skipped,
so a second run reaches the serving state in seconds.

nginx faces the clients, as in deploy/: it reads each request whole before passing it on, so a
client that stalls mid-request (a phone losing signal mid-POST) holds an nginx connection, not one
of gunicorn's few workers. Without nginx on the machine the demo serves on gunicorn directly and
says so.

Environment: DEMO_OUT (default runs/demo), DEMO_PORT (8000), DEMO_SERVE=0 to exit instead of
serving, DEMO_SIMULATE=N bots on the first run (default 28, 0 for none), DEMO_GENERATE_ARGS: extra
`engine generate-stimuli` arguments (e.g. "--set sources_per_class=1 --models a.pt b.pt" for a tiny run).
"""
from __future__ import annotations

import os
import secrets
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from study.testing.servers import APP, ServerError, free_port, start_gunicorn, stop_group, wait_for_http

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
OUT = Path(os.environ.get("DEMO_OUT", REPO / "runs" / "demo")).resolve()
PORT = int(os.environ.get("DEMO_PORT", "8000"))
SERVE = os.environ.get("DEMO_SERVE", "1") != "0"
SIMULATE = int(os.environ.get("DEMO_SIMULATE", "28"))  # 4 per list of the default design's 7
GENERATE_ARGS = shlex.split(os.environ.get("DEMO_GENERATE_ARGS", ""))
STUDY_CONFIG = REPO / "study" / "default_study.toml"
# The bots' assumption, the same for every condition: an image is rated more legitimate the more
# it was changed, 1.5 + 0.2 × its L2 distance from its source (0..1 pixels; clean controls: 1.5),
# on the 1-5 scale. No defense is favoured by name: differences between conditions in the demo's
# report come only from how much each defense's images differ from their sources. It makes the
# report non-trivial; it is an assumption, not a finding. Labels are answered at chance.
BOT_EFFECTS = ["--rating-by-l2", "1.5", "0.2", "--participant-sd", "0.5", "--image-sd", "0.5"]


def stage(title: str, cmd: list[str], env: dict[str, str]) -> None:
    print(f"\n== {title}\n$ {shlex.join(cmd)}", flush=True)
    start = time.monotonic()
    subprocess.run(cmd, cwd=REPO, env=env, check=True)
    print(f"   ({time.monotonic() - start:.1f} s)", flush=True)


def once(marker: str, title: str, cmd: list[str], env: dict[str, str]) -> bool:
    """Run a stage unless an earlier run finished it; returns whether it ran."""
    done = OUT / f".done-{marker}"
    if done.exists():
        print(f"\n== {title}: done in an earlier run (delete {done} to redo)")
        return False
    stage(title, cmd, env)
    done.touch()
    return True


def kept_secret(name: str) -> str:
    """One random secret per demo folder (the app's key, the dashboard password), kept across runs."""
    path = OUT / name
    if not path.exists():
        path.write_text(secrets.token_hex(16 if name == "admin_password" else 32))
        path.chmod(0o600)
    return path.read_text().strip()


def study_id() -> str:
    import tomllib

    return tomllib.loads(STUDY_CONFIG.read_text())["id"]


def demo_study_config() -> Path:
    """The default study with its plain link open: the demo prints that link for anyone to try
    (a real study that recruits through a panel keeps it off, see docs/security.md)."""
    text = STUDY_CONFIG.read_text()
    assert "# anonymous_link = false" in text, "study/default_study.toml no longer lists anonymous_link"
    path = OUT / "study.toml"
    path.write_text(text.replace("# anonymous_link = false", "anonymous_link = true", 1))
    return path


NGINX_CONF = """\
# Written by scripts/demo.py for one demo folder; nginx runs unprivileged from it.
daemon off;
worker_processes 1;
pid {out}/nginx.pid;
error_log {out}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {out}/access.log;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    scgi_temp_path {tmp}/scgi;
    uwsgi_temp_path {tmp}/uwsgi;
    # Bodies are small (the app refuses more than 64 KB): kept in memory, passed on only when whole.
    client_max_body_size 64k;
    client_body_buffer_size 64k;
    # A client that stops sending is dropped after these, without ever reaching gunicorn.
    client_header_timeout 15s;
    client_body_timeout 15s;
    send_timeout 30s;
    upstream study_app {{
        server 127.0.0.1:{app_port};
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://study_app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_read_timeout 60s;
        }}
    }}
}}
"""


def find_nginx() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)


def wait_until_served(url: str, procs: list[subprocess.Popen]) -> None:
    try:
        wait_for_http(url, 30, procs)
    except ServerError as exc:
        port = url.split(":")[-1].split("/")[0]
        raise SystemExit(f"demo: {exc}" + (f"; is port {port} in use? Set DEMO_PORT." if "exited" in str(exc) else "")) from None


def start_server(env: dict[str, str], out: Path, port: int) -> list[subprocess.Popen]:
    """gunicorn, behind nginx on `port` when nginx is installed; returns the processes (front first)."""
    nginx = find_nginx()
    app_port = free_port() if nginx else port
    args = ["-c", "deploy/gunicorn.conf.py", "--workers", "2", *([] if nginx else ["--access-logfile", str(out / "access.log")])]
    print(f"\n== Study: serving\n$ {shlex.join(['gunicorn', '--bind', f'127.0.0.1:{app_port}', *args, APP])}", flush=True)
    # Behind nginx the client's address comes from X-Forwarded-For (the login rate limit counts by it).
    app = start_gunicorn({**env, "STUDY_TRUSTED_PROXIES": "1"} if nginx else env, app_port, args, stdout=None, stderr=None,
                         cwd=REPO)
    procs = [app]
    try:
        wait_until_served(f"http://127.0.0.1:{app_port}/healthz", procs)
        if nginx is None:
            print("demo: nginx not found, so gunicorn faces the clients directly: a few stalled clients can hold all of its "
                  "workers. Install it (bash scripts/ensure-system-deps.sh, or apt-get install nginx-light) to serve "
                  "through nginx.", flush=True)
            return procs
        tmp = out / "nginx-tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        conf = out / "nginx.conf"
        conf.write_text(NGINX_CONF.format(out=out, tmp=tmp, port=port, app_port=app_port))
        front = [nginx, "-p", str(out), "-c", str(conf), "-e", str(out / "nginx-error.log")]
        print(f"$ {shlex.join(front)}", flush=True)
        procs.insert(0, subprocess.Popen(front, cwd=out, start_new_session=True))
        wait_until_served(f"http://127.0.0.1:{port}/healthz", procs)
    except BaseException:
        stop_server(procs)
        raise
    return procs


def stop_server(procs: list[subprocess.Popen]) -> None:
    for proc in procs:  # the front first
        stop_group(proc, timeout=30)


def main() -> int:
    started = time.monotonic()
    OUT.mkdir(parents=True, exist_ok=True)
    base = f"http://127.0.0.1:{PORT}"
    env = {**os.environ, "STUDY_DATABASE_URL": f"sqlite:///{OUT / 'study.sqlite'}", "STUDY_SECRET_KEY": kept_secret("secret_key"),
           "STUDY_ADMIN_PASSWORD": kept_secret("admin_password")}
    flask = [str(BIN / "flask"), "--app", "study"]
    stimuli, export, report = OUT / "stimuli", OUT / "export", OUT / "report"

    once("stimuli", "Researcher: generate the stimulus set",
         [str(BIN / "engine"), "generate-stimuli", "--out", str(stimuli), "--force", *GENERATE_ARGS], env)
    stage("Study: database", [*flask, "init-db"], env)
    once("admin", "Study: a dashboard login (user 'demo')", [*flask, "create-admin", "demo"], env)
    once("study", "Study: create and open the study", [*flask, "create-study", str(demo_study_config()), "--stimuli", str(stimuli),
                                                       "--owner", "demo"], env)

    server = start_server(env, OUT, PORT)
    try:
        if SIMULATE and not (OUT / ".done-report").exists():
            once("simulate", f"Participants: {SIMULATE} simulated participants through the real HTTP flow",
                 [*flask, "simulate", "--url", base, "--study", study_id(), "--participants", str(SIMULATE), *BOT_EFFECTS], env)
            stage("Study: export", [*flask, "export", "--out", str(export), "--include-bots"], env)
            (OUT / "analysis.toml").write_text("# The demo's participants are bots: keep them.\n[exclusions]\ndrop_bots = false\n")
            once("report", "Analyst: the report",
                 [str(BIN / "python"), "analysis/report.py", str(export / "responses.csv"), "--out", str(report),
                  "--config", str(OUT / "analysis.toml")], env)
        print(f"\nReady after {time.monotonic() - started:.1f} s.")
        print(f"  participant URL: {base}/study/{study_id()}")
        print(f"  dashboard URL:   {base}/admin/  (user demo, password in {OUT / 'admin_password'})")
        print(f"  stimulus set:    {stimuli} (contact sheet: {stimuli / 'contact_sheet.png'})")
        if (report / "report.html").exists():
            print(f"  report:          {report / 'report.html'}")
        print(f"  database:        {env['STUDY_DATABASE_URL']}")
        if not SERVE:
            print("DEMO_SERVE=0: stopping the server. Demo finished.")
            return 0
        print("Serving until Ctrl-C.", flush=True)
        return server[-1].wait()  # gunicorn
    except KeyboardInterrupt:
        print("\nStopped. Demo finished.")
        return 0
    finally:
        stop_server(server)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except subprocess.CalledProcessError as exc:
        print(f"demo: stage failed: {shlex.join(exc.cmd)} (exit {exc.returncode})", file=sys.stderr)
        sys.exit(1)
