"""`engine import-model`: a network trained elsewhere, into the zoo as a condition's checkpoint.

The weights are a state dict file (`torch.save(model.state_dict(), ...)`, read without pickle)
for the network `train.architecture` builds, or none when the architecture is a TorchScript
file that carries its own. If `[train.model] mean/std` wrap the network (engine/normalize.py),
the weights are those of the inner network, as trained on standardised inputs. The checkpoint is
written like a trained one (weights, sidecar, sha256) into the models folder; its sidecar says
where the weights came from (`origin`: path and sha256) and what the network scores on this data
set's validation and test splits, so `generate-stimuli --models` and `evaluate` take it as they
take the zoo's own. The stimulus design names conditions by training regime, so import a model
under the regime it was trained with (e.g. `--condition normal`); its `id` tells it apart.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import torch
from torch import nn

from contracts import sha256_file
from engine import architectures, checkpoints
from engine.config import add_config_args, check_condition, config_from_args
from engine.data import Dataset, load_dataset
from engine.models import accuracy
from engine.zoo import add_models_dir_arg, applied_config

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _load_weights(network: nn.Module, weights: Path) -> None:
    target = network.model if isinstance(network, architectures.Normalized) else network
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a file that is no state dict
        raise checkpoints.CheckpointError(f"{weights} is not a state dict file ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    if not isinstance(state, dict):
        raise checkpoints.CheckpointError(f"{weights} holds a {type(state).__name__}, not a state dict (save model.state_dict())")
    try:
        target.load_state_dict(state)
    except RuntimeError as exc:
        detail = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise checkpoints.CheckpointError(f"the weights in {weights} do not fit the network: {detail}") from None


def import_model(name: str, condition: str, cfg, dataset: Dataset, weights: Path | None, models_dir: Path) -> tuple[Path, dict]:
    """Write `name`'s checkpoint and sidecar into models_dir; returns the path and the sidecar."""
    check_condition(condition)
    if not _NAME.match(name):
        raise checkpoints.CheckpointError(f"model name {name!r} must be letters, digits, '.', '_' or '-' (at most 64)")
    if weights is None and not Path(cfg.architecture).is_file():
        raise checkpoints.CheckpointError("give --weights FILE, or an architecture that is a TorchScript file holding its weights")
    if weights is not None and not Path(weights).is_file():
        raise checkpoints.CheckpointError(f"weights file {weights} does not exist")
    input_shape = tuple(dataset.test.x.shape[1:])
    network = architectures.build(cfg.architecture, cfg.model, input_shape, len(dataset.classes))
    if weights is not None:
        _load_weights(network, Path(weights))
    network.eval()
    architectures.check_output(network, input_shape, len(dataset.classes))
    origin = Path(weights if weights is not None else cfg.architecture)
    digest = sha256_file(origin)
    meta = {
        "id": name,
        "condition": condition,
        "preset": "import",
        "architecture": cfg.architecture,
        "hyperparameters": {"origin_sha256": digest, "model": cfg.model.model_dump()},
        "config": applied_config(cfg, condition),
        "origin": {"path": str(origin.resolve()), "sha256": digest},
        "dataset": {"name": dataset.name, "source": dataset.source},
        "dataset_sha256": dataset.sha256,
        "input_shape": list(input_shape),
        "classes": list(dataset.classes),
        "git_commit": checkpoints.git_commit(),
        "val_accuracy": accuracy(network, dataset.val.x, dataset.val.y),
        "clean_accuracy": accuracy(network, dataset.test.x, dataset.test.y),
    }
    path = Path(models_dir) / f"{name}-import-{digest[:12]}.pt"
    return path, checkpoints.save(network, meta, path)


def cmd_import(args: argparse.Namespace) -> None:
    cfg = config_from_args(args)
    path, meta = import_model(args.name, args.condition, cfg, load_dataset(cfg.dataset, seed=args.seed), args.weights, args.models_dir)
    print(f"{meta['id']} ({meta['condition']}): clean test accuracy {meta['clean_accuracy']:.3f} -> {path}")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import-model", help="put a network trained elsewhere into the zoo as a checkpoint",
                       description=__doc__.split("\n\n")[1].replace("\n", " "))
    p.add_argument("name", help="the model's id (letters, digits, '.', '_', '-')")
    p.add_argument("--condition", required=True, help="the condition it stands for in a stimulus design (e.g. normal)")
    p.add_argument("--weights", type=Path, help="state dict file of the network (not needed for a TorchScript architecture)")
    add_config_args(p)
    add_models_dir_arg(p)
    p.set_defaults(func=cmd_import)
