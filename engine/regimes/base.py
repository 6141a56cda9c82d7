"""What a training regime (a defense) declares, and the registry every command reads.

A regime is one module that builds a `Regime` and calls `register`. Training, the zoo's cache
key, `engine sweep`, every command's `--help` and docs/engine.md read the registry, so a new
defense touches nothing else in the engine. Its name must be a defense of the contracts'
vocabulary (contracts.DEFENSES) before the study accepts stimuli made against it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Protocol

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from contracts import DEFENSES
from contracts.settings import SettingsError

if TYPE_CHECKING:
    from engine.config import TrainConfig


class Params(BaseModel):
    """A regime's own config fields (its section of the training config, e.g. `train.gradreg`).

    Subclasses declare each field with its demo-preset default and a description (`Field(...)`).
    """
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    def epochs(self, configured: int) -> int:
        """Epochs a loss regime trains when `train.epochs` is `configured`; a regime with a longer schedule overrides it."""
        return configured


class Loss(Protocol):
    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, params: Any) -> torch.Tensor: ...


class Fit(Protocol):
    """A whole training procedure, for regimes that are not one loss over mini-batches (distillation).

    Trains `model` (freshly initialised, on its device) in place; returns the mean loss of each epoch."""
    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: "TrainConfig", params: Any,
                 seed: int, progress: bool) -> list[float]: ...


@dataclass(frozen=True)
class Regime:
    name: str  # the condition name, as in contracts.DEFENSES
    summary: str  # one line for --help and the docs
    paper: str  # where the regime comes from
    params: type[Params] = Params
    loss: Loss | None = None  # (model, x, y, params) -> scalar on a training-mode batch; or
    fit: Fit | None = None  # ... a whole training procedure
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # preset name -> its values of `params`
    sweep_field: str | None = None  # the field `engine sweep` tunes by default, if any
    sweep_score: str = "transfer-fgsm"  # how `engine sweep` scores a value by default (engine.sweep.SCORES)

    def __post_init__(self) -> None:
        if (self.loss is None) == (self.fit is None):
            raise ValueError(f"regime {self.name!r} must declare exactly one of loss and fit")

    @property
    def section(self) -> str:
        """The Python attribute of its table in the training config (`cfg.gradreg_uniform`); settings
        files and `--set` spell the table by the regime's name (`train.gradreg-uniform.lambda`)."""
        return self.name.replace("-", "_")


REGISTRY: dict[str, Regime] = {}


def register(regime: Regime) -> Regime:
    """Add a regime (or replace one of the same name); the training config gains its section."""
    REGISTRY[regime.name] = regime
    return regime


def unregister(name: str) -> None:
    REGISTRY.pop(name, None)


def get(name: str) -> Regime:
    if name not in REGISTRY:
        raise SettingsError(f"unknown regime {name!r}; choose one of {', '.join(REGISTRY)}")
    return REGISTRY[name]


def names() -> tuple[str, ...]:
    """Registered regimes in the vocabulary's order (contracts.DEFENSES), then any others as registered."""
    order = {name: i for i, name in enumerate(DEFENSES)}
    return tuple(sorted(REGISTRY, key=lambda name: order.get(name, len(order))))


def help_text() -> str:
    """One line per regime, for `--help`."""
    return "; ".join(f"{name}: {REGISTRY[name].summary}" for name in names())


def markdown_table() -> str:
    """The regimes, their config keys (demo-preset values) and papers, as docs/engine.md shows them."""
    lines = ["| regime | what it trains on | config keys (demo preset) | from |", "|---|---|---|---|"]
    for name in names():
        r = REGISTRY[name]
        demo = r.presets.get("demo", {})
        keys = "; ".join(f"`train.{name}.{f.alias or key}` = {demo.get(f.alias or key, f.default)!r}"
                         + (f" ({f.description})" if f.description else "")
                         for key, f in r.params.model_fields.items()) or "—"
        lines.append(f"| `{name}` | {r.summary} | {keys} | {r.paper} |")
    return "\n".join(lines) + "\n"
