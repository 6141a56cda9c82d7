"""Reading the `responses_long` view (the response contract); study.export streams it to CSV.

The view itself is created by the migrations (study/migrations); here it is declared as a typed
table built from contracts/response_row.v1.schema.json, so rows come back with contract types on
both databases (SQLite hands booleans back as 0/1 otherwise).
"""
from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import Boolean, Column, Float, Integer, MetaData, Select, String, Table, select

from contracts import RESPONSE_SCHEMA, RESPONSES_VIEW, load_schema

_SQL_TYPES = {"boolean": Boolean, "integer": Integer, "number": Float, "string": String}


def _sql_type(spec: dict[str, Any]):
    types = spec.get("type", "string")
    kind = next(t for t in ([types] if isinstance(types, str) else types) if t != "null")
    return _SQL_TYPES[kind]()


@cache
def view_table() -> Table:
    props = load_schema(RESPONSE_SCHEMA)["properties"]
    return Table(RESPONSES_VIEW, MetaData(), *(Column(name, _sql_type(spec)) for name, spec in props.items()))


def responses_query(study_slug: str | None = None) -> Select:
    view = view_table()
    query = select(view).order_by(view.c.study_id, view.c.session_id, view.c.trial_index)
    return query if study_slug is None else query.where(view.c.study_id == study_slug)
