"""The README's first command (`make demo`): the main job, end to end, on the embedded data.

Each stage runs the same command a user would type. Stages that later issues add (stimulus
generation, study creation, serving) slot in here; DEMO_SERVE=0 makes the demo exit instead of
serving once serving exists.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
OUT = Path(os.environ.get("DEMO_OUT", REPO / "runs" / "demo"))


def stage(title: str, cmd: list[str], env: dict[str, str] | None = None) -> None:
    print(f"\n== {title}\n$ {' '.join(cmd)}", flush=True)
    start = time.monotonic()
    subprocess.run(cmd, cwd=REPO, env={**os.environ, **(env or {})}, check=True)
    print(f"   ({time.monotonic() - start:.1f} s)", flush=True)


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    stage("Researcher: the embedded data set", [str(BIN / "engine"), "data"])
    db_url = f"sqlite:///{OUT / 'study.sqlite'}"
    stage("Study: database", [str(BIN / "flask"), "--app", "study", "init-db"], env={"STUDY_DATABASE_URL": db_url})
    stage("Analyst: report on the example responses",
          [str(BIN / "python"), "analysis/report.py", "contracts/examples/responses.valid.csv", "--out", str(OUT / "report")])
    print(f"\nDemo finished; outputs in {OUT}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except subprocess.CalledProcessError as exc:
        print(f"demo: stage failed: {' '.join(exc.cmd)} (exit {exc.returncode})", file=sys.stderr)
        sys.exit(1)
