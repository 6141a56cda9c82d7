"""The researcher's exports: responses.csv (the `responses_long` view), participants.csv (one row
per session) and data_dictionary.csv (every column of both, described).

Rows are streamed from a server-side cursor and written in chunks, so memory stays flat however
many answers there are; the same generators feed `flask --app study export` and the dashboard's
downloads. Sessions that withdrew, bots and pilots are left out unless asked for. Raw panel ids
never appear here (only the payment list has them).

Spreadsheets run a cell that begins with =, +, -, @, tab or CR as a formula, so in the files meant
for them (participants.csv, payments.csv, the dictionary) such text cells are prefixed with a
single quote, the usual neutralisation: a user agent of `=HYPERLINK(…)` is shown, never run.
responses.csv is left exactly as the database holds it, because pandas and R must read back the
very values the contract validated: its text columns are ids, names from the schema's
vocabularies and timestamps, and it is written for analysis software, not for spreadsheets.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from sqlalchemy import Boolean, Select, and_, case, func, select

from contracts import RESPONSE_SCHEMA, load_schema
from study.db import db
from study.models import Answer, AssignmentList, ParticipantSession, Stimulus, Study
from study.responses import responses_query, view_table

CHUNK_ROWS = 2000


@dataclass(frozen=True)
class Selection:
    """Which sessions an export holds."""
    study: str | None = None  # a study's slug; None = every study
    withdrawn: bool = False
    bots: bool = False
    pilots: bool = False

    def where(self, study_slug, withdrawn, is_bot, is_pilot) -> list:
        """Filter clauses on the given columns (of the view or of the tables behind it);
        study_slug None: the query already selects the study."""
        clauses = [] if self.study is None or study_slug is None else [study_slug == self.study]
        clauses += [] if self.withdrawn else [~withdrawn]
        clauses += [] if self.bots else [~is_bot]
        clauses += [] if self.pilots else [~is_pilot]
        return clauses


# --- responses.csv --------------------------------------------------------------------------------

def responses_select(selection: Selection) -> Select:
    view = view_table()
    return responses_query(selection.study).where(*selection.where(None, view.c.withdrawn, view.c.is_bot, view.c.is_pilot))


def _csv_ready(column):
    """Booleans as the contract's true/false, made by the database: every value of the view then
    reaches the csv module as it comes (None is written empty), with no Python call per cell."""
    return case((column, "true"), else_="false").label(column.name) if isinstance(column.type, Boolean) else column


def left_out_counts(selection: Selection) -> dict[str, int]:
    """Answers the selection leaves out, per reason (counted on the tables: cheaper than the view)."""
    ps = ParticipantSession
    counts: dict[str, int] = {}
    reasons = {"withdrawn": (selection.withdrawn, ps.state == "withdrawn"), "bots": (selection.bots, ps.is_bot),
               "pilots": (selection.pilots, ps.is_pilot)}
    for reason, (included, condition) in reasons.items():
        if included:
            continue
        query = select(func.count()).select_from(Answer).join(ps, ps.id == Answer.session_id).where(condition)
        if selection.study is not None:
            query = query.join(Study, Study.id == ps.study_id).where(Study.slug == selection.study)
        counts[reason] = db.session.scalar(query)
    return counts


# --- participants.csv -----------------------------------------------------------------------------

def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="milliseconds") + "Z"


_answers = (select(Answer.session_id,
                   func.count().label("answers"),
                   func.sum(case((and_(Answer.is_catch, Answer.task == "label"), 1), else_=0)).label("catch_trials"),
                   func.sum(case((and_(Answer.is_catch, Answer.task == "label", Answer.response_label == Stimulus.true_label), 1),
                                 else_=0)).label("catch_passed"))
            .join(Stimulus, Stimulus.id == Answer.stimulus_id).group_by(Answer.session_id).subquery())

_ps = ParticipantSession
# name -> (SQL expression, description): the column list, the query and the dictionary in one place.
PARTICIPANT_COLUMNS: dict[str, tuple[Any, str]] = {
    "study_id": (Study.slug, "Study id from the study config."),
    "participant_id": (_ps.participant_hash, "Keyed hash of the panel id (never the raw id); matches responses.csv."),
    "session_id": (_ps.public_id, "Session id; matches responses.csv."),
    "panel": (_ps.panel, "How the participant arrived: prolific, mturk or link."),
    "state": (_ps.state, "Session state at export time (consented, assigned, instructed, in_task, completed, "
                         "declined, withdrawn, screened_out, timed_out)."),
    "assignment_list": (AssignmentList.name, "Latin-square cell the session was assigned (empty before assignment)."),
    "consent_version": (_ps.consent_version, "sha256 of the consent text the participant agreed to."),
    **{f"{s}_at": (getattr(_ps, f"{s}_at"), f"When the session {'started' if s == 'created' else 'became ' + s.replace('_', ' ')} "
                                              "(UTC, ISO 8601; empty if never).")
       for s in ("created", "consented", "declined", "assigned", "instructed", "in_task", "completed", "withdrawn",
                 "screened_out", "timed_out")},
    "last_seen_at": (_ps.last_seen_at, "Last answer or page action (UTC, ISO 8601)."),
    "answers": (func.coalesce(_answers.c.answers, 0), "Answers stored for the session (rows in responses.csv)."),
    "catch_trials": (func.coalesce(_answers.c.catch_trials, 0), "Catch-trial label answers given."),
    "catch_passed": (func.coalesce(_answers.c.catch_passed, 0), "Catch-trial label answers that named the true digit."),
    "catch_failed": (_ps.catch_failed, "Catch trials failed."),
    "completion_code": (_ps.completion_code, "Completion code issued (empty if none)."),
    "is_bot": (_ps.is_bot, "Simulated participant (flask --app study simulate)."),
    "is_pilot": (_ps.is_pilot, "Session started from a researcher's pilot link."),
    "user_agent": (_ps.user_agent, "Browser user agent string."),
    "viewport_width": (_ps.viewport_width, "Browser viewport width in CSS pixels."),
    "viewport_height": (_ps.viewport_height, "Browser viewport height in CSS pixels."),
    "device_pixel_ratio": (_ps.device_pixel_ratio, "Device pixels per CSS pixel."),
    "frame_ms": (_ps.frame_ms, "Estimated display frame period in ms."),
}


def participants_select(selection: Selection) -> Select:
    columns = [expr.label(name) for name, (expr, _) in PARTICIPANT_COLUMNS.items()]
    return (select(*columns).select_from(_ps).join(Study, Study.id == _ps.study_id)
            .outerjoin(AssignmentList, AssignmentList.id == _ps.assignment_list_id)
            .outerjoin(_answers, _answers.c.session_id == _ps.id)
            .where(*selection.where(Study.slug, _ps.state == "withdrawn", _ps.is_bot, _ps.is_pilot))
            .order_by(Study.slug, _ps.created_at, _ps.id))


# --- data_dictionary.csv --------------------------------------------------------------------------

def _schema_type(spec: dict[str, Any]) -> str:
    if "const" in spec:
        return f"string (always {spec['const']})"
    if "enum" in spec:
        return "one of: " + ", ".join(spec["enum"])
    types = spec["type"] if isinstance(spec["type"], list) else [spec["type"]]
    kind = " or ".join(t for t in types if t != "null")
    return kind + (" (may be empty)" if "null" in types else "")


def study_conditions(selection: Selection) -> list[str]:
    """The conditions of the exported studies' stimulus sets: the declared design, including a
    condition that no answer reached (the analysis builds its contrast families from these)."""
    query = select(Stimulus.condition).distinct().join(Study, Study.id == Stimulus.study_id)
    if selection.study is not None:
        query = query.where(Study.slug == selection.study)
    present = set(db.session.scalars(query))
    return [c for c in load_schema(RESPONSE_SCHEMA)["properties"]["condition"]["enum"] if c in present]


# The columns holding a label: a digit, or the number of a class of the stimulus set.
LABEL_COLUMNS = ("true_label", "target_label", "response_label")


def study_classes(selection: Selection) -> list[str] | None:
    """The class names of the exported studies' stimulus sets, when they all share one list;
    None for digit sets (no names) or studies whose names differ (export them one at a time)."""
    query = select(Study.classes)
    if selection.study is not None:
        query = query.where(Study.slug == selection.study)
    lists = {tuple(c) if c else None for c in db.session.scalars(query)}
    return list(lists.pop()) if len(lists) == 1 and None not in lists else None


def dictionary_rows(conditions: list[str] | None = None, classes: list[str] | None = None) -> Iterator[list[str]]:
    """conditions: the `condition` column's values for this export (default: every value the contract allows);
    classes: the names the label columns' numbers stand for (default: none, digits)."""
    for name, spec in load_schema(RESPONSE_SCHEMA)["properties"].items():
        kind = "one of: " + ", ".join(conditions) if name == "condition" and conditions else _schema_type(spec)
        if name in LABEL_COLUMNS and classes:
            kind += "; class numbers: " + ", ".join(f"{k} = {n}" for k, n in enumerate(classes))
        yield ["responses.csv", name, kind, spec["description"]]
    for name, (expr, description) in PARTICIPANT_COLUMNS.items():
        kind = {bool: "boolean", int: "integer", float: "number"}.get(getattr(expr.type, "python_type", str), "string")
        yield ["participants.csv", name, "string (ISO 8601 UTC)" if name.endswith("_at") else kind, description]


# --- streaming -------------------------------------------------------------------------------------

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(text: str) -> str:
    """Text that a spreadsheet shows rather than evaluates (a leading ' is not displayed). A carriage
    return becomes a line feed: the csv module quotes cells with the line terminator (LF here) but
    not a bare CR, which readers take for the end of the row."""
    text = "'" + text if text.startswith(FORMULA_STARTS) else text
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _cell(value: Any) -> Any:
    """CSV cells for spreadsheets: booleans true/false, missing values empty, text neutralised."""
    if value is None:
        return ""
    if isinstance(value, str):
        return spreadsheet_safe(value)
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return _iso(value)
    return value


def csv_chunks(header: list[str], rows: Iterable[Iterable[Any]], convert: bool = True) -> Iterator[str]:
    """CSV text in chunks of CHUNK_ROWS rows, header first. convert=False: the rows hold only
    strings, numbers and None already (the responses export, a million rows)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    rows = ([_cell(v) for v in row] for row in rows) if convert else iter(rows)
    while chunk := list(itertools.islice(rows, CHUNK_ROWS)):
        writer.writerows(chunk)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():  # the header alone, when there are no rows
        yield buffer.getvalue()


def stream_query(query: Select, batch: int = 5000) -> Iterator[tuple]:
    """Rows through a server-side cursor (psycopg named cursor; SQLite steps its cursor)."""
    with db.engine.connect() as conn:
        yield from conn.execution_options(stream_results=True, yield_per=batch).execute(query)


def driver_rows(query: Select, batch: int = 5000) -> Iterator[tuple]:
    """Rows as the database driver returns them, through a server-side cursor on PostgreSQL.

    Skips SQLAlchemy's per-row processing, a third of the time of a million-row export; only
    for queries whose values need no conversion. The few bound values are inlined as escaped
    literals by SQLAlchemy's compiler.
    """
    sql = str(query.compile(db.engine, compile_kwargs={"literal_binds": True}))
    with db.engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        cursor = raw.cursor(name="export") if db.engine.dialect.name == "postgresql" else raw.cursor()
        try:
            cursor.execute(sql)
            while rows := cursor.fetchmany(batch):
                yield from rows
        finally:
            cursor.close()


def responses_csv(selection: Selection) -> Iterator[str]:
    query = responses_select(selection)
    query = query.with_only_columns(*(_csv_ready(c) for c in view_table().columns))
    return csv_chunks(list(view_table().columns.keys()), driver_rows(query), convert=False)


def participants_csv(selection: Selection) -> Iterator[str]:
    return csv_chunks(list(PARTICIPANT_COLUMNS), stream_query(participants_select(selection)))


def dictionary_csv(selection: Selection | None = None) -> Iterator[str]:
    if selection is None:
        return csv_chunks(["file", "column", "type", "description"], dictionary_rows())
    return csv_chunks(["file", "column", "type", "description"],
                      dictionary_rows(study_conditions(selection), study_classes(selection)))


EXPORTS = {"responses.csv": responses_csv, "participants.csv": participants_csv}


def write_atomically(path: Path, chunks: Iterable[str]) -> int:
    """Write atomically (a reader never sees half a file); returns the number of data rows."""
    if path.exists() and not path.is_file():  # renaming over /dev/null or a directory would replace it
        raise IsADirectoryError(0, "not a regular file", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    lines = 0
    with tmp.open("w", newline="") as fh:
        for chunk in chunks:
            fh.write(chunk)
            lines += chunk.count("\n")
    os.replace(tmp, path)
    return lines - 1  # the header


def export_all(out_dir: str | Path, selection: Selection) -> dict[str, int]:
    """Write responses.csv, participants.csv and data_dictionary.csv; rows written per file
    (counted as lines: no column holds a newline; HTTP headers such as the user agent cannot)."""
    out_dir = Path(out_dir)
    written = {name: write_atomically(out_dir / name, make(selection)) for name, make in EXPORTS.items()}
    written["data_dictionary.csv"] = write_atomically(out_dir / "data_dictionary.csv", dictionary_csv(selection))
    return written


# --- Psych-DS ----------------------------------------------------------------------------------------
# A Psych-DS 1.x dataset: dataset_description.json (schema.org Dataset whose variableMeasured lists
# every column) and data/ with CSV files named by keyword-value pairs ending in _data.csv.

PSYCHDS_CONTEXT = "http://schema.org/"
ROW_ID = "row_id"


def keyword_value(text: str) -> str:
    """A Psych-DS keyword value: letters and digits only (_ and - separate keys and values)."""
    return re.sub(r"[^a-zA-Z0-9]", "", text) or "unnamed"


def psychds_description(name: str) -> dict[str, Any]:
    props = load_schema(RESPONSE_SCHEMA)["properties"]
    measured = [{"@type": "PropertyValue", "name": ROW_ID, "description": "Row number, unique in the dataset."}]
    measured += [{"@type": "PropertyValue", "name": column, "description": spec["description"]} for column, spec in props.items()]
    return {"@context": PSYCHDS_CONTEXT, "@type": "Dataset", "name": name,
            "description": "Answers of a human-subject study on adversarial images, one row per answer "
                           f"(columns as in {RESPONSE_SCHEMA}, plus a unique {ROW_ID}).",
            "schemaVersion": "Psych-DS 1.x", "variableMeasured": measured}


def write_psychds(out_dir: Path, studies: dict[str, Iterable[tuple]]) -> dict[str, int]:
    """Write a Psych-DS folder from each study's response rows (view columns, contract order):
    one data/study-<id>_data.csv per study with a dataset-wide row_id; rows written per file."""
    names = {slug: keyword_value(slug) for slug in studies}
    if len(set(names.values())) < len(names):
        raise ValueError("two study ids differ only in - or _; export them one at a time with --study")
    header = [ROW_ID, *load_schema(RESPONSE_SCHEMA)["properties"]]
    written, first = {}, 1
    for slug, rows in studies.items():
        numbered = ((i, *row) for i, row in enumerate(rows, first))
        file = f"data/study-{names[slug]}_data.csv"
        written[file] = write_atomically(out_dir / file, csv_chunks(header, numbered, convert=False))
        first += written[file]
    description = json.dumps(psychds_description(f"Responses of {', '.join(studies) or 'no study'}"), indent=1, ensure_ascii=False)
    write_atomically(out_dir / "dataset_description.json", [description + "\n"])
    return written


def export_psychds(out_dir: str | Path, selection: Selection) -> dict[str, int]:
    """The responses of the selected studies as a Psych-DS folder (see write_psychds)."""
    slugs = [selection.study] if selection.study is not None else list(db.session.scalars(select(Study.slug).order_by(Study.slug)))

    def rows(slug: str) -> Iterator[tuple]:
        query = responses_select(Selection(slug, selection.withdrawn, selection.bots, selection.pilots))
        return driver_rows(query.with_only_columns(*(_csv_ready(c) for c in view_table().columns)))

    return write_psychds(Path(out_dir), {slug: rows(slug) for slug in slugs})
