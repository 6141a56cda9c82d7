"""The names every package shares (conditions, roles, tasks) and their display names, read from the schemas.

The schemas are the one place a name is spelled: `stimulus_manifest.v1.schema.json` lists the
defenses (with an `x-display-names` annotation) and the stimulus roles; `response_row.v1.schema.json`
lists the tasks and blocks. A new defense is one more entry there, and every package sees it.
"""
from __future__ import annotations

from contracts.schemas import MANIFEST_SCHEMA, RESPONSE_SCHEMA, load_schema

_manifest = load_schema(MANIFEST_SCHEMA)
_defs = _manifest["$defs"]
_responses = load_schema(RESPONSE_SCHEMA)["properties"]

CLEAN = "clean"
# Training regimes of attacked models, in the schema's order (the order tables and figures use).
DEFENSES: tuple[str, ...] = tuple(_defs["defense"]["enum"])
# What a stimulus's `condition` may be: a defense, or `clean` for unperturbed images.
CONDITIONS: tuple[str, ...] = (*DEFENSES, CLEAN)
ROLES: tuple[str, ...] = tuple(_defs["stimulus"]["properties"]["role"]["enum"])
TASKS: tuple[str, ...] = tuple(_responses["task"]["enum"])
BLOCKS: tuple[str, ...] = tuple(_responses["block"]["enum"])
DISPLAY_NAMES: dict[str, str] = {**_defs["defense"]["x-display-names"], **_defs["condition"]["x-display-names"]}


def display_name(condition: str) -> str:
    """How a condition is written for people (tables, figures, the dashboard); the name itself if unlisted."""
    return DISPLAY_NAMES.get(condition, condition)
