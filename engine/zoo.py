"""The model zoo: train a condition's model under a preset, or reuse the checkpoint that matches.

A checkpoint is reused when condition, hyperparameters, data set (by sha256), seed and the
models' layout revision all match: they are hashed into its file name `runs/models/<id>-<key>.pt`;
loading verifies its sha256.

`load_zoo` trains the missing models of a set side by side, one process per CPU core with one
torch thread each: these small networks gain little from a second intra-op thread (a normal step
runs 1.4× faster on two, not 2×), while two processes train two models in the time of one.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from engine import architectures, checkpoints, executor, regimes
from engine.config import TrainConfig, add_config_args, build, check_condition, config_from_args, make_config
from engine.data import Dataset, load_dataset
from engine.models import MODEL_REVISION, accuracy
from engine.training import resolve_device, train

CACHE_DIR = Path("runs/models")


def hyperparameters(cfg: TrainConfig, condition: str) -> dict:
    """What determines `condition`'s trained weights: the shared fields and its own table (the data set
    enters the cache key by hash, the device not at all)."""
    common = {k: v for k, v in cfg.common().items() if k not in ("dataset", "device")}
    # A user's network enters by its options and the sha256 of its defining file; the built-in
    # ones keep the keys they had before user networks existed, so their cached checkpoints stay valid.
    if cfg.model == architectures.ModelOptions():
        del common["model"]
    if (digest := architectures.fingerprint(cfg.architecture)) is not None:
        common["architecture_sha256"] = digest
    return {**common, condition: cfg.params(condition).model_dump(by_alias=True)}


def applied_config(cfg: TrainConfig, condition: str) -> dict:
    """The resolved config as it applies to `condition` (what its sidecar records)."""
    return {**cfg.common(), condition: cfg.params(condition).model_dump(by_alias=True)}


def cache_key(condition: str, cfg: TrainConfig, dataset_sha256: str, seed: int) -> str:
    payload = json.dumps([condition, hyperparameters(cfg, condition), dataset_sha256, seed, MODEL_REVISION], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def checkpoint_path(condition: str, cfg: TrainConfig, preset: str, seed: int, cache_dir: Path, dataset: Dataset) -> Path:
    return Path(cache_dir) / f"{condition}-{preset}-s{seed}-{cache_key(condition, cfg, dataset.sha256, seed)}.pt"


def train_or_load_config(condition: str, cfg: TrainConfig, preset: str = "demo", seed: int = 0, cache_dir: Path = CACHE_DIR,
                         dataset: Dataset | None = None, progress: bool = True) -> tuple[nn.Module, dict]:
    """`train_or_load` for an explicit TrainConfig (what the CLI builds from presets, TOML and --set)."""
    check_condition(condition)
    dataset = dataset or load_dataset(cfg.dataset)
    model_id = f"{condition}-{preset}-s{seed}"
    path = checkpoint_path(condition, cfg, preset, seed, cache_dir, dataset)
    device = resolve_device(cfg.device)
    if checkpoints.sidecar_path(path).is_file():
        return checkpoints.load(path, cfg.architecture, device)
    model, metrics = train(condition, cfg, dataset.train, seed, progress, classes=len(dataset.classes))
    meta = {
        "id": model_id,
        "condition": condition,
        "preset": preset,
        "architecture": cfg.architecture,
        "hyperparameters": hyperparameters(cfg, condition),
        "config": applied_config(cfg, condition),
        "dataset": {"name": dataset.name, "source": dataset.source},
        "dataset_sha256": dataset.sha256,
        "input_shape": list(dataset.test.x.shape[1:]),
        "classes": list(dataset.classes),
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


def _train_to_cache(regime: regimes.Regime, settings: dict, preset: str, seed: int, cache_dir: Path, dataset: Dataset) -> None:
    """In a worker process: register the regime if this process lacks it (one added at run time), rebuild the config, train."""
    torch.set_num_threads(1)
    if regime.name not in regimes.REGISTRY:
        regimes.register(regime)
    cfg = build([("config", settings)])
    train_or_load_config(regime.name, cfg, preset, seed, cache_dir, dataset, progress=False)


def load_zoo(conditions: list[str], cfg: TrainConfig, preset: str = "demo", seed: int = 0, cache_dir: Path = CACHE_DIR,
             dataset: Dataset | None = None, progress: bool = True, jobs: int = 0,
             cluster: executor.SlurmExecutor | None = None) -> dict[str, tuple[nn.Module, dict]]:
    """Every condition's (model, sidecar): the uncached ones trained as a `cluster` job array, or else in
    `jobs` processes at once (0: one per CPU core; 1: here, one after the other), then all loaded from the cache."""
    dataset = dataset or load_dataset(cfg.dataset)
    missing = [c for c in map(check_condition, conditions)
               if not checkpoints.sidecar_path(checkpoint_path(c, cfg, preset, seed, cache_dir, dataset)).is_file()]
    jobs = min(jobs or len(os.sched_getaffinity(0)), len(missing))
    if cluster is not None:
        cluster.train([(c, cfg) for c in missing], preset, seed, cache_dir, dataset, progress)
    elif jobs > 1 and resolve_device(cfg.device).type == "cpu":
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            pending = [pool.submit(_train_to_cache, regimes.get(c), cfg.model_dump(by_alias=True), preset, seed, cache_dir, dataset) for c in missing]
            for done in tqdm(as_completed(pending), total=len(pending), desc=f"training {len(missing)} models, {jobs} at a time",
                             unit="model", disable=not progress, leave=False):
                done.result()
    return {c: train_or_load_config(c, cfg, preset, seed, cache_dir, dataset, progress) for c in conditions}


def add_jobs_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--jobs", type=int, default=0, metavar="N",
                        help="models to train at once, one process each (default 0: one per CPU core; 1: one after the other)")


def add_models_dir_arg(parser: argparse.ArgumentParser, *old_spellings: str) -> None:
    """`--models-dir`, the checkpoint folder of every command (older spellings still accepted, unlisted)."""
    parser.add_argument("--models-dir", type=Path, default=CACHE_DIR, dest="models_dir",
                        help=f"checkpoint folder: trained models are cached and looked up there (default {CACHE_DIR})")
    for old in old_spellings:
        parser.add_argument(old, type=Path, dest="models_dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def cmd_train(args: argparse.Namespace) -> None:
    cfg = config_from_args(args)
    dataset = load_dataset(cfg.dataset)
    wanted = list(regimes.names()) if args.condition == "all" else [check_condition(args.condition)]
    for condition, (_model, meta) in load_zoo(wanted, cfg, args.preset, args.seed, args.models_dir, dataset, jobs=args.jobs,
                                              cluster=executor.from_args(args)).items():
        print(f"{meta['id']}: clean test accuracy {meta['clean_accuracy']:.3f}, trained in {meta['train_seconds']} s "
              f"-> {checkpoint_path(condition, cfg, args.preset, args.seed, args.models_dir, dataset)}")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train (or reuse) the model zoo's models",
                       description="Train a condition's model, or reuse the cached checkpoint with the same config, data and seed. "
                                   f"Regimes: {regimes.help_text()}.")
    p.add_argument("--condition", default="all", help=f"one of {', '.join(regimes.names())}, or 'all' (default)")
    add_config_args(p)
    add_models_dir_arg(p, "--out")
    add_jobs_arg(p)
    executor.add_executor_args(p)
    p.set_defaults(func=cmd_train)
