"""Checkpoints: `NAME.pt` (a state dict) beside `NAME.json` (config, provenance, metrics, the .pt's sha256).

Loading checks the hash before unpickling anything and refuses weights that do not fit the
architecture the sidecar (or the caller) names.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
from pathlib import Path

import torch
from pydantic import ValidationError
from torch import nn

from contracts import sha256_file
from engine.data import Dataset
from engine import architectures
from engine.architectures import ArchitectureError


class CheckpointError(ValueError):
    """A missing, corrupt or mismatched checkpoint; the message is one line a user can act on."""


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def sidecar_path(path: Path) -> Path:
    return Path(path).with_suffix(".json")


def save(model: nn.Module, meta: dict, path: Path) -> dict:
    """Write the weights and the sidecar; returns the sidecar (with `checkpoint_sha256`) as written."""
    # Each file appears whole (write, then rename), the sidecar last: a concurrent reader that finds
    # the sidecar finds the weights it describes.
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # Through memory: torch.save names the zip's root folder after a file it writes to (here the
    # temp name, with its pid), so the same weights would hash differently from run to run.
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buffer)
    tmp.write_bytes(buffer.getvalue())
    meta = {**meta, "checkpoint_sha256": sha256_file(tmp)}
    os.replace(tmp, path)
    sidecar = json.dumps(meta, indent=2, sort_keys=True) + "\n"
    tmp.write_text(sidecar)
    os.replace(tmp, sidecar_path(path))
    # The sidecar as `load` reads it back (sorted keys, JSON types): a model trained now and the same
    # model loaded from the cache give the same metadata, so a stimulus manifest has the same bytes.
    return json.loads(sidecar)


def read_sidecar(path: Path) -> dict:
    side = sidecar_path(path)
    if not Path(path).is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; train one with `engine train`")
    if not side.is_file():
        raise CheckpointError(f"checkpoint {path} has no sidecar {side.name}; it was not written by `engine train`")
    try:
        return json.loads(side.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"sidecar {side} is not valid JSON ({exc})") from None


def rebuild(path: Path, meta: dict) -> nn.Module:
    """The untrained network a sidecar describes (architecture, options, image shape, classes)."""
    arch = meta.get("architecture")
    try:
        architectures.check(str(arch))
        options = architectures.ModelOptions(**meta.get("config", {}).get("model", {}))
        return architectures.build(arch, options, tuple(meta.get("input_shape", (1, 28, 28))), len(meta.get("classes", range(10))))
    except (ArchitectureError, ValidationError) as exc:
        raise CheckpointError(f"checkpoint {path} names an architecture that cannot be built: {str(exc).splitlines()[0]}") from None


def load(path: Path, architecture: str | None = None, device: str = "cpu") -> tuple[nn.Module, dict]:
    """The model (eval mode) and its sidecar, after checking the hash and the architecture."""
    path = Path(path)
    meta = read_sidecar(path)
    actual = sha256_file(path)
    if actual != meta.get("checkpoint_sha256"):
        raise CheckpointError(f"checkpoint {path} has sha256 {actual[:12]}…, its sidecar says "
                              f"{str(meta.get('checkpoint_sha256'))[:12]}…: the file was changed or corrupted")
    arch = meta.get("architecture")
    if architecture is not None and arch != architecture:
        raise CheckpointError(f"checkpoint {path} holds a {arch!r} model, expected architecture {architecture!r}")
    model = rebuild(path, meta)
    try:
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise CheckpointError(f"checkpoint {path} does not fit architecture {arch!r}: {first}") from None
    return model.to(device).eval(), meta


def load_many(paths: list[Path], dataset: Dataset) -> tuple[dict[str, nn.Module], list[dict]]:
    """User-named checkpoints keyed by condition, each checked to come from `dataset`."""
    models, metas = {}, []
    for path in paths:
        model, meta = load(path)
        if meta.get("dataset_sha256") != dataset.sha256:
            raise CheckpointError(f"checkpoint {path} was trained on another data set (sha256 {str(meta.get('dataset_sha256'))[:12]}…) "
                                  f"than {dataset.name} ({dataset.sha256[:12]}…); pass the matching --dataset")
        if meta["condition"] in models:
            raise CheckpointError(f"two checkpoints of condition {meta['condition']!r}; pass one model per condition")
        models[meta["condition"]] = model
        metas.append(meta)
    return models, metas
