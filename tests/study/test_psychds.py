"""Psych-DS export: a validator written from the Psych-DS 1.x rules, the study's export passing it,
kinds of violation it rejects, and the analysis reading the folder with the same results as the CSV."""
from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select

import contracts
from study.db import db
from study.export import write_psychds
from study.responses import view_table
from studyhelp import make_app, stimset  # noqa: F401  (fixtures)

# Psych-DS 1.x: data files are named by keyword-value pairs, values letters and digits, ending _data.csv
DATA_FILE = re.compile(r"^([a-z]+-[a-zA-Z0-9]+)(_[a-z]+-[a-zA-Z0-9]+)*_data\.csv$")
KEYWORDS = {"study", "site", "subject", "session", "task", "condition", "trial", "stimulus", "description"}
CONTEXTS = {"http://schema.org/", "https://schema.org/", "http://schema.org", "https://schema.org"}


def psychds_problems(folder: Path) -> list[str]:
    """Every violation of the Psych-DS rules this validator checks, in words (empty: valid)."""
    described = folder / "dataset_description.json"
    if not described.is_file():
        return ["no dataset_description.json"]
    try:
        meta = json.loads(described.read_text())
    except json.JSONDecodeError as exc:
        return [f"dataset_description.json is not JSON: {exc}"]
    problems = []
    if meta.get("@context") not in CONTEXTS:
        problems.append("@context must be http://schema.org/")
    if meta.get("@type") != "Dataset":
        problems.append("@type must be Dataset")
    problems += [f"missing required field {f}" for f in ("name", "description", "variableMeasured") if not meta.get(f)]
    measured = {v if isinstance(v, str) else v.get("name") for v in meta.get("variableMeasured") or []
                if isinstance(v, str) or (isinstance(v, dict) and v.get("@type") == "PropertyValue")}
    data = folder / "data"
    if not data.is_dir():
        return problems + ["no data/ folder"]
    files = [p for p in data.rglob("*") if p.is_file() and "raw" not in p.relative_to(data).parts[:1]]
    csvs = [p for p in files if p.name.endswith(".csv")]
    if not csvs:
        problems.append("no data file under data/")
    for path in csvs:
        if not DATA_FILE.match(path.name):
            problems.append(f"{path.name}: not keyword-value pairs ending in _data.csv")
        else:
            keys = {pair.split("-")[0] for pair in path.name.removesuffix("_data.csv").split("_")}
            problems += [f"{path.name}: unknown keyword {k}" for k in sorted(keys - KEYWORDS)]
        with path.open(newline="") as fh:
            rows = list(csv.reader(fh))
        if not rows or not all(rows[0]):
            problems.append(f"{path.name}: no header, or an empty column name")
            continue
        header = rows[0]
        if len(set(header)) < len(header):
            problems.append(f"{path.name}: duplicate column names")
        problems += [f"{path.name}: line {i}: {len(r)} fields, header has {len(header)}" for i, r in enumerate(rows[1:], 2) if len(r) != len(header)]
        problems += [f"{path.name}: column {c} not listed in variableMeasured" for c in header if c not in measured]
        if "row_id" in header:
            ids = [r[header.index("row_id")] for r in rows[1:] if len(r) == len(header)]
            if len(set(ids)) < len(ids):
                problems.append(f"{path.name}: row_id is not unique")
    return problems


@pytest.fixture
def exported(make_app, tmp_path) -> Path:
    """The study's export command on a study (its data file has the header only: no answers yet)."""
    app = make_app()
    with app.app_context():
        assert list(view_table().columns.keys()) == contracts.response_columns()  # the writer's header order
        db.engine.dispose()
    result = app.test_cli_runner().invoke(args=["export", "--format", "psych-ds", "--out", str(tmp_path / "ds")])
    assert result.exit_code == 0, result.output
    return tmp_path / "ds"


def test_the_study_export_is_a_valid_psychds_dataset(exported):
    assert psychds_problems(exported) == []
    assert [p.name for p in (exported / "data").iterdir()] == ["study-teststudy_data.csv"]
    meta = json.loads((exported / "dataset_description.json").read_text())
    assert [v["name"] for v in meta["variableMeasured"]] == ["row_id", *contracts.response_columns()]


def break_context(ds: Path) -> None:
    meta = json.loads((ds / "dataset_description.json").read_text())
    (ds / "dataset_description.json").write_text(json.dumps({**meta, "@context": "http://example.org/"}))


def edit_meta(**change):
    def edit(ds: Path) -> None:
        meta = json.loads((ds / "dataset_description.json").read_text())
        meta.update(change)
        (ds / "dataset_description.json").write_text(json.dumps({k: v for k, v in meta.items() if v is not None}))
    return edit


def unlisted_column(ds: Path) -> None:
    meta = json.loads((ds / "dataset_description.json").read_text())
    meta["variableMeasured"] = [v for v in meta["variableMeasured"] if v["name"] != "rt_ms"]
    (ds / "dataset_description.json").write_text(json.dumps(meta))


def rename(new: str):
    return lambda ds: (ds / "data" / "study-teststudy_data.csv").rename(ds / "data" / new)


def duplicate_row_id(ds: Path) -> None:
    path = ds / "data" / "study-teststudy_data.csv"
    header = path.read_text().splitlines()[0]
    row = ",".join(["7"] + [""] * (header.count(",")))
    path.write_text(f"{header}\n{row}\n{row}\n")


def ragged_row(ds: Path) -> None:
    path = ds / "data" / "study-teststudy_data.csv"
    path.write_text(path.read_text() + "1,2,3\n")


@pytest.fixture(scope="module")
def simulated() -> pd.DataFrame:
    from analysis.simulate import simulate

    return simulate("matched", participants=12, sources=16, seed=5)


def with_every_column(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame in the view's columns and order (the optional columns the simulator leaves out, empty)."""
    from contracts import response_columns

    full = frame.reindex(columns=response_columns())
    full["after_timeout"] = full["after_timeout"].fillna(False).astype(bool)  # the simulator's participants never time out
    return full


def as_rows(frame: pd.DataFrame):
    frame = with_every_column(frame)
    return frame.astype(object).where(frame.notna(), None).itertuples(index=False, name=None)


@pytest.fixture
def dataset(simulated, tmp_path) -> Path:
    """A small dataset written by the export's writer (no database: the violations need only files)."""
    write_psychds(tmp_path / "ds", {"test-study": as_rows(simulated.head(40))})
    assert psychds_problems(tmp_path / "ds") == []
    return tmp_path / "ds"


@pytest.mark.parametrize("violate, says", [
    (break_context, "@context"),
    (edit_meta(**{"@type": "Thing"}), "@type"),
    (edit_meta(name=None), "missing required field name"),
    (edit_meta(variableMeasured=None), "missing required field variableMeasured"),
    (unlisted_column, "rt_ms not listed in variableMeasured"),
    (rename("study-test_study_data.csv"), "not keyword-value pairs"),   # "_" inside a value
    (rename("study-teststudy.csv"), "not keyword-value pairs"),         # no _data suffix
    (rename("colour-red_data.csv"), "unknown keyword colour"),
    (duplicate_row_id, "row_id is not unique"),
    (ragged_row, "fields, header has"),
    (lambda ds: (ds / "dataset_description.json").unlink(), "no dataset_description.json"),
    (lambda ds: shutil.rmtree(ds / "data"), "no data/ folder"),
])
def test_the_validator_rejects_each_kind_of_violation(dataset, violate, says):
    violate(dataset)
    assert any(says in p for p in psychds_problems(dataset)), psychds_problems(dataset)


def test_the_analysis_reads_the_folder_with_the_same_results_as_the_csv(tmp_path):
    from analysis.loading import load_responses
    from analysis.report import main
    from analysis.simulate import simulate

    responses = with_every_column(simulate("nested", participants=6, sources=8, seed=5))
    csv_path = tmp_path / "responses.csv"
    responses.to_csv(csv_path, index=False)
    halves = {"sim-a": responses.iloc[: len(responses) // 2], "sim-b": responses.iloc[len(responses) // 2:]}
    written = write_psychds(tmp_path / "ds", {slug: as_rows(part) for slug, part in halves.items()})
    assert sum(written.values()) == len(responses) and psychds_problems(tmp_path / "ds") == []
    pd.testing.assert_frame_equal(load_responses(csv_path), load_responses(tmp_path / "ds"))
    assert main([str(csv_path), "--out", str(tmp_path / "from_csv"), "--bootstrap", "20"]) == 0
    assert main([str(tmp_path / "ds"), "--out", str(tmp_path / "from_ds"), "--bootstrap", "20"]) == 0
    for name in ("contrasts_target.csv", "contrasts_rating.csv", "descriptives.csv", "exclusions.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "from_csv" / name), pd.read_csv(tmp_path / "from_ds" / name))
