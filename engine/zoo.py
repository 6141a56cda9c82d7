"""The model zoo: train a condition's model under a preset, or reuse the checkpoint that matches.

A checkpoint is reused when condition, hyperparameters, data set (by sha256), seed and the
models' layout revision all match: they are hashed into its file name `runs/models/<id>-<key>.pt`; loading verifies its sha256.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
from pathlib import Path

from torch import nn

from engine import checkpoints
from engine.config import CONDITIONS, Config, add_config_args, check_condition, config_from_args, make_config
from engine.data import Dataset, load_dataset
from engine.models import MODEL_REVISION
from engine.training import accuracy, resolve_device, train

CACHE_DIR = Path("runs/models")


# Fields that only one regime reads; the others' weights do not depend on them.
REGIME_FIELDS = {"gradreg_lambda": "gradreg", "uniform_lambda": "gradreg-uniform", "temperature": "distilled",
                 "distill_lr": "distilled", "adv_eps": "adversarial"}


def hyperparameters(cfg: Config, condition: str) -> dict:
    """What determines `condition`'s trained weights (the data set enters by hash, the device not at all)."""
    return {k: v for k, v in dataclasses.asdict(cfg).items()
            if k not in ("dataset", "device") and REGIME_FIELDS.get(k, condition) == condition}


def cache_key(condition: str, cfg: Config, dataset_sha256: str, seed: int) -> str:
    payload = json.dumps([condition, hyperparameters(cfg, condition), dataset_sha256, seed, MODEL_REVISION], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def train_or_load_config(condition: str, cfg: Config, preset: str = "demo", seed: int = 0, cache_dir: Path = CACHE_DIR,
                         dataset: Dataset | None = None, progress: bool = True) -> tuple[nn.Module, dict]:
    """`train_or_load` for an explicit Config (what the CLI builds from presets, TOML and --set)."""
    check_condition(condition)
    dataset = dataset or load_dataset(cfg.dataset)
    model_id = f"{condition}-{preset}-s{seed}"
    path = Path(cache_dir) / f"{model_id}-{cache_key(condition, cfg, dataset.sha256, seed)}.pt"
    device = resolve_device(cfg.device)
    if checkpoints.sidecar_path(path).is_file():
        return checkpoints.load(path, cfg.architecture, device)
    model, metrics = train(condition, cfg, dataset.train, seed, progress)
    meta = {
        "id": model_id,
        "condition": condition,
        "preset": preset,
        "architecture": cfg.architecture,
        "hyperparameters": hyperparameters(cfg, condition),
        "dataset": {"name": dataset.name, "source": dataset.source},
        "dataset_sha256": dataset.sha256,
        "seed": seed,
        "device": str(device),
        "git_commit": checkpoints.git_commit(),
        **metrics,
        "val_accuracy": accuracy(model, dataset.val.x, dataset.val.y),
        "clean_accuracy": accuracy(model, dataset.test.x, dataset.test.y),
    }
    return model, checkpoints.save(model, meta, path)


def train_or_load(condition: str, preset: str = "demo", seed: int = 0, cache_dir: Path = CACHE_DIR,
                  dataset: Dataset | None = None, overrides: dict | None = None, progress: bool = True) -> tuple[nn.Module, dict]:
    """An eval-mode model for `condition` and its sidecar metadata, trained now or reused from cache_dir."""
    return train_or_load_config(condition, make_config(preset, overrides), preset, seed, cache_dir, dataset, progress)


def cmd_train(args: argparse.Namespace) -> None:
    cfg = config_from_args(args)
    dataset = load_dataset(cfg.dataset)
    for condition in CONDITIONS if args.condition == "all" else [args.condition]:
        model, meta = train_or_load_config(condition, cfg, args.preset, args.seed, args.out, dataset)
        print(f"{meta['id']}: clean test accuracy {meta['clean_accuracy']:.3f}, trained in {meta['train_seconds']} s "
              f"-> {args.out}/{meta['id']}-{cache_key(condition, cfg, dataset.sha256, args.seed)}.pt")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train (or reuse) the model zoo's models",
                       description="Train a condition's model, or reuse the cached checkpoint with the same config, data and seed.")
    p.add_argument("--condition", default="all", help=f"one of {', '.join(CONDITIONS)}, or 'all' (default)")
    add_config_args(p)
    p.add_argument("--out", type=Path, default=CACHE_DIR, help=f"checkpoint directory (default {CACHE_DIR})")
    p.set_defaults(func=cmd_train)
