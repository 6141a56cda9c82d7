"""Reading the `responses_long` view (the response contract) and streaming it to responses.csv.

The view itself is created by the migrations (study/migrations); here it is declared as a typed
table built from contracts/response_row.v1.schema.json, so rows come back with contract types on
both databases (SQLite hands booleans back as 0/1 otherwise).
"""
from __future__ import annotations

import csv
from functools import cache
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import Boolean, Column, Float, Integer, MetaData, Select, String, Table, select

from contracts import RESPONSE_SCHEMA, load_schema
from study.db import db

VIEW = "responses_long"
_SQL_TYPES = {"boolean": Boolean, "integer": Integer, "number": Float, "string": String}


def _sql_type(spec: dict[str, Any]):
    types = spec.get("type", "string")
    kind = next(t for t in ([types] if isinstance(types, str) else types) if t != "null")
    return _SQL_TYPES[kind]()


@cache
def view_table() -> Table:
    props = load_schema(RESPONSE_SCHEMA)["properties"]
    return Table(VIEW, MetaData(), *(Column(name, _sql_type(spec)) for name, spec in props.items()))


def responses_query(study_slug: str | None = None) -> Select:
    view = view_table()
    query = select(view).order_by(view.c.study_id, view.c.session_id, view.c.trial_index)
    return query if study_slug is None else query.where(view.c.study_id == study_slug)


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def iter_rows(study_slug: str | None = None, batch: int = 5000) -> Iterator[tuple]:
    """Stream the view with a server-side cursor, so memory stays flat for any number of answers."""
    with db.engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=batch).execute(responses_query(study_slug))
        yield from result


def export_csv(out_dir: str | Path, study_slug: str | None = None) -> tuple[Path, int]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path, count = out_dir / "responses.csv", 0
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([c.name for c in view_table().columns])
        for row in iter_rows(study_slug):
            writer.writerow([_csv_value(v) for v in row])
            count += 1
    return path, count
