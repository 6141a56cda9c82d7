"""Import paths to a user's code: `package.module:name` or `path/to/file.py:name`.

A file is loaded as a module of its own (once per path), so a researcher's model or attack can
live in a file outside the packages, with no install step.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import sys
from functools import cache
from pathlib import Path
from typing import Any

PATTERN = re.compile(r"^(?P<module>[^:]+):(?P<name>[A-Za-z_][A-Za-z0-9_]*)$")


class ImportPathError(ValueError):
    """An import path that names nothing importable; the message is one line a user can act on."""


def is_import_path(spec: str) -> bool:
    return PATTERN.match(spec) is not None


@cache
def _module_from_file(path: Path) -> Any:
    name = f"_engine_user_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
    loader = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(loader)
    sys.modules[name] = module  # pickling and dataclasses look a module up by name
    loader.loader.exec_module(module)
    return module


def resolve(spec: str) -> tuple[Any, Path | None]:
    """The object an import path names, and the file that defines it (None for a module without one)."""
    match = PATTERN.match(spec)
    if match is None:
        raise ImportPathError(f"{spec!r} is not an import path (package.module:name or file.py:name)")
    where, name = match["module"], match["name"]
    try:
        if where.endswith(".py"):
            path = Path(where).resolve()
            if not path.is_file():
                raise ImportPathError(f"{spec!r}: file {where} does not exist")
            module = _module_from_file(path)
        else:
            module = importlib.import_module(where)
    except ImportPathError:
        raise
    except Exception as exc:  # the user's module failed to import: say how, in one line
        raise ImportPathError(f"{spec!r}: importing {where} failed ({type(exc).__name__}: {exc})") from None
    if not hasattr(module, name):
        raise ImportPathError(f"{spec!r}: {where} has no {name}")
    source = getattr(module, "__file__", None)
    return getattr(module, name), Path(source) if source else None
