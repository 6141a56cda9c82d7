"""Training configurations: named presets, overridable key by key from a TOML file or `--set`.

The training config has the fields every regime shares and one table per registered regime
(`train.gradreg.lambda`, `train.distilled.temperature`, …), each declared by the regime's module.
Layers, later winning: the preset, the `--config` TOML file, then `--set KEY=VALUE` (the grammar of
contracts.settings). `demo` is the fast preset on the embedded digits; `paper` is the paper's
schedule (Adam 2e-4 / eps 1e-4, batch 256, ~15k steps: 77 epochs of the 50k training images of
full MNIST) and wants an IDX data set and a GPU. docs/engine.md explains how the values were chosen.
"""
from __future__ import annotations

import argparse
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from contracts.settings import Layer, SettingsError, merge_trees, nest, parse_sets, read_toml, resolve
from engine import architectures, regimes
from engine.data import EMBEDDED, SPEC_HELP

ConfigError = SettingsError  # one error type for every bad setting: printed as one line, exit status 2
SECTION = "train"  # the training config's table in a settings document (`--set train.epochs=3`)


class TrainBase(BaseModel):
    """The fields every regime shares; `TrainConfig` adds one table per registered regime."""
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    architecture: str = Field("demo", description=f"network: {architectures.SPEC_HELP} (engine/architectures.py)")
    model: architectures.ModelOptions = Field(default_factory=architectures.ModelOptions,
                                              description="a user's network: factory kwargs, input mean and std")
    dataset: str = Field(EMBEDDED, description=SPEC_HELP)
    train_size: int = Field(0, ge=0, description="train on a fixed random N of the training images (0: all)")
    epochs: int = Field(12, gt=0)
    batch_size: int = Field(64, gt=0)
    lr: float = Field(1e-3, gt=0, description="Adam learning rate")
    adam_eps: float = Field(1e-8, gt=0, description="Adam ε")
    device: Literal["cpu", "cuda", "auto"] = Field("cpu", description="auto: CUDA when present")

    @field_validator("architecture")
    @classmethod
    def _buildable(cls, value: str) -> str:
        return architectures.check(value)

    def params(self, regime: str) -> regimes.Params:
        """The table of `regime` (e.g. `cfg.params("gradreg").lambda_`)."""
        return getattr(self, regimes.get(regime).section)

    def common(self) -> dict[str, Any]:
        """The shared fields, as the sidecar records them."""
        return self.model_dump(include=set(TrainBase.model_fields))


@cache
def _config_class(tables: tuple[tuple[str, str, type[regimes.Params]], ...]) -> type[TrainBase]:
    return create_model("TrainConfig", __base__=TrainBase,
                        **{section: (params, Field(default_factory=params, alias=name)) for name, section, params in tables})


def config_class() -> type[TrainBase]:
    """The training config's model for the regimes registered now (rebuilt when a regime is added)."""
    return _config_class(tuple((n, regimes.get(n).section, regimes.get(n).params) for n in regimes.names()))


TrainConfig = TrainBase  # for type hints: every config is an instance of a subclass built by config_class()

# Shared fields per preset; a regime's own preset values live in its module (Regime.presets).
PRESETS: dict[str, dict[str, Any]] = {
    "demo": {},
    "paper": {"architecture": "paper", "dataset": "/usr/share/datasets/mnist", "epochs": 77, "batch_size": 256, "lr": 2e-4,
              "adam_eps": 1e-4, "device": "auto"},
}


def preset_layer(preset: str) -> Layer:
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    tables = {n: dict(regimes.get(n).presets[preset]) for n in regimes.names()
              if preset in regimes.get(n).presets}
    return f"preset {preset}", {**PRESETS[preset], **tables}


@cache
def _document_class(train: type[TrainBase]) -> type[BaseModel]:
    return create_model("TrainSettings", __config__=ConfigDict(extra="forbid"), train=(train, ...))


def build(layers: list[Layer]) -> TrainBase:
    """Validate layers of training keys (rooted at the training table) into a frozen config."""
    return resolve(_document_class(config_class()), [(origin, {SECTION: tree}) for origin, tree in layers]).train


def overrides_layer(overrides: dict[str, Any], origin: str = "overrides") -> Layer:
    """Keys (dotted, or nested tables) and their values as a layer."""
    tree: dict[str, Any] = {}
    for key, value in overrides.items():
        tree = merge_trees(tree, nest(key, value))
    return origin, tree


def make_config(preset: str = "demo", overrides: dict | None = None, toml_path: str | Path | None = None) -> TrainBase:
    """The preset, then the TOML file's keys, then `overrides` (dotted keys or nested tables; later wins)."""
    layers = [preset_layer(preset)]
    if toml_path is not None:
        layers.append(read_train_toml(toml_path))
    return build([*layers, overrides_layer(overrides or {})])


def with_overrides(cfg: TrainBase, overrides: dict[str, Any]) -> TrainBase:
    """`cfg` with some keys replaced (e.g. {"gradreg.lambda": 300}), validated again."""
    return build([("config", cfg.model_dump(by_alias=True)), overrides_layer(overrides)])


def read_train_toml(path: str | Path) -> Layer:
    """A training TOML file: its keys flat, or under a [train] table."""
    # [slurm] says where jobs run, not how a model trains (engine/executor.py reads it).
    origin, tree = read_toml(path, SECTION, (SECTION, "slurm"))
    return origin, tree.get(SECTION, {})


def resolved(cfg: TrainBase) -> dict[str, Any]:
    """The full config as a settings document would spell it (what artefacts record)."""
    return cfg.model_dump(by_alias=True)


def check_condition(condition: str) -> str:
    """`condition` if it is a registered regime; a one-line error naming the registered ones otherwise."""
    regimes.get(condition)
    return condition


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """The options every training-related command shares."""
    parser.add_argument("--preset", default="demo", help=f"one of {', '.join(PRESETS)} (default demo)")
    parser.add_argument("--config", metavar="TOML", help="TOML file of training keys (flat, or under [train]), applied over the preset")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one key, e.g. --set epochs=3 or --set train.gradreg.lambda=300 "
                             f"(shared: {', '.join(TrainBase.model_fields)}; per regime: " + ", ".join(
                                 f"{r.name}.{{{','.join(f.alias or n for n, f in r.params.model_fields.items())}}}"
                                 for r in map(regimes.get, regimes.names()) if r.params.model_fields) + ")")
    parser.add_argument("--dataset", help=f"shorthand for --set dataset=...: {SPEC_HELP}")
    parser.add_argument("--device", help="shorthand for --set device=...: cpu, cuda or auto")
    parser.add_argument("--seed", type=int, default=0, help="training seed (default 0)")


def layers_from_args(args: argparse.Namespace) -> list[Layer]:
    """The training layers of a command line: the preset, --config, --set and the shorthands."""
    layers = [preset_layer(args.preset)]
    if getattr(args, "config", None) is not None:
        layers.append(read_train_toml(args.config))
    origin, tree = parse_sets(args.set, SECTION, (SECTION,))
    layers.append((origin, tree.get(SECTION, {})))
    shorthands = {k: v for k in ("dataset", "device") if (v := getattr(args, k, None)) is not None}
    if shorthands:
        layers.append(("--" + "/--".join(shorthands), shorthands))
    return layers


def config_from_args(args: argparse.Namespace) -> TrainBase:
    return build(layers_from_args(args))
