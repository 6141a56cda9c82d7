"""Creating a study: config and stimulus-set checks, the Latin-square lists, migrations."""
from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import contracts
from study.config import ConfigError, load_config, parse_config
from study.design import build_list_design
from study.testing.synthetic import write_stimulus_set
from studyhelp import BASE_CONFIG, make_app, stimset, write_config  # noqa: F401  (fixtures)


@pytest.fixture
def cli(tmp_path):
    from study import create_app

    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'cli.sqlite'}"})
    runner = app.test_cli_runner()
    assert runner.invoke(args=["init-db"]).exit_code == 0
    return runner


def test_create_study_reports_user_mistakes_in_one_short_message(cli, stimset, tmp_path):
    good = write_config(tmp_path / "good.toml")
    ok = cli.invoke(args=["create-study", str(good), "--stimuli", str(stimset)])
    assert ok.exit_code == 0 and "6 lists of 3 images" in ok.output and "/study/test-study" in ok.output

    broken = tmp_path / "broken-set"
    shutil.copytree(stimset, broken)
    (broken / "images" / "stim-0000.png").write_bytes(b"tampered")
    bad_config = write_config(tmp_path / "bad.toml", catch_rate=2, colour="red", tasks=["label", "guess"])
    cases = [
        (["create-study", str(good), "--stimuli", str(stimset)], "already exists"),
        (["create-study", str(good), "--stimuli", str(broken)], "stim-0000: images/stim-0000.png does not match its sha256"),
        (["create-study", str(bad_config), "--stimuli", str(stimset)], "unknown key 'colour'"),
        (["create-study", str(tmp_path / "none.toml"), "--stimuli", str(stimset)], "file not found"),
        (["create-study", str(write_config(tmp_path / "big.toml", id="big", trials_per_participant=4)),
          "--stimuli", str(stimset)], "must be a multiple of the number of conditions"),
    ]
    for args, message in cases:
        result = cli.invoke(args=args)
        assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output, result.output
    assert "catch_rate must be between 0 and 0.5" in cli.invoke(args=cases[2][0]).output

    exported = cli.invoke(args=["export", "--out", str(tmp_path / "export")])
    assert exported.exit_code == 0 and "wrote 0 answers" in exported.output
    header = (tmp_path / "export" / "responses.csv").read_text().splitlines()[0]
    assert header.split(",") == contracts.response_columns()


def test_default_config_parses():
    config = load_config(Path(__import__("study").__file__).with_name("default_study.toml"))
    assert config.rating.anchors["3"] == "Somewhat" and config.tasks == ("label", "rate") and config.image_scaling == "pixelated"
    with pytest.raises(ConfigError, match="image_scaling must be one of pixelated, smooth, not 'bilinear'"):
        parse_config({**BASE_CONFIG, "image_scaling": "bilinear"})
    with pytest.raises(ConfigError, match="rate.question must contain"):
        parse_config({**BASE_CONFIG, "rate": {"question": "How real?"}})


def test_lists_are_a_latin_square_over_conditions(tmp_path):
    directory = write_stimulus_set(tmp_path, sources=12, conditions=("normal", "adversarial", "gradreg", "clean"))
    manifest = json.loads((directory / "manifest.json").read_text())
    by_id = {s["id"]: s for s in manifest["stimuli"]}
    design = build_list_design(manifest, parse_config({**BASE_CONFIG, "trials_per_participant": 4}))
    assert len(design.lists) == 3 * 4  # 3 blocks of 4 sources × 4 rotations
    for items in design.lists:
        assert len({by_id[k]["source_id"] for k in items}) == 4  # each source at most once
        assert Counter(by_id[k]["condition"] for k in items) == {c: 1 for c in design.conditions}
    every = [k for items in design.lists for k in items]
    experimental = [s["id"] for s in manifest["stimuli"] if s["role"] == "experimental"]
    assert sorted(every) == sorted(experimental)  # every stimulus in exactly one list


def test_migrations_create_exactly_the_models_tables(make_app):
    from study.db import db

    app = make_app()
    with app.app_context(), db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), db.metadata) == []
