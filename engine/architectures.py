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
import inspect
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from engine import imports
from engine.models import ARCHITECTURES, build_model
from engine.normalize import Normalized

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


def _factory(spec: str) -> tuple[Callable[..., nn.Module], Path | None]:
    """The factory an import path names, and the file that defines it."""
    try:
        factory, source = imports.resolve(spec)
    except imports.ImportPathError as exc:
        raise ArchitectureError(f"architecture {exc}") from None
    if not callable(factory):
        raise ArchitectureError(f"architecture {spec!r}: {spec.split(':')[1]} is a {type(factory).__name__}, not a function")
    return factory, source


def check(spec: str) -> str:
    """`spec` if it names something buildable (the config's validator); ValueError otherwise."""
    if is_builtin(spec):
        return spec
    if imports.is_import_path(spec) and not Path(spec).is_file():
        _factory(spec)
        return spec
    if Path(spec).is_file():
        return spec
    raise ArchitectureError(f"unknown architecture {spec!r}; give {SPEC_HELP}")


def fingerprint(spec: str) -> str | None:
    """sha256 of what defines a user's architecture, so the cache retrains when it changes; None for built-ins.
    A file (TorchScript, or file.py:function): its bytes. An installed package's function: the file
    that defines it (not the module that re-exports it) and the installed distribution's version."""
    if is_builtin(spec):
        return None
    if Path(spec).is_file():
        return hashlib.sha256(Path(spec).read_bytes()).hexdigest()
    factory, module_file = _factory(spec)
    module = spec.split(":")[0]
    if module.endswith(".py"):
        return hashlib.sha256(module_file.read_bytes()).hexdigest() if module_file else None
    try:
        defining = Path(inspect.getsourcefile(factory) or module_file)
    except TypeError:  # a builtin or C function: no source file
        defining = module_file
    digest = hashlib.sha256(defining.read_bytes() if defining and defining.is_file() else b"")
    digest.update(" ".join(distribution_versions(module)).encode())
    return digest.hexdigest()


def distribution_versions(module: str) -> list[str]:
    """`name==version` of the installed distributions that provide `module`'s top-level package (none for a bare folder on sys.path)."""
    top = module.split(".")[0]
    return sorted(f"{name}=={metadata.version(name)}" for name in metadata.packages_distributions().get(top, []))


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
