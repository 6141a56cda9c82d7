"""Layered settings: defaults, TOML files, then `--set KEY=VALUE`, validated into a frozen pydantic model.

One grammar for every command-line tool that reads settings:

- `--set a.b.c=VALUE` sets key `c` of table `a.b`; VALUE is read as a TOML value (numbers, booleans,
  `["lists"]`, `"quoted strings"`), anything else is taken as a bare string.
- A document has named sections (say `train` and `design`). A key, in a file or after `--set`,
  whose first part is not a section name belongs to the tool's default section, so
  `engine train --set epochs=3` means `train.epochs=3` and a flat TOML file of fields still works.
- Later layers win, key by key; tables merge.

Errors are one line that names the key, the layer it came from (a file, `--set` or a preset) and
what is allowed. pydantic does the validation: the models declare types, bounds and allowed values
once, and a field's description doubles as its documentation.
"""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Iterable, TypeVar

from pydantic import BaseModel, ValidationError

Model = TypeVar("Model", bound=BaseModel)
Layer = tuple[str, dict[str, Any]]  # (where it came from, nested table)


class SettingsError(ValueError):
    """A bad settings file, key or value; the message is one line a user can act on."""


def parse_value(text: str) -> Any:
    """A --set value as TOML (numbers, booleans, ["lists"], "strings"), else the bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def nest(dotted: str, value: Any) -> dict[str, Any]:
    """`a.b.c`, v -> {"a": {"b": {"c": v}}}."""
    *parents, leaf = dotted.split(".")
    tree: dict[str, Any] = {leaf: value}
    for part in reversed(parents):
        tree = {part: tree}
    return tree


def place(tree: dict[str, Any], default_section: str | None, sections: Iterable[str]) -> dict[str, Any]:
    """Move the top-level keys that are not section names under `default_section`."""
    if default_section is None:
        return tree
    sections = set(sections)
    inner = {k: v for k, v in tree.items() if k not in sections}
    outer = {k: v for k, v in tree.items() if k in sections}
    return merge_trees(outer, {default_section: inner}) if inner else outer


def merge_trees(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        out[key] = merge_trees(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def parse_sets(pairs: Iterable[str], default_section: str | None = None, sections: Iterable[str] = ()) -> Layer:
    """The `--set KEY=VALUE` options of a command, as one layer."""
    tree: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise SettingsError(f"--set expects KEY=VALUE with a dotted KEY (e.g. train.gradreg.lambda=300), got {pair!r}")
        tree = merge_trees(tree, nest(key, parse_value(value.strip())))
    return "--set", place(tree, default_section, sections)


def read_toml(path: str | Path, default_section: str | None = None, sections: Iterable[str] = ()) -> Layer:
    """A TOML file as one layer (its top-level fields go to `default_section` unless they name a section)."""
    try:
        tree = tomllib.loads(Path(path).read_text())
    except OSError as exc:
        raise SettingsError(f"cannot read settings file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"settings file {path} is not valid TOML: {exc}") from None
    return str(path), place(tree, default_section, sections)


def _origins(layers: list[Layer]) -> dict[tuple[str, ...], str]:
    """Which layer last set each key (tables and leaves)."""
    where: dict[tuple[str, ...], str] = {}

    def walk(tree: dict[str, Any], prefix: tuple[str, ...], origin: str) -> None:
        for key, value in tree.items():
            where[(*prefix, key)] = origin
            if isinstance(value, dict):
                walk(value, (*prefix, key), origin)
    for origin, tree in layers:
        walk(tree, (), origin)
    return where


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    for part in loc:
        fields = {f.alias or name: f for name, f in model.model_fields.items()}
        kind = fields[part].annotation if part in fields else None
        if not (isinstance(kind, type) and issubclass(kind, BaseModel)):
            return None
        model = kind
    return model


def describe_error(model: type[BaseModel], exc: ValidationError, layers: list[Layer]) -> str:
    """pydantic's first error as one line: key, origin, what is wrong and what is allowed."""
    errors = exc.errors(include_url=False)
    error = errors[0]
    loc = tuple(str(p) for p in error["loc"])
    key = ".".join(loc) or "(top level)"
    origins = _origins(layers)
    origin = next((origins[loc[:i]] for i in range(len(loc), 0, -1) if loc[:i] in origins), "defaults")
    more = f" (and {len(errors) - 1} more problem{'s' * (len(errors) > 2)})" if len(errors) > 1 else ""
    if error["type"] == "extra_forbidden":
        parent = _model_at(model, loc[:-1])
        allowed = ", ".join(f.alias or n for n, f in parent.model_fields.items()) if parent else "none"
        return f"unknown key {key} (from {origin}); allowed there: {allowed}{more}"
    if error["type"] == "missing":
        return f"missing key {key} (from {origin}){more}"
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    return f"{key} = {error.get('input')!r} (from {origin}): {message}{more}"


def resolve(model: type[Model], layers: list[Layer]) -> Model:
    """Merge the layers (later wins) and validate them into `model`; one-line SettingsError otherwise."""
    tree: dict[str, Any] = {}
    for _, layer in layers:
        tree = merge_trees(tree, layer)
    try:
        return model.model_validate(tree)
    except ValidationError as exc:
        raise SettingsError(describe_error(model, exc, layers)) from None
