"""The stimulus design: which digits, targets, models and attack a set uses (engine/stimulus_design.toml).

The default file holds every field with a comment on each; a `--config` file or `--set` changes any
subset of them (contracts.settings' grammar). Validation is pydantic's: a bad field is one line
naming the key, where it came from and what is allowed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from contracts.settings import Layer, SettingsError, read_toml, resolve
from engine import regimes, stimulus_attacks

DESIGN_FILE = Path(__file__).resolve().parent.parent / "stimulus_design.toml"
SECTION = "design"
# The built-in attacks a stimulus set can be made with (engine/stimulus_attacks/, one module each).
STIMULUS_ATTACKS = stimulus_attacks.names()
OLD_ATTACK_NAMES = {"itgsm": "iterated-tgsm"}  # sets and design files written before the rename
# Designs by name (`generate-stimuli --design NAME`): the changes each makes to the default file,
# applied before any --config file or --set. `six-defenses` is the default file itself; `paper` is
# the replicated paper's four models (normal, FGSM adversarial training, distillation, gradreg).
NAMED_DESIGNS: dict[str, dict[str, Any]] = {
    "six-defenses": {},
    "paper": {"conditions": ["normal", "adversarial", "distilled", "gradreg"]},
}
DEFAULT_DESIGN = "six-defenses"


class Design(BaseModel):
    """What `engine/stimulus_design.toml` describes (its comments explain each field; it holds the defaults)."""
    model_config = ConfigDict(frozen=True, extra="forbid")

    dataset: str
    split: Literal["test", "val"]  # never `train`: the models have seen those digits
    sources_per_class: int = Field(ge=1)
    practice: int = Field(ge=0)
    catch: int = Field(ge=0)
    target_rule: Literal["next", "all", "random"]
    conditions: tuple[str, ...] = Field(min_length=1)
    clean_controls: bool
    attack: str  # a registered attack, or an import path to a user's (engine/stimulus_attacks/base.py)
    attack_kwargs: dict[str, Any] = Field(default_factory=dict)  # parameters of an attack that has no design fields
    step: float = Field(gt=0)
    iterations: int = Field(ge=1)
    eps: float = Field(ge=0)
    stop_confidence: float = Field(ge=0, lt=1)
    theta: float
    gamma: float = Field(gt=0, le=1)
    matching: Literal["none", "l2"]

    @field_validator("attack", mode="before")
    @classmethod
    def _old_attack_name(cls, value: Any) -> Any:
        return OLD_ATTACK_NAMES.get(value, value)

    @field_validator("attack")
    @classmethod
    def _registered_attack(cls, value: str) -> str:
        stimulus_attacks.get(value)
        return value

    @field_validator("conditions")
    @classmethod
    def _known_conditions(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [c for c in value if c not in regimes.REGISTRY]
        if unknown:
            raise ValueError(f"unknown condition(s) {', '.join(unknown)}; choose from {', '.join(regimes.names())}")
        if len(set(value)) != len(value):
            raise ValueError("conditions must not repeat")
        return value

    @model_validator(mode="after")
    def _theta(self) -> "Design":
        if self.theta == 0:
            raise ValueError("theta must be non-zero")
        return self

    @model_validator(mode="after")
    def _attack_params(self) -> "Design":
        self.attack_params()
        return self

    def attack_params(self) -> dict:
        """The parameters of `attack` as the manifest records them (0 for eps/stop_confidence means none)."""
        return stimulus_attacks.get(self.attack).params_of(self)


class _DesignDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")
    design: Design


def default_layer() -> Layer:
    return read_toml(DESIGN_FILE)


def named_layer(name: str) -> Layer:
    """The layer of a named design (NAMED_DESIGNS); a one-line error naming the choices otherwise."""
    if name not in NAMED_DESIGNS:
        raise SettingsError(f"unknown design {name!r}; choose one of {', '.join(NAMED_DESIGNS)}")
    return f"design {name}", dict(NAMED_DESIGNS[name])


def build_design(layers: list[Layer]) -> Design:
    """Validate design layers (rooted at the design table) over the default file."""
    return resolve(_DesignDocument, [(origin, {SECTION: tree}) for origin, tree in [default_layer(), *layers]]).design


def load_design(path: str | Path | None = None, overrides: dict | None = None, name: str = DEFAULT_DESIGN) -> Design:
    """The named design (the default file by default), updated by a TOML file holding any subset
    of its keys, then by overrides."""
    layers = [read_toml(path)] if path is not None else []
    return build_design([named_layer(name), *layers, ("overrides", dict(overrides or {}))])


__all__ = ["DEFAULT_DESIGN", "DESIGN_FILE", "Design", "NAMED_DESIGNS", "STIMULUS_ATTACKS", "SettingsError", "build_design",
           "load_design", "named_layer"]
