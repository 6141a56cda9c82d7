"""What the study declared: its conditions. The contrast families are built from these, never from
whichever conditions happen to have answers, so a condition that lost all its rows still counts in
its Holm family and is reported as not estimable instead of silently shrinking the family.

Where the conditions come from, first found wins: `[design] conditions` in the analysis config, a
stimulus manifest (`--manifest`), the `condition` row of the export's data_dictionary.csv beside
responses.csv (the study writes its stimulus set's conditions there), and only failing all of those
the conditions present in the data (said so in the report).
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from contracts import RESPONSE_SCHEMA, ContractError, load_schema, validate_manifest

from analysis.loading import read_config

DICTIONARY = "data_dictionary.csv"
ONE_OF = "one of: "


@dataclass(frozen=True)
class Declared:
    conditions: tuple[str, ...]   # canonical order; the reference (normal) first when declared
    source: str                   # where they were declared, in words


def known_conditions() -> list[str]:
    return list(load_schema(RESPONSE_SCHEMA)["properties"]["condition"]["enum"])


def canonical(conditions: list[str], where: str) -> tuple[str, ...]:
    """Declared conditions in the canonical order, clean controls left out (never contrasted)."""
    known = known_conditions()
    unknown = sorted(set(conditions) - set(known))
    if unknown:
        raise ContractError(where, [f"unknown condition(s) {', '.join(unknown)}; known: {', '.join(known)}"])
    return tuple(c for c in known if c in set(conditions) and c != "clean")


def from_dictionary(path: Path) -> list[str] | None:
    """The study's conditions from a data dictionary's `responses.csv,condition` row, if it lists them."""
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            if row.get("file") == "responses.csv" and row.get("column") == "condition" and row.get("type", "").startswith(ONE_OF):
                return [c.strip() for c in row["type"].removeprefix(ONE_OF).split(",")]
    return None


def from_manifest(path: Path) -> list[str]:
    try:
        manifest = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ContractError(f"stimulus manifest {path}", [str(exc)]) from None
    validate_manifest(manifest)
    return sorted({s["condition"] for s in manifest["stimuli"]})


def declared_conditions(config: Path | None, manifest: Path | None, responses: str | Path,
                        present: list[str]) -> Declared:
    """The declared conditions (see the module docstring for the order of the sources)."""
    design = read_config(config).get("design", {}) if config is not None else {}
    unknown = sorted(set(design) - {"conditions"})
    if unknown:
        raise ContractError(f"analysis config {config}", [f"unknown [design] key(s): {', '.join(unknown)}; known: conditions"])
    if "conditions" in design:
        return Declared(canonical(list(design["conditions"]), f"analysis config {config}"), f"the analysis config {config}")
    if manifest is not None:
        return Declared(canonical(from_manifest(manifest), f"stimulus manifest {manifest}"), f"the stimulus manifest {manifest}")
    dictionary = Path(responses).parent / DICTIONARY if "://" not in str(responses) else None
    if dictionary is not None and dictionary.is_file():
        listed = from_dictionary(dictionary)
        if listed:
            return Declared(canonical(listed, str(dictionary)), f"the export's {DICTIONARY}")
    return Declared(canonical(present, "responses"), "the data (no declaration found: pass --config with [design] conditions "
                                                      "or --manifest so that a condition without answers still counts)")
