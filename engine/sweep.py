"""`engine sweep`: choose a regime's strength (gradreg's λ, …) on the validation split.

A regime opts in by naming the field to tune (`Regime.sweep_field`). Each value on a log grid trains a model; it is scored by its accuracy on FGSM examples made against
a normal model (the paper's criterion, transfer), among the λ whose clean validation accuracy is
at most `max_drop` below the normal model's. Test images are never looked at.
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from engine import executor, regimes
from engine.attacks import fgsm
from engine.config import ConfigError, TrainConfig, add_config_args, config_from_args, with_overrides
from engine.data import Dataset, load_dataset
from engine.models import accuracy
from engine.zoo import CACHE_DIR, add_models_dir_arg, train_or_load_config


def tunable() -> dict[str, str]:
    """Regimes `engine sweep` can tune, and the dotted key of the field it tunes."""
    return {n: f"{n}.{regimes.get(n).sweep_field}" for n in regimes.names() if regimes.get(n).sweep_field}


def parse_grid(spec: str) -> list[float]:
    """`LO:HI:STEP` in log10 units, e.g. `1:4:0.5` for 10, 31.6, …, 10⁴."""
    try:
        lo, hi, step = (float(v) for v in spec.split(":"))
    except ValueError:
        raise ConfigError(f"--grid expects LO:HI:STEP in powers of ten, e.g. 1:4:0.5; got {spec!r}") from None
    if step <= 0 or hi < lo:
        raise ConfigError(f"--grid {spec!r}: need STEP > 0 and HI ≥ LO")
    return [float(10 ** e) for e in np.arange(lo, hi + step / 2, step)]


def sweep(condition: str, lambdas: list[float], cfg: TrainConfig, dataset: Dataset, preset: str = "demo", seed: int = 0,
          eps: float = 0.3, max_drop: float = 0.02, cache_dir: Path = CACHE_DIR, progress: bool = True,
          cluster: executor.SlurmExecutor | None = None) -> tuple[list[dict], dict]:
    """One row per λ (validation clean and transfer-FGSM accuracy) and the chosen row; with `cluster`, the
    missing models are trained first as one job array."""
    fields = tunable()
    if condition not in fields:
        raise ConfigError(f"sweep tunes {', '.join(fields)}, not {condition!r}")
    grid = [with_overrides(cfg, {fields[condition]: lam}) for lam in lambdas]
    if cluster is not None:
        cluster.train([("normal", cfg), *((condition, c) for c in grid)], preset, seed, cache_dir, dataset, progress)
    val = dataset.val
    normal, _ = train_or_load_config("normal", cfg, preset, seed, cache_dir, dataset, progress)
    x_adv = fgsm(normal, val.x, val.y, eps)
    floor = accuracy(normal, val.x, val.y) - max_drop
    rows = []
    for lam, lam_cfg in tqdm(list(zip(lambdas, grid)), desc=f"sweep {condition}", unit="λ", disable=not progress):
        model, meta = train_or_load_config(condition, lam_cfg, preset, seed, cache_dir, dataset, progress)
        clean = accuracy(model, val.x, val.y)
        rows.append({"lambda": lam, "val_clean": clean, f"val_fgsm_transfer_eps{eps}": accuracy(model, x_adv, val.y),
                     "eligible": clean >= floor, "train_seconds": meta.get("train_seconds")})
    eligible = [r for r in rows if r["eligible"]]
    if not eligible:
        raise ConfigError(f"no λ kept clean validation accuracy within {max_drop:.0%} of the normal model's; try smaller λ")
    chosen = max(eligible, key=lambda r: r[f"val_fgsm_transfer_eps{eps}"])
    return rows, chosen


def cmd_sweep(args: argparse.Namespace) -> None:
    cfg = config_from_args(args)
    rows, chosen = sweep(args.condition, parse_grid(args.grid), cfg, load_dataset(cfg.dataset), args.preset, args.seed,
                         args.eps, args.max_drop, args.models_dir, cluster=executor.from_args(args))
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / f"sweep-{args.condition}.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (args.out / f"sweep-{args.condition}.json").write_text(json.dumps({"condition": args.condition, "chosen": chosen,
                                                                       "max_drop": args.max_drop, "eps": args.eps}, indent=2) + "\n")
    for r in rows:
        print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
    print(f"chosen {tunable()[args.condition]} = {chosen['lambda']:.4g}  (written to {args.out}/sweep-{args.condition}.json)")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="choose a regime's λ (e.g. gradient regularization's) on the validation split",
                       description="Train one model per λ on a log grid; pick the λ most robust to a normal model's FGSM "
                                   "examples among those within --max-drop of its clean validation accuracy.")
    p.add_argument("--condition", default="gradreg", help=f"which regime's field: {', '.join(f'{n} ({k})' for n, k in tunable().items())} (default gradreg)")
    p.add_argument("--grid", default="1:4:0.5", help="LO:HI:STEP in powers of ten (default 1:4:0.5)")
    p.add_argument("--eps", type=float, default=0.3, help="FGSM ε of the transferred examples (default 0.3)")
    p.add_argument("--max-drop", type=float, default=0.02, help="largest allowed clean-accuracy drop (default 0.02)")
    add_config_args(p)
    add_models_dir_arg(p, "--cache")
    p.add_argument("--out", type=Path, default=Path("runs/sweep"), help="where the table and choice go (default runs/sweep)")
    executor.add_executor_args(p)
    p.set_defaults(func=cmd_sweep)
