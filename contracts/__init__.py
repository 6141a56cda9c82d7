"""The two contracts between the packages, as versioned JSON Schema files plus their validators.

`engine` writes stimulus sets that `study` imports (stimulus_manifest.v1.schema.json); `study`
exposes answers that `analysis` reads (response_row.v1.schema.json, the `responses_long` view and
its CSV export). Producers and consumers test against these files and never against each other's
code. Validators raise `ContractError` whose message lists every problem in plain words.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable

import jsonschema

from contracts.schemas import MANIFEST_SCHEMA, RESPONSE_SCHEMA, load_schema
from contracts.vocabulary import BLOCKS, CLEAN, CONDITIONS, DEFENSES, DISPLAY_NAMES, ROLES, TASKS, display_name

__all__ = ["BLOCKS", "CLEAN", "CONDITIONS", "DEFENSES", "DISPLAY_NAMES", "ROLES", "TASKS", "ContractError", "MANIFEST_SCHEMA", "MANIFEST_VERSION", "MAX_CLASSES",
           "RESPONSE_SCHEMA", "RESPONSES_VIEW", "class_count", "display_name", "load_schema", "load_stimulus_set", "response_columns", "sha256_file",
           "validate_manifest", "validate_response_rows", "validate_responses_frame"]
MAX_LISTED_PROBLEMS = 20
# The newest manifest version (what the engine writes) and the most classes it numbers (labels 0-99).
MANIFEST_VERSION = load_schema(MANIFEST_SCHEMA)["properties"]["schema_version"]["enum"][-1]
MAX_CLASSES = load_schema(MANIFEST_SCHEMA)["properties"]["dataset"]["properties"]["classes"]["maxItems"]
# The database view `study` keeps and `analysis` reads: the contract is this view, never the tables behind it.
RESPONSES_VIEW = "responses_long"


class ContractError(ValueError):
    """A document does not follow its contract; `problems` lists each violation."""

    def __init__(self, what: str, problems: list[str]):
        self.problems = problems
        shown = problems[:MAX_LISTED_PROBLEMS]
        more = f"\n  … and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
        super().__init__(f"{what}: {len(problems)} problem(s)\n  " + "\n  ".join(shown) + more)


def response_columns() -> list[str]:
    """Column names of the responses_long view, in contract order."""
    return list(load_schema(RESPONSE_SCHEMA)["properties"])


def _where(error: jsonschema.ValidationError) -> str:
    return "/".join(str(p) for p in error.absolute_path) or "(top level)"


def _schema_problems(schema_name: str, doc: Any) -> list[str]:
    validator_cls = jsonschema.validators.validator_for(load_schema(schema_name))
    validator = validator_cls(load_schema(schema_name), format_checker=validator_cls.FORMAT_CHECKER)
    return [f"{_where(e)}: {e.message}" for e in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))]


def validate_manifest(manifest: dict[str, Any]) -> None:
    """Schema plus the cross-references a schema cannot express (unique ids, known model ids)."""
    problems = _schema_problems(MANIFEST_SCHEMA, manifest)
    if not problems:
        model_ids = {m["id"] for m in manifest["models"]}
        classes = manifest["dataset"].get("classes")
        k = class_count(manifest)
        if manifest["schema_version"] == "1.0" and k > 10:
            problems.append(f"dataset/classes: schema 1.0 numbers at most 10 classes, not {k} (more need schema_version 1.1)")
        # The schema allows labels 0-99 in every version; the class count bounds them here.
        bound = (f"has no class name (dataset.classes lists {k})" if classes is not None
                 else "is not a digit 0-9 (a set without dataset.classes)")
        seen: set[str] = set()
        for i, s in enumerate(manifest["stimuli"]):
            if s["id"] in seen:
                problems.append(f"stimuli/{i}: duplicate stimulus id {s['id']!r}")
            seen.add(s["id"])
            if s["condition"] == CLEAN and s["model_id"] is not None:
                problems.append(f"stimuli/{i}: clean stimulus {s['id']!r} names model {s['model_id']!r}; clean images have model_id null")
            if s["condition"] != CLEAN and s["model_id"] not in model_ids:
                problems.append(f"stimuli/{i}: model_id {s['model_id']!r} is not among models[].id {sorted(model_ids)}")
            if s["role"] == "experimental" and s["target_label"] is None:
                problems.append(f"stimuli/{i}: experimental stimulus {s['id']!r} needs a target_label")
            labels = {"true_label": s["true_label"], "target_label": s["target_label"],
                      "prediction/label": (s["prediction"] or {}).get("label"),
                      **{f"transfer/{m}": v for m, v in s["transfer"].items()}}
            for key, label in labels.items():
                if label is not None and label >= k:
                    problems.append(f"stimuli/{i}: {key} {label} {bound}")
    if problems:
        raise ContractError("stimulus manifest does not follow " + MANIFEST_SCHEMA, problems)


def class_count(manifest: dict[str, Any]) -> int:
    """How many classes a (schema-valid) manifest's labels number: its dataset.classes, or the ten
    digits without them."""
    classes = manifest["dataset"].get("classes")
    return len(classes) if classes is not None else 10


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (checkpoints can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_stimulus_set(directory: str | Path) -> dict[str, Any]:
    """Read DIR/manifest.json, validate it, and check every image exists with the recorded sha256."""
    directory = Path(directory)
    path = directory / "manifest.json"
    if not path.is_file():
        raise ContractError(f"stimulus set {directory}", [f"no manifest.json in {directory}"])
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ContractError(f"stimulus set {directory}", [f"manifest.json is not valid JSON: {exc}"]) from exc
    validate_manifest(manifest)
    problems = []
    for s in manifest["stimuli"]:
        image = directory / s["file"]
        if not image.is_file():
            problems.append(f"stimulus {s['id']}: image {s['file']} is missing")
        elif sha256_file(image) != s["sha256"]:
            problems.append(f"stimulus {s['id']}: {s['file']} does not match its sha256 (file changed after the manifest was written)")
    if problems:
        raise ContractError(f"stimulus set {directory}", problems)
    return manifest


def validate_response_rows(rows: Iterable[dict[str, Any]]) -> None:
    """Validate answers given as dicts with native types (None for missing), e.g. rows of the view."""
    problems = []
    for i, row in enumerate(rows):
        problems += [f"row {i}: {p}" for p in _schema_problems(RESPONSE_SCHEMA, row)]
        problems += [f"row {i}: {p}" for p in _row_semantics(row)]
    if problems:
        raise ContractError("responses do not follow " + RESPONSE_SCHEMA, problems)


def _row_semantics(row: dict[str, Any]) -> list[str]:
    problems = []
    if row.get("task") == "label" and row.get("response_label") is None:
        problems.append("task is 'label' but response_label is empty")
    if row.get("task") == "rate":
        rating, lo, hi = row.get("response_rating"), row.get("rating_min"), row.get("rating_max")
        if rating is None:
            problems.append("task is 'rate' but response_rating is empty")
        elif isinstance(lo, int) and isinstance(hi, int) and not lo <= rating <= hi:
            problems.append(f"response_rating {rating} is outside the scale [{lo}, {hi}]")
    return problems


def validate_responses_frame(frame: "pandas.DataFrame") -> "pandas.DataFrame":  # noqa: F821
    """Validate a responses table (e.g. pandas.read_csv of an export) column by column.

    Vectorised, so a million rows take seconds. Returns the frame with contract dtypes
    (booleans as bool, labels as nullable integers) for the analysis to use.
    """
    import pandas as pd

    schema = load_schema(RESPONSE_SCHEMA)
    props = schema["properties"]
    missing = [c for c in schema["required"] if c not in frame.columns]
    if missing:
        raise ContractError("responses table", [f"missing column(s): {', '.join(missing)}"])
    props = {c: spec for c, spec in props.items() if c in frame.columns}  # optional columns may be absent
    df = frame[list(props)].copy()
    problems: list[str] = []

    def report(column: str, bad: "pd.Series", what: str) -> None:
        if bad.any():
            rows = list(df.index[bad][:5])
            problems.append(f"column {column}: {int(bad.sum())} row(s) {what} (first rows: {rows})")

    for col, spec in props.items():
        types = spec.get("type", [])
        types = [types] if isinstance(types, str) else types
        values = df[col]
        report(col, values.isna() & ("null" not in types), "are empty")
        present = values.notna()
        if "boolean" in types:
            mapped = values.map(lambda v: {True: True, False: False, "true": True, "false": False, "True": True,
                                           "False": False, 1: True, 0: False}.get(v, None) if not pd.isna(v) else None)
            report(col, present & mapped.isna(), "are not true/false")
            df[col] = mapped.astype("boolean")
        elif "integer" in types or "number" in types:
            numeric = pd.to_numeric(values, errors="coerce")
            report(col, present & numeric.isna(), "are not numbers")
            fractional = numeric.notna() & (numeric % 1 != 0)
            if "integer" in types:
                report(col, fractional, "are not whole numbers")
            if "minimum" in spec:
                report(col, numeric < spec["minimum"], f"are below {spec['minimum']}")
            if "maximum" in spec:
                report(col, numeric > spec["maximum"], f"are above {spec['maximum']}")
            df[col] = numeric.astype("Int64") if "integer" in types and not fractional.any() else numeric
        elif "enum" in spec or "const" in spec:
            allowed = spec.get("enum", [spec.get("const")])
            df[col] = values.where(values.isna(), values.astype(str))
            report(col, present & ~values.astype(str).isin([str(a) for a in allowed]), f"are not one of {allowed}")
        elif "string" in types:
            df[col] = values.where(values.isna(), values.astype(str))
            if "date-time" == spec.get("format"):
                parsed = pd.to_datetime(values, errors="coerce", utc=True, format="ISO8601")
                report(col, present & parsed.isna(), "are not ISO 8601 date-times")
    if not problems:
        report("response_label", (df["task"] == "label") & df["response_label"].isna(), "have task 'label' but no response_label")
        is_rate = df["task"] == "rate"
        report("response_rating", is_rate & df["response_rating"].isna(), "have task 'rate' but no response_rating")
        outside = is_rate & ((df["response_rating"] < df["rating_min"]) | (df["response_rating"] > df["rating_max"]))
        report("response_rating", outside.fillna(False).astype(bool), "are outside the rating scale [rating_min, rating_max]")
        report("trial_index", df.duplicated(["session_id", "trial_index"]), "duplicate an answer (same session_id and trial_index)")
    if problems:
        raise ContractError("responses do not follow " + RESPONSE_SCHEMA, problems)
    return df
