"""Reading responses (CSV export or the `responses_long` view) and deriving the analysed answers."""
from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import numpy as np
import pandas as pd

from contracts import ContractError, validate_responses_frame

VIEW = "responses_long"  # the contract is this view, never the tables behind it
ANSWER_COLUMNS = ["participant_id", "stimulus_id", "source_id", "condition", "task", "norm_l2", "rt_ms",
                  "true_label", "target_label", "response_label", "rating", "target", "true"]


def is_database_url(source: str | Path) -> bool:
    return "://" in str(source)


def read_view(url: str) -> pd.DataFrame:
    """`SELECT * FROM responses_long` through SQLAlchemy (or sqlite3 for sqlite:/// URLs without it)."""
    query = f"SELECT * FROM {VIEW}"
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
        raise ContractError(f"database {url}", [f"could not read the {VIEW} view: {str(exc).splitlines()[0]}"]) from exc
    raise ContractError(f"database {url}", ["reading this kind of database URL needs SQLAlchemy: pip install sqlalchemy"])


def load_responses(source: str | Path) -> pd.DataFrame:
    """Validated responses from a responses.csv path or a database URL (contract dtypes)."""
    if is_database_url(source):
        return validate_responses_frame(read_view(str(source)))
    path = Path(source)
    if not path.is_file():
        raise ContractError(f"responses file {path}", [f"{path} does not exist; pass the responses.csv of an export or a database URL"])
    return validate_responses_frame(pd.read_csv(path, keep_default_na=True))


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
        raise ContractError("responses", [f"ratings use {len(scale)} different scales {scale.values.tolist()}; analyse them separately"])
    if len(scale):
        answers.attrs.update(rating_min=int(scale.iloc[0, 0]), rating_max=int(scale.iloc[0, 1]))
    return answers
