"""docs/own-model-and-data.md, end to end at tiny sizes: the commands it gives, run from a folder
outside the checkout, on its shapes (docs/examples/make_shapes.py) and its network defined outside
the packages (docs/examples/nets.py).

Data → engine data / train (two regimes) / generate-stimuli → init-db, create-study → server and
bots → export → report. The data script and the server run as their own processes; the engine,
flask and report commands run in this process with the argv the page gives them (one interpreter
start instead of ten: about 6 CPU s less).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pandas as pd
import tomli_w

from analysis.report import main as report
from conftest import REPO, VENV_BIN, free_port, stop_group, wait_for_http
from engine import cli
from study import create_app
from study.testing.driver import Participant

EXAMPLES = REPO / "docs" / "examples"
CLASSES = ["circle", "square", "triangle"]
BOTS = 6
# The page's options at small sizes: 40 images per class (not 150), 30 epochs of batches of 16 (about the
# page's number of steps: clean test accuracy 100% and 92%, not 71% and 79% at 15 epochs), 2 sources per class (not 6).
ARCH = ["--set", f"architecture={EXAMPLES / 'nets.py'}:small_cnn", "--set", "epochs=30", "--set", "batch_size=16",
        "--set", "model.mean=[0.3]", "--set", "model.std=[0.3]"]


def flask(*argv: str | Path) -> str:
    """`flask --app study ARGV`, in this process, on the database the environment names."""
    result = create_app().test_cli_runner().invoke(args=[str(a) for a in argv])
    assert result.exit_code == 0, f"{argv}:\n{result.output[-2000:]}"
    return result.output


def shapes_config(path: Path) -> Path:
    """The page's shapes.toml: the default study with its own id, 2 practice images and the two questions about shapes."""
    config = tomllib.loads((REPO / "study" / "default_study.toml").read_text())
    config.update(id="shapes-demo", title="Shapes study", practice_trials=2, target_participants=BOTS)
    config["label"]["question"] = "Which of these is it?"
    config["rate"]["question"] = "How much does this look like a genuine {class}?"
    path.write_text(tomli_w.dumps(config))
    return path


def test_the_worked_example_runs_end_to_end_from_outside_the_checkout(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # out/ and runs/models/ land here, as in a user's own folder
    subprocess.run([sys.executable, EXAMPLES / "make_shapes.py", "out/shapes", "--per-class", "40"], check=True, capture_output=True)

    assert cli.main(["data", "--dataset", "out/shapes"]) == 0
    assert "classes circle, square, triangle" in capsys.readouterr().out
    for condition in ("normal", "gradreg"):
        assert cli.main(["train", "--condition", condition, "--dataset", "out/shapes", *ARCH]) == 0
    trained = sorted(p.name for p in (tmp_path / "runs" / "models").glob("*.pt"))
    assert len(trained) == 2
    assert cli.main(["evaluate", "--conditions", "normal,gradreg", "--dataset", "out/shapes", *ARCH, "--limit", "12",
                     "--pgd-eps", "0.1", "--no-ensemble", "--out", "out/shapes-eval"]) == 0  # the ensemble at K = 3: test_evaluate.py
    robustness = pd.read_csv(tmp_path / "out" / "shapes-eval" / "robustness.csv")
    assert {"fgsm", "tgsm", "pgd"} <= set(robustness["attack"])
    assert set(robustness["evaluated"]) >= {"normal", "gradreg"}
    train_sets = [s for a, s in zip(ARCH[::2], ARCH[1::2]) for s in ("--set", "train." + s)]
    assert cli.main(["generate-stimuli", "--out", "out/shapes-stimuli", "--quiet", "--set", "dataset=out/shapes",
                     "--set", 'conditions=["normal","gradreg"]', "--set", "sources_per_class=2", "--set", "practice=2",
                     "--set", "catch=3", "--set", "step=0.02", *train_sets]) == 0
    assert sorted(p.name for p in (tmp_path / "runs" / "models").glob("*.pt")) == trained  # the models came from the cache
    manifest = json.loads((tmp_path / "out" / "shapes-stimuli" / "manifest.json").read_text())
    assert manifest["dataset"]["classes"] == CLASSES
    assert {s["condition"] for s in manifest["stimuli"]} >= {"normal", "gradreg", "clean"}

    env = {"STUDY_DATABASE_URL": f"sqlite:///{tmp_path / 'study.sqlite'}", "STUDY_SECRET_KEY": "worked-example"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    flask("init-db")
    created = flask("create-study", shapes_config(tmp_path / "shapes.toml"), "--stimuli", "out/shapes-stimuli")
    assert "study 'shapes-demo' created: 3 lists" in created and "(normal, gradreg, clean)" in created, created
    port = free_port()
    server = subprocess.Popen([VENV_BIN / "flask", "--app", "study", "run", "--port", str(port)], cwd=tmp_path, env=os.environ.copy(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(url + "/healthz", proc=server)
        bots = flask("simulate", "--url", url, "-n", BOTS, "--accuracy", "normal=0.5", "--accuracy", "gradreg=0.8",
                     "--rating-by-l2", "1.5", "0.2")
        assert f"{BOTS} bots: {BOTS} finished, 0 stranded" in bots, bots
        page = Participant(url, "shapes-demo", {"participant": "look"}, seed=0)
        page.start()
        assert page.data["classes"] == CLASSES and not page.data["digits"]  # the page offers the shapes by name
    finally:
        stop_group(server, timeout=30)

    flask("export", "--out", "out/shapes-export", "--include-bots")
    dictionary = pd.read_csv(tmp_path / "out" / "shapes-export" / "data_dictionary.csv")
    assert dictionary["type"].str.endswith("class numbers: 0 = circle, 1 = square, 2 = triangle").sum() == 3
    (tmp_path / "out" / "bots.toml").write_text("[exclusions]\ndrop_bots = false\n")
    capsys.readouterr()
    assert report(["out/shapes-export/responses.csv", "--out", "out/shapes-report", "--config", "out/bots.toml",
                   "--manifest", "out/shapes-stimuli/manifest.json", "--bootstrap", "50"]) == 0
    assert f"from {BOTS} participants" in capsys.readouterr().out
    counts = pd.read_csv(tmp_path / "out" / "shapes-report" / "answer_counts.csv")
    assert set(counts["condition"]) >= {"normal", "gradreg", "clean"} and counts["answers"].sum() > 0
    assert "<table" in (tmp_path / "out" / "shapes-report" / "report.html").read_text()


def test_create_study_on_a_database_without_its_tables_says_to_run_init_db(tmp_path):
    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'fresh.sqlite'}", "TESTING": True, "SECRET_KEY": "x"})
    result = app.test_cli_runner().invoke(args=["create-study", str(shapes_config(tmp_path / "s.toml")), "--stimuli", str(tmp_path)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().splitlines() == [f"Error: the database sqlite:///{tmp_path / 'fresh.sqlite'} has no study tables; "
                                                  "run `flask --app study init-db` first"]


def test_more_shapes_leave_the_first_three_classes_as_they_were(tmp_path):
    def make(out: Path, *more: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, EXAMPLES / "make_shapes.py", out, "--per-class", "3", *more], capture_output=True, text=True)

    assert make(tmp_path / "three").returncode == 0 and make(tmp_path / "ten", "--classes", "10").returncode == 0
    assert sorted(p.name for p in (tmp_path / "ten").iterdir()) == sorted(
        ["circle", "square", "triangle", "diamond", "ring", "plus", "cross", "bar", "column", "frame"])
    for shape in CLASSES:
        for image in (tmp_path / "three" / shape).iterdir():
            assert image.read_bytes() == (tmp_path / "ten" / shape / image.name).read_bytes()
    refused = make(tmp_path / "eleven", "--classes", "11")
    assert refused.returncode == 2 and refused.stderr.strip().splitlines()[-1].startswith("make_shapes.py: error: argument --classes")
    assert not (tmp_path / "eleven").exists()
