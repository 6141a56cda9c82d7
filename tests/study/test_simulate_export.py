"""Bots through the real HTTP flow of a server started with deploy/gunicorn.conf.py, and the
exports they end up in (responses.csv, participants.csv, data dictionary), on SQLite and
PostgreSQL."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path
from typing import Iterator

import pandas as pd

import contracts
from conftest import REPO, VENV_BIN, free_port, wait_for_http
from study.testing.driver import Participant
from study.export import PARTICIPANT_COLUMNS, Selection, export_all
from studyhelp import make_app, stimset, write_config  # noqa: F401  (fixtures)

SECRET = "test-secret"
BOTS = 50


@contextlib.contextmanager
def deployed(database_url: str) -> Iterator[str]:
    """gunicorn with the deployment config (its bind and worker count from the environment)."""
    port = free_port()
    env = {**os.environ, "STUDY_DATABASE_URL": database_url, "STUDY_SECRET_KEY": SECRET,
           "STUDY_BIND": f"127.0.0.1:{port}", "STUDY_WORKERS": "2"}
    proc = subprocess.Popen([str(VENV_BIN / "gunicorn"), "-c", str(REPO / "deploy" / "gunicorn.conf.py"), "study:create_app()"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", proc=proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)


def cli(database_url: str, *args: str, secret: str = SECRET):
    """A `flask --app study` command in this process (a subprocess would spend seconds importing)."""
    from study import create_app

    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url, "SECRET_KEY": secret})
    return app.test_cli_runner().invoke(args=list(args))


def test_bots_answers_are_exactly_the_flagged_export(database_url, stimset, tmp_path):
    from study import create_app
    from study.security import session_mark
    from study.simulate import AnswerModel, simulate, study_stimuli

    assert cli(database_url, "init-db").exit_code == 0
    assert cli(database_url, "create-study", str(write_config(tmp_path / "s.toml", target_participants=4)),
               "--stimuli", str(stimset)).exit_code == 0
    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url, "SECRET_KEY": SECRET})
    model = AnswerModel(accuracy={"normal": 0.9, "gradreg": 0.5}, rating={"clean": 4.5}, participant_sd=0.5,
                        image_sd=0.3, careless=0.1, dropout=0.1)
    with deployed(database_url) as base:
        with app.app_context():  # more bots than the study's target: bots never fill it
            results = simulate(base, "test-study", BOTS, session_mark("test-study", "bot"), model,
                               study_stimuli("test-study"), concurrency=8, seed=3)
        by_cli = cli(database_url, "simulate", "--url", base, "--study", "test-study", "-n", "3", "--dropout", "0")
        forged = cli(database_url, "simulate", "--url", base, "-n", "1", secret="not-the-servers")
        # The study is still open to the real participants it was made for.
        real = Participant(base, "test-study", {"participant": "human-1"}, seed=1)
        assert real.run() == "CODE-OK"

    outcomes = {r.outcome for r in results}
    assert outcomes <= {"completed", "dropped"} and "completed" in outcomes, [r.error for r in results]
    assert by_cli.exit_code == 0 and "3 bots: 3 finished, 0 stranded (3 completed); 36 answers" in by_cli.stdout, by_cli.output
    assert forged.exit_code == 1 and "mark parameter is not valid" in forged.output
    assert "Traceback" not in forged.output and "<html" not in forged.output

    plain = cli(database_url, "export", "--out", str(tmp_path / "plain"))
    assert "left out" in plain.stdout and "--include-bots" in plain.stdout
    assert len(pd.read_csv(tmp_path / "plain" / "responses.csv")) == len(real.data["trials"])

    assert cli(database_url, "export", "--out", str(tmp_path / "all"), "--include-bots").exit_code == 0
    frame = contracts.validate_responses_frame(pd.read_csv(tmp_path / "all" / "responses.csv"))
    bots = frame[frame["is_bot"]]
    given = {(r.session_id, i, v) for r in results for i, v in r.answers.items()}
    exported = {(s, i, int(lab if pd.notna(lab) else rat)) for s, i, lab, rat in
                bots[["session_id", "trial_index", "response_label", "response_rating"]].itertuples(index=False)}
    simulated_by_cli = len(bots) - len(given)
    assert given <= exported and simulated_by_cli == 36  # the bots' answers, each once, and nothing else
    assert not frame.loc[~frame["is_bot"]].empty and not frame.loc[~frame["is_bot"], "is_pilot"].any()


def test_export_files_selection_and_dictionary(make_app, tmp_path):
    app = make_app()
    client = app.test_client()
    done = Participant("http://test", "test-study", {"PROLIFIC_PID": "RAWPID-1"}, client=client, seed=1)
    done.run()
    leaver = Participant("http://test", "test-study", {"participant": "RAWLINK-2"}, client=client, seed=2)
    leaver.start()
    leaver.answer(0)
    leaver.withdraw()
    with app.app_context():
        default = export_all(tmp_path / "default", Selection())
        everything = export_all(tmp_path / "all", Selection(study="test-study", withdrawn=True))
    assert default == {"responses.csv": len(done.data["trials"]), "participants.csv": 1,
                       "data_dictionary.csv": len(contracts.response_columns()) + len(PARTICIPANT_COLUMNS)}
    assert everything["responses.csv"] == len(done.data["trials"]) + 1 and everything["participants.csv"] == 2

    people = pd.read_csv(tmp_path / "all" / "participants.csv")
    assert list(people.columns) == list(PARTICIPANT_COLUMNS)
    finished = people.set_index("state").loc["completed"]
    assert finished["completion_code"] == "CODE-OK" and finished["answers"] == len(done.data["trials"])
    assert finished["catch_trials"] == 1 and finished["panel"] == "prolific" and pd.notna(finished["completed_at"])
    dictionary = pd.read_csv(tmp_path / "all" / "data_dictionary.csv")
    assert dictionary["description"].notna().all()
    for name in ("responses.csv", "participants.csv"):
        assert set(dictionary.loc[dictionary["file"] == name, "column"]) == set(pd.read_csv(tmp_path / "all" / name).columns)
    for path in Path(tmp_path).rglob("*.csv"):  # raw panel ids never reach an export
        assert "RAWPID" not in path.read_text() and "RAWLINK" not in path.read_text()


def test_answer_model_follows_the_effects_per_condition():
    import random
    import statistics

    from study.simulate import AnswerModel, Bot, StimulusFacts

    stimuli = {"n": StimulusFacts("normal", "experimental", 3, 8), "g": StimulusFacts("gradreg", "experimental", 3, 8),
               "c": StimulusFacts("clean", "catch", 5, None)}
    model = AnswerModel(accuracy={"normal": 0.9, "gradreg": 0.2}, rating={"gradreg": 4.2}, careless=0.0)
    data = {"rating": {"min": 1, "max": 5}}
    bot = Bot(model, stimuli, {}, random.Random(1))

    def answers(stimulus: str, task: str, n: int = 2000) -> list[int]:
        return [bot.choose({"stimulus": stimulus, "task": task}, data) for _ in range(n)]

    assert abs(statistics.mean(a == 3 for a in answers("n", "label")) - 0.9) < 0.03
    assert abs(statistics.mean(a == 3 for a in answers("g", "label")) - 0.2) < 0.03
    assert set(answers("c", "label", 50)) == {5}  # attentive bots pass catch trials
    assert abs(statistics.mean(answers("g", "rate")) - 4.2) < 0.15 and set(answers("n", "rate")) == {1, 2, 3, 4, 5}
    # One rule for every condition: the mean rating follows the image's L2 change, not its condition.
    stimuli |= {"big": StimulusFacts("normal", "experimental", 3, 8, l2=10.0), "small": StimulusFacts("gradreg", "experimental", 3, 8, l2=2.0)}
    by_l2 = Bot(AnswerModel(rating_by_l2=(1.5, 0.2)), stimuli, {}, random.Random(3))
    means = {s: statistics.mean(by_l2.choose({"stimulus": s, "task": "rate"}, data) for _ in range(2000)) for s in ("big", "small")}
    assert abs(means["big"] - 3.5) < 0.1 and abs(means["small"] - 1.9) < 0.1
    careless = Bot(AnswerModel(careless=1.0), stimuli, {}, random.Random(2))
    assert statistics.mean(careless.choose({"stimulus": "c", "task": "label"}, data) == 5 for _ in range(2000)) < 0.2
