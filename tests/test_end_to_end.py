"""The README's first command (`make demo`), at small scale: engine → study (bots and one Chromium participant) → analysis.

Two tiny models (two epochs on 1,500 digits) and one source digit per class keep it to about a minute;
everything else is the real pipeline: `make demo`'s script, gunicorn, SQLite, the export and the report.
"""
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO, VENV_BIN, free_port

BOTS = 3
CONDITIONS = ("normal", "gradreg")


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> list[Path]:
    """Two of the zoo's models, trained just well enough that every class has digits both get right."""
    out = tmp_path_factory.mktemp("models")
    for condition in CONDITIONS:
        subprocess.run([str(VENV_BIN / "engine"), "train", "--condition", condition, "--set", "epochs=2",
                        "--set", "train_size=1500", "--out", str(out)], cwd=REPO, check=True, capture_output=True)
    return sorted(out.glob("*.pt"))


def demo_env(out: Path, port: int, models: list[Path], serve: bool) -> dict[str, str]:
    conditions = shlex.quote("conditions=" + json.dumps(list(CONDITIONS)))
    args = f"--set sources_per_class=1 --set practice=3 --set catch=2 --set {conditions} --quiet --models " + " ".join(map(str, models))
    return {**os.environ, "DEMO_OUT": str(out), "DEMO_PORT": str(port), "DEMO_SERVE": "1" if serve else "0",
            "DEMO_SIMULATE": str(BOTS), "DEMO_GENERATE_ARGS": args}


def wait_for_line(proc: subprocess.Popen, pattern: str, timeout: float) -> list[str]:
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError("demo exited early:\n" + "".join(lines[-40:]))
        lines.append(line)
        if re.search(pattern, line):
            return lines
    raise AssertionError(f"no line matching {pattern!r} within {timeout} s:\n" + "".join(lines[-40:]))


def participant_session_in_chromium(page, url: str) -> None:
    """Consent, instructions and every trial by keyboard, as a participant from a plain link."""
    page.goto(url)
    page.wait_for_selector("button[value=agree]:focus")
    page.keyboard.press("Enter")  # consent: "I agree" has the focus
    page.wait_for_selector("text=Instructions")
    page.wait_for_selector("button.primary:focus")
    page.keyboard.press("Enter")
    page.wait_for_selector('#trial[data-ready="true"]', timeout=15000)
    n = page.evaluate("JSON.parse(document.getElementById('study-data').textContent).trials.length")
    for index in range(n):
        trial = page.wait_for_selector(f'#trial[data-index="{index}"][data-ready="true"]', timeout=15000)
        page.keyboard.press("7" if trial.get_attribute("data-task") == "label" else "3")
    page.wait_for_selector("#completion-code", timeout=20000)


@pytest.mark.browser
def test_demo_pipeline_end_to_end(tmp_path, tiny_models, page):
    out, port = tmp_path / "demo", free_port()
    # Ctrl-C as at a terminal: a suite started in the background (`make test &`, no job control) runs
    # with SIGINT ignored, children inherit that, and the demo would never see the interrupt.
    demo = subprocess.Popen(["make", "--no-print-directory", "demo"], cwd=REPO, env=demo_env(out, port, tiny_models, serve=True),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        lines = wait_for_line(demo, r"Serving until Ctrl-C", timeout=400)
        text = "".join(lines)
        url = re.search(r"participant URL: (\S+)", text).group(1)
        assert (out / "report" / "report.html").is_file() and (out / "stimuli" / "contact_sheet.png").is_file()
        participant_session_in_chromium(page, url)
    finally:
        os.killpg(demo.pid, signal.SIGINT)  # Ctrl-C: make reports the interrupt, the demo stops its server cleanly
        # The demo gives nginx and then gunicorn 30 s each before SIGKILL (scripts/demo.py): allow both and a margin.
        try:
            rest, _ = demo.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)  # leave no demo serving behind a failed test
            raise
    assert "Stopped. Demo finished." in rest

    # The report's counts equal the answers given: bots plus the Chromium participant, all exported.
    env = {**os.environ, "STUDY_DATABASE_URL": f"sqlite:///{out / 'study.sqlite'}"}
    subprocess.run([str(VENV_BIN / "flask"), "--app", "study", "export", "--out", str(tmp_path / "export"), "--include-bots"],
                   cwd=REPO, env=env, check=True, capture_output=True)
    responses = pd.read_csv(tmp_path / "export" / "responses.csv")
    assert responses["session_id"].nunique() == BOTS + 1
    subprocess.run([sys.executable, "analysis/report.py", str(tmp_path / "export" / "responses.csv"), "--out", str(tmp_path / "report"),
                    "--config", str(out / "analysis.toml"), "--bootstrap", "50"], cwd=REPO, check=True, capture_output=True)
    counts = pd.read_csv(tmp_path / "report" / "answer_counts.csv").set_index(["condition", "task"])["answers"]
    given = responses.groupby(["condition", "task"]).size()
    assert counts.sort_index().to_dict() == given.sort_index().to_dict() and counts.sum() == len(responses)

    # A second run reuses every stage and only restarts the server.
    start = time.monotonic()
    again = subprocess.run(["make", "--no-print-directory", "demo"], cwd=REPO, env=demo_env(out, free_port(), tiny_models, serve=False),
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert again.stdout.count("done in an earlier run") == 3 and "Demo finished" in again.stdout
    assert time.monotonic() - start < 60
