"""Reading responses (CSV export or the `responses_long` view) and deriving the analysed answers."""
from __future__ import annotations

import re
import sqlite3
import tomllib
from contextlib import closing
from pathlib import Path

import numpy as np
import pandas as pd

from contracts import RESPONSES_VIEW, ContractError, validate_responses_frame

DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "vertical bar"}
FIRST_DATA_LINE = 2  # line 1 of a CSV file is its header
ANSWER_COLUMNS = ["participant_id", "stimulus_id", "source_id", "condition", "task", "norm_l2", "rt_ms",
                  "true_label", "target_label", "response_label", "rating", "target", "true"]


def read_config(path: Path) -> dict:
    """The analysis config (TOML) as a dict; its tables are read by `exclusions` and `design`."""
    try:
        return tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ContractError(f"analysis config {path}", [str(exc)]) from exc


def is_database_url(source: str | Path) -> bool:
    return "://" in str(source)


def read_view(url: str) -> pd.DataFrame:
    """`SELECT * FROM responses_long` through SQLAlchemy (or sqlite3 for sqlite:/// URLs without it)."""
    query = f"SELECT * FROM {RESPONSES_VIEW}"
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():  # SQLite would create it empty
        raise ContractError(f"database {url}", [f"the SQLite file {url.removeprefix('sqlite:///')} does not exist"])
    try:
        import sqlalchemy
    except ImportError:  # the analysis extra does not need SQLAlchemy; SQLite files still work
        sqlalchemy = None
    try:
        if sqlalchemy is not None:
            with sqlalchemy.create_engine(url).connect() as conn:
                return pd.read_sql(sqlalchemy.text(query), conn)
        if url.startswith("sqlite:///"):
            with closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
                return pd.read_sql(query, conn)
    except Exception as exc:  # driver errors differ per database; the analyst needs one readable line
        raise ContractError(f"database {url}", [f"could not read the {RESPONSES_VIEW} view: {str(exc).splitlines()[0]}"]) from exc
    raise ContractError(f"database {url}", ["reading this kind of database URL needs SQLAlchemy: pip install sqlalchemy"])


def one_line(exc: ContractError) -> str:
    """A contract error as one line: what, then every problem."""
    return f"{str(exc).splitlines()[0].rsplit(': ', 1)[0]}: {'; '.join(exc.problems)}"


def detect_delimiter(header: str) -> str:
    """The delimiter of a CSV file, judged by its header line (the export always writes commas)."""
    return max(DELIMITERS, key=header.count) if any(d in header for d in DELIMITERS) else ","


def read_csv(path: Path) -> pd.DataFrame:
    """The export as pandas reads it, indexed by file line so every message can name the line."""
    with path.open(newline="", encoding="utf-8", errors="replace") as fh:
        header = fh.readline()
    delimiter = detect_delimiter(header)
    if delimiter != ",":  # read as commas it would be one column, reported as 31 missing ones
        raise ContractError(f"responses file {path}", [
            f"the file is {DELIMITERS[delimiter]}-delimited (its header has {header.count(delimiter)} {delimiter!r} and "
            f"{header.count(',')} commas), as a spreadsheet in some locales saves it; export it again with "
            "`flask --app study export`, or save it as comma-separated CSV"])
    try:
        frame = pd.read_csv(path, keep_default_na=True)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ContractError(f"responses file {path}", [f"not a readable CSV file: {str(exc).splitlines()[0]}"]) from None
    frame.index = frame.index + FIRST_DATA_LINE  # no exported cell holds a line break, so row i is file line i + 2
    return frame


PSYCHDS_DESCRIPTION = "dataset_description.json"


def read_psychds(folder: Path) -> pd.DataFrame:
    """The answers of a Psych-DS dataset folder: every data/**/*_data.csv (data/raw is not data),
    in row_id order, without the row_id. Messages name the file line as `file:line`."""
    files = sorted(p for p in (folder / "data").rglob("*_data.csv") if "raw" not in p.relative_to(folder / "data").parts[:1])
    if not files:
        raise ContractError(f"Psych-DS folder {folder}", ["no data/…_data.csv files"])
    parts = []
    for path in files:
        part = read_csv(path)
        part.index = [f"{path.relative_to(folder)}:{line}" for line in part.index]
        parts.append(part)
    frame = pd.concat(parts)
    return frame.sort_values("row_id", kind="stable").drop(columns="row_id") if "row_id" in frame else frame


def validate(frame: pd.DataFrame, where: str) -> pd.DataFrame:
    """The contract's checks, with its row labels said as what they are here (file lines or view rows)."""
    try:
        return validate_responses_frame(frame)
    except ContractError as exc:
        label = "file lines" if where == "file" else "rows of the view"
        raise ContractError(str(exc).splitlines()[0].rsplit(": ", 1)[0],
                            [re.sub(r"\(first rows: \[(.*?)\]\)", rf"({label} \1)", p) for p in exc.problems]) from None


def drop_missing_rt(frame: pd.DataFrame, allowed: bool) -> pd.DataFrame:
    """Answers without a reaction time fail the contract; `allowed` (--drop-missing-rt) leaves them
    out instead, counted in frame.attrs so that the report says how many went."""
    if "rt_ms" not in frame.columns:  # the contract check names the missing column
        return frame
    missing = frame["rt_ms"].isna()
    if not missing.any():
        return frame
    if not allowed:
        lines = ", ".join(map(str, frame.index[missing][:5]))
        raise ContractError("responses", [f"{int(missing.sum())} answer(s) ({missing.mean():.1%}) have no reaction time "
                                          f"(rt_ms empty; first at {lines}); pass --drop-missing-rt to leave them out"])
    kept = frame[~missing]
    kept.attrs["dropped_missing_rt"] = int(missing.sum())
    return kept


def check_one_scale(responses: pd.DataFrame) -> None:
    """All ratings on one scale: the ordinal model needs one set of scale points."""
    rated = responses[responses["task"] == "rate"]
    scales = rated.groupby(["rating_min", "rating_max"]).agg(answers=("session_id", "size"), participants=("participant_id", "nunique"),
                                                            example=("participant_id", "first"))
    if len(scales) > 1:
        found = ", ".join(f"{int(lo)}–{int(hi)} ({r.answers} answers from {r.participants} participant(s), e.g. {r.example})"
                          for (lo, hi), r in scales.iterrows())
        raise ContractError("responses", [f"ratings use {len(scales)} scales: {found}; analyse one scale at a time "
                                          "(filter the export on rating_min / rating_max)"])


def load_responses(source: str | Path, allow_missing_rt: bool = False) -> pd.DataFrame:
    """Validated responses from a responses.csv path, a Psych-DS folder or a database URL (contract dtypes)."""
    if is_database_url(source):
        frame, where = read_view(str(source)), "view"
    elif Path(source, PSYCHDS_DESCRIPTION).is_file():
        frame, where = read_psychds(Path(source)), "file"
    else:
        path = Path(source)
        if not path.is_file():
            raise ContractError(f"responses file {path}", [f"{path} does not exist; pass the responses.csv of an export or a database URL"])
        frame, where = read_csv(path), "file"
    frame = drop_missing_rt(frame, allow_missing_rt)
    dropped = frame.attrs.get("dropped_missing_rt", 0)
    responses = validate(frame, where).reset_index(drop=True)  # file lines were for the messages
    if responses.empty:
        raise ContractError(f"responses {source}", ["there are no answers (a header only): nothing to analyse"])
    check_one_scale(responses)
    responses.attrs["dropped_missing_rt"] = dropped
    return responses


def answers_frame(responses: pd.DataFrame) -> pd.DataFrame:
    """One row per analysed answer with the derived outcomes.

    `target` / `true` (0/1) are set on label answers whose stimulus has that label (clean images have
    no target), `rating` on rating answers; everything else is NaN so each model drops the rows it
    does not use.
    """
    is_label = (responses["task"] == "label").to_numpy()
    response = responses["response_label"].astype("float64").to_numpy()
    target = responses["target_label"].astype("float64").to_numpy()
    true = responses["true_label"].astype("float64").to_numpy()
    answers = pd.DataFrame({
        "participant_id": responses["participant_id"].astype(str).to_numpy(),
        "stimulus_id": responses["stimulus_id"].astype(str).to_numpy(),
        "source_id": responses["source_id"].astype(str).to_numpy(),
        "condition": responses["condition"].astype(str).to_numpy(),
        "task": responses["task"].astype(str).to_numpy(),
        "norm_l2": responses["norm_l2"].astype("float64").to_numpy(),
        "rt_ms": responses["rt_ms"].astype("float64").to_numpy(),
        "true_label": true, "target_label": target,
        "response_label": np.where(is_label, response, np.nan),
        "rating": np.where(is_label, np.nan, responses["response_rating"].astype("float64").to_numpy()),
        "target": np.where(is_label & ~np.isnan(target), (response == target).astype(float), np.nan),
        "true": np.where(is_label, (response == true).astype(float), np.nan),
    })
    scale = responses.loc[responses["task"] == "rate", ["rating_min", "rating_max"]].drop_duplicates()
    if len(scale) > 1:
        check_one_scale(responses)
    if len(scale):
        answers.attrs.update(rating_min=int(scale.iloc[0, 0]), rating_max=int(scale.iloc[0, 1]))
    return answers
