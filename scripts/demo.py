"""The README's first command (`make demo`): the whole pipeline on the embedded data.

engine generate-stimuli → create and open a study → serve it with gunicorn → (first run)
simulated participants → export → python analysis/report.py → print the URLs → serve until
Ctrl-C. Every stage is the command a user would type; a stage whose output exists is skipped,
so a second run reaches the serving state in seconds.

Environment: DEMO_OUT (default runs/demo), DEMO_PORT (8000), DEMO_SERVE=0 to exit instead of
serving, DEMO_SIMULATE=N bots on the first run (default 24, 0 for none), DEMO_GENERATE_ARGS: extra
`engine generate-stimuli` arguments (e.g. "--set sources_per_class=1 --models a.pt b.pt" for a tiny run).
"""
from __future__ import annotations

import os
import secrets
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
OUT = Path(os.environ.get("DEMO_OUT", REPO / "runs" / "demo")).resolve()
PORT = int(os.environ.get("DEMO_PORT", "8000"))
SERVE = os.environ.get("DEMO_SERVE", "1") != "0"
SIMULATE = int(os.environ.get("DEMO_SIMULATE", "24"))
GENERATE_ARGS = shlex.split(os.environ.get("DEMO_GENERATE_ARGS", ""))
STUDY_CONFIG = REPO / "study" / "default_study.toml"
# The bots answer as if regularized models' images looked more like their targets. These are
# assumed effects that make the demo's report non-trivial, not findings.
BOT_EFFECTS = ["--rating", "normal=2.0", "--rating", "adversarial=2.2", "--rating", "distilled=2.1",
               "--rating", "gradreg=3.4", "--rating", "clean=1.5", "--participant-sd", "0.5", "--image-sd", "0.5"]


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


def start_server(env: dict[str, str]) -> subprocess.Popen:
    cmd = [str(BIN / "gunicorn"), "-c", "deploy/gunicorn.conf.py", "--bind", f"127.0.0.1:{PORT}",
           "--workers", "2", "--access-logfile", str(OUT / "access.log"), "study:create_app()"]
    print(f"\n== Study: serving\n$ {shlex.join(cmd)}", flush=True)
    server = subprocess.Popen(cmd, cwd=REPO, env=env, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"demo: gunicorn exited with {server.returncode}; is port {PORT} in use? Set DEMO_PORT.")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/healthz", timeout=2):
                return server
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"demo: the server did not answer on port {PORT} within 30 s")


def stop_server(server: subprocess.Popen) -> None:
    os.killpg(server.pid, signal.SIGTERM)
    server.wait(timeout=30)


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
    once("study", "Study: create and open the study", [*flask, "create-study", str(STUDY_CONFIG), "--stimuli", str(stimuli)], env)
    once("admin", "Study: a dashboard login (user 'demo')", [*flask, "create-admin", "demo"], env)

    server = start_server(env)
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
        server.wait()
        return server.returncode
    except KeyboardInterrupt:
        print("\nStopped. Demo finished.")
        return 0
    finally:
        if server.poll() is None:
            stop_server(server)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except subprocess.CalledProcessError as exc:
        print(f"demo: stage failed: {shlex.join(exc.cmd)} (exit {exc.returncode})", file=sys.stderr)
        sys.exit(1)
