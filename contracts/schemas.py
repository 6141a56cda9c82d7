"""The schema files shipped with the package, loaded once."""
from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

MANIFEST_SCHEMA = "stimulus_manifest.v1.schema.json"
RESPONSE_SCHEMA = "response_row.v1.schema.json"


@cache
def load_schema(name: str) -> dict[str, Any]:
    return json.loads(resources.files(__package__).joinpath(name).read_text())
