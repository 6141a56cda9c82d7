"""A study of a stimulus set with class names (the manifest's dataset.classes): create-study keeps
them, the page offers one answer per class, the server takes only those, and the export names them
for the analysis, which reads such a study like a digit one."""
from __future__ import annotations

import csv

import pandas as pd
from sqlalchemy import select

import contracts
from analysis.report import main as report
from study import create_app
from study.db import db
from study.export import Selection, export_all
from study.models import Study
from study.testing.driver import Participant
from studyhelp import SHAPE_WORDS, SHAPES, shapes, twenty, write_config  # noqa: F401  (fixtures)


def test_a_class_study_keeps_its_names_and_takes_only_their_answers(tmp_path, shapes):
    url = f"sqlite:///{tmp_path / 'study.sqlite'}"
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "TESTING": True, "SECRET_KEY": "test-secret"})
    runner = app.test_cli_runner()
    assert runner.invoke(args=["init-db"]).exit_code == 0
    digit_words = runner.invoke(args=["create-study", str(write_config(tmp_path / "d.toml")), "--stimuli", str(shapes)])
    assert digit_words.exit_code == 1 and "Traceback" not in digit_words.output
    assert ("the stimulus set's classes are circle, square, triangle, but label.question and rate.question ask about digits"
            in digit_words.output), digit_words.output
    created = runner.invoke(args=["create-study", str(write_config(tmp_path / "s.toml", target_participants=8, **SHAPE_WORDS)),
                                  "--stimuli", str(shapes)])
    assert created.exit_code == 0, created.output
    client = app.test_client()
    people = [Participant("http://test", "test-study", {"participant": f"p{k}"}, client=client, seed=k) for k in range(6)]
    for person in people:
        assert person.run() == "CODE-OK"
    data = people[0].data
    assert data["classes"] == list(SHAPES) and not data["digits"]
    assert {t["target"] for t in data["trials"] if t["task"] == "rate"} <= set(SHAPES)

    late = Participant("http://test", "test-study", {"participant": "late"}, client=client, seed=9)
    late.start()
    label = next(t["i"] for t in late.data["trials"] if t["task"] == "label")
    for index in range(label):
        late.answer(index)
    refused = late.answer(label, response=3)  # a fourth class does not exist
    assert refused.status == 422 and refused.json()["error"] == "a label answer must be a class number from 0 to 2"

    with app.app_context():
        assert db.session.scalar(select(Study.classes)) == list(SHAPES)
        export_all(tmp_path / "export", Selection())
    frame = contracts.validate_responses_frame(pd.read_csv(tmp_path / "export" / "responses.csv"))
    assert set(frame["response_label"].dropna()) <= {0, 1, 2} and set(frame["true_label"]) <= {0, 1, 2}
    types = {r["column"]: r["type"] for r in csv.DictReader((tmp_path / "export" / "data_dictionary.csv").open(newline=""))
             if r["file"] == "responses.csv"}
    for column in ("true_label", "target_label", "response_label"):
        assert types[column].endswith("; class numbers: 0 = circle, 1 = square, 2 = triangle"), types[column]
    # The participants answered at random, catch trials included: none is excluded for those here.
    assert report([str(tmp_path / "export" / "responses.csv"), "--out", str(tmp_path / "report"), "--max-catch-failed", "99"]) == 0
    assert (tmp_path / "report" / "report.html").is_file()


def test_twenty_classes_go_through_the_server_and_the_export(tmp_path, twenty):
    """Class numbers above 9: taken up to K - 1, refused at K, and exported within the contract."""
    url = f"sqlite:///{tmp_path / 'study.sqlite'}"
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "TESTING": True, "SECRET_KEY": "test-secret"})
    runner = app.test_cli_runner()
    assert runner.invoke(args=["init-db"]).exit_code == 0
    config = write_config(tmp_path / "s.toml", target_participants=4, trials_per_participant=6, **SHAPE_WORDS)
    created = runner.invoke(args=["create-study", str(config), "--stimuli", str(twenty)])
    assert created.exit_code == 0, created.output
    client = app.test_client()
    person = Participant("http://test", "test-study", {"participant": "p"}, client=client, seed=1)
    person.start()
    labels = [t["i"] for t in person.data["trials"] if t["task"] == "label"]
    assert person.data["typed_keys"] and len(person.data["classes"]) == 20
    for index in range(len(person.data["trials"])):
        if index == labels[0]:
            refused = person.answer(index, response=20)
            assert refused.status == 422 and refused.json()["error"] == "a label answer must be a class number from 0 to 19"
        person.answer(index, response=19 if index == labels[0] else None)
    with app.app_context():
        export_all(tmp_path / "export", Selection())
    frame = contracts.validate_responses_frame(pd.read_csv(tmp_path / "export" / "responses.csv"))
    assert 19 in set(frame["response_label"].dropna()) and set(frame["true_label"]) <= set(range(20))
