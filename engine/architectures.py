"""What `train.architecture` may name, and building it: the zoo's own networks or a user's.

- `demo` or `paper` (engine/models.py), sized to the data set's images and classes;
- `package.module:factory` or `path/to/file.py:factory`: a function returning a `torch.nn.Module`,
  called with the keyword arguments of `[train.model] kwargs` (e.g. a torchvision ResNet);
- `path/to/model.pt`: a TorchScript file (`torch.jit.save`), trained from the weights it holds.

A user's network takes N×C×H×W pixels and returns N×K logits. If it was made for standardised
inputs, `[train.model] mean` and `std` wrap it (engine/normalize.py) so the attacks still see
pixels in [0, 1]. A built model remembers how it was built, so a regime can make a fresh one
(`fresh`, e.g. distillation's teacher) and a checkpoint can be rebuilt from its sidecar.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import sys
import warnings
from functools import cache
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from engine.models import ARCHITECTURES, build_model
from engine.normalize import Normalized

_IMPORT_PATH = re.compile(r"^(?P<module>[^:]+):(?P<name>[A-Za-z_][A-Za-z0-9_]*)$")
SPEC_HELP = (f"{', '.join(ARCHITECTURES)}, an import path to a factory (package.module:function or file.py:function) "
             "or a TorchScript file")


class ArchitectureError(ValueError):
    """An architecture that cannot be found or built; the message is one line a user can act on."""


class ModelOptions(BaseModel):
    """`[train.model]`: how a user's network is built and what its inputs are normalised by."""
    model_config = ConfigDict(frozen=True, extra="forbid")

    kwargs: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the factory")
    mean: list[float] = Field(default_factory=list, description="per-channel mean the network subtracts from pixels in [0, 1] (empty: none)")
    std: list[float] = Field(default_factory=list, description="per-channel standard deviation it divides by (same length as mean)")

    @model_validator(mode="after")
    def _normalisation(self) -> "ModelOptions":
        if len(self.mean) != len(self.std):
            raise ValueError(f"mean has {len(self.mean)} values but std has {len(self.std)}; give one per channel for both")
        if any(s <= 0 for s in self.std):
            raise ValueError("every std must be > 0")
        return self


def is_builtin(spec: str) -> bool:
    return spec in ARCHITECTURES


@cache
def _module_from_file(path: Path) -> Any:
    name = f"_engine_user_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
    loader = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(loader)
    sys.modules[name] = module  # pickling and dataclasses look a module up by name
    loader.loader.exec_module(module)
    return module


def _factory(spec: str) -> tuple[Callable[..., nn.Module], Path | None]:
    """The factory an import path names, and the file that defines it."""
    match = _IMPORT_PATH.match(spec)
    where, name = match["module"], match["name"]
    try:
        if where.endswith(".py"):
            path = Path(where).resolve()
            if not path.is_file():
                raise ArchitectureError(f"architecture {spec!r}: file {where} does not exist")
            module = _module_from_file(path)
        else:
            module = importlib.import_module(where)
    except ArchitectureError:
        raise
    except Exception as exc:  # the user's module failed to import: say how, in one line
        raise ArchitectureError(f"architecture {spec!r}: importing {where} failed ({type(exc).__name__}: {exc})") from None
    factory = getattr(module, name, None)
    if not callable(factory):
        raise ArchitectureError(f"architecture {spec!r}: {where} has no function {name}")
    source = getattr(module, "__file__", None)
    return factory, Path(source) if source else None


def check(spec: str) -> str:
    """`spec` if it names something buildable (the config's validator); ValueError otherwise."""
    if is_builtin(spec):
        return spec
    if _IMPORT_PATH.match(spec) and not Path(spec).is_file():
        _factory(spec)
        return spec
    if Path(spec).is_file():
        return spec
    raise ArchitectureError(f"unknown architecture {spec!r}; give {SPEC_HELP}")


def fingerprint(spec: str) -> str | None:
    """sha256 of the file that defines a user's architecture (so the cache retrains when it changes); None for built-ins."""
    if is_builtin(spec):
        return None
    path = Path(spec) if Path(spec).is_file() else _factory(spec)[1]
    return hashlib.sha256(path.read_bytes()).hexdigest() if path is not None and path.is_file() else None


def _user_network(spec: str, kwargs: dict[str, Any]) -> nn.Module:
    if Path(spec).is_file():
        try:
            with warnings.catch_warnings():  # torch deprecates TorchScript for torch.export; the files users have are TorchScript
                warnings.simplefilter("ignore", DeprecationWarning)
                return torch.jit.load(spec, map_location="cpu")
        except (RuntimeError, ValueError) as exc:
            raise ArchitectureError(f"architecture {spec!r} is not a TorchScript file ({str(exc).splitlines()[0]})") from None
    factory, _ = _factory(spec)
    try:
        network = factory(**kwargs)
    except Exception as exc:  # the user's factory refused its arguments
        raise ArchitectureError(f"architecture {spec!r}: calling it with {kwargs} failed ({type(exc).__name__}: {exc})") from None
    if not isinstance(network, nn.Module):
        raise ArchitectureError(f"architecture {spec!r} returned a {type(network).__name__}, not a torch.nn.Module")
    return network


def build(spec: str, options: ModelOptions | None = None, input_shape: Sequence[int] = (1, 28, 28), classes: int = 10) -> nn.Module:
    """A freshly initialised network taking pixels in [0, 1] (normalisation wrapped in) and returning `classes` logits."""
    options = options or ModelOptions()
    if is_builtin(spec):
        network = build_model(spec, tuple(input_shape), classes)
    else:
        network = _user_network(spec, options.kwargs)
    if options.mean:
        if len(options.mean) not in (1, input_shape[0]):
            raise ArchitectureError(f"model.mean has {len(options.mean)} values for {input_shape[0]}-channel images; give 1 or {input_shape[0]}")
        network = Normalized(network, options.mean, options.std)
    network.recipe = (spec, options, tuple(input_shape), classes)
    return network


def fresh(model: nn.Module) -> nn.Module:
    """A newly initialised network built the way `model` was (same architecture, options, input and classes)."""
    return build(*model.recipe)


def check_output(model: nn.Module, input_shape: Sequence[int], classes: int) -> None:
    """Refuse a network whose output does not fit the data set, before any training."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, *input_shape, device=next(model.parameters()).device))
    except Exception as exc:  # wrong input size or channels: the user's network says why
        raise ArchitectureError(f"the network does not take {'×'.join(map(str, input_shape))} images "
                                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    finally:
        model.train(was)
    if tuple(out.shape) != (2, classes):
        raise ArchitectureError(f"the network returns shape {tuple(out.shape[1:])} per image; the data set has {classes} classes")
