"""What a stimulus attack declares, and the registry the stimulus design reads.

An attack is one module that builds an `Attack` and calls `register`; its docstring names the
paper and the exact update rule. The design's `attack` names a registered attack, or an import
path (`package.module:NAME` or `file.py:NAME`) to a user's `Attack`, which is registered on first
use. An attack is targeted: it gets pixels x in [0, 1] (N×C×H×W) and target labels, and returns
the adversarial batch in [0, 1]; the engine quantises it to 8 bits and records whether it worked.
Its parameters are the design's `attack_kwargs` table, validated by its `params` model, unless the
attack reads the design's own fields (`from_design`, the three built-in attacks: their design
files and manifests predate the registry).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import torch
from pydantic import BaseModel, ConfigDict, ValidationError
from torch import nn

from engine import imports

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


class Params(BaseModel):
    """An attack's own parameters (the design's `attack_kwargs`); subclasses declare fields with defaults."""
    model_config = ConfigDict(frozen=True, extra="forbid")


class Run(Protocol):
    def __call__(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor, params: dict[str, Any]) -> torch.Tensor: ...


@dataclass(frozen=True)
class Attack:
    name: str  # as the manifest records it: lower case, digits and '-'
    summary: str  # one line for --help and the docs
    paper: str  # where the attack comes from
    run: Run  # (model, x, target, params) -> adversarial x in [0, 1]
    params: type[Params] = Params
    from_design: Callable[[Any], dict[str, Any]] | None = None  # built-ins: their parameters from the design's fields

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"attack name {self.name!r} must be lower-case letters, digits and '-'")

    def params_of(self, design: Any) -> dict[str, Any]:
        """The parameters the design gives this attack, as the manifest records them."""
        if self.from_design is not None:
            if design.attack_kwargs:
                raise ValueError(f"attack {self.name} takes its parameters from the design's own fields, not attack_kwargs")
            return self.from_design(design)
        try:
            return self.params.model_validate(design.attack_kwargs).model_dump()
        except ValidationError as exc:
            error = exc.errors(include_url=False)[0]
            where = ".".join(map(str, error["loc"]))
            allowed = ", ".join(self.params.model_fields) or "none"
            raise ValueError(f"attack_kwargs.{where}: {error['msg']} (attack {self.name} takes: {allowed})") from None


REGISTRY: dict[str, Attack] = {}


def register(attack: Attack) -> Attack:
    """Add an attack (or replace one of the same name)."""
    REGISTRY[attack.name] = attack
    return attack


def unregister(name: str) -> None:
    REGISTRY.pop(name, None)


def names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def get(spec: str) -> Attack:
    """The attack a design names: a registered name, or an import path to an `Attack` (registered now)."""
    if spec in REGISTRY:
        return REGISTRY[spec]
    if not imports.is_import_path(spec):
        raise ValueError(f"unknown attack {spec!r}; choose from {', '.join(REGISTRY)} or give an import path "
                         "(package.module:NAME or file.py:NAME) to an engine.stimulus_attacks.Attack")
    attack, _ = imports.resolve(spec)
    if not isinstance(attack, Attack):
        raise ValueError(f"{spec!r} is a {type(attack).__name__}, not an engine.stimulus_attacks.Attack")
    return register(attack)


def help_text() -> str:
    return "; ".join(f"{a.name}: {a.summary} ({a.paper})" for a in REGISTRY.values())
