"""`engine sweep`: choose a regime's strength (gradreg's λ, …) on the validation split.

A regime opts in by naming the field to tune (`Regime.sweep_field`). Each value on a log grid trains a model; it is scored by its accuracy on FGSM examples made against
a normal model (the paper's criterion, transfer), among the λ whose clean validation accuracy is
at most `max_drop` below the normal model's; `pick="largest"` takes the largest such λ instead (the
strongest penalty the clean-accuracy budget allows). Test images are never looked at.
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


PICKS = ("most-robust", "largest")


def eligible(row: dict, max_drop: float) -> bool:
    """Whether a swept row's clean validation accuracy is at most `max_drop` below the normal model's
    (a hair of slack: both accuracies are fractions of the same images, so an exact tie is a tie)."""
    return row["val_clean_drop"] <= max_drop + 1e-9


def check_rule(max_drop: float, pick: str) -> None:
    """A one-line error for a selection rule that cannot be meant (checked before any training)."""
    if not 0 <= max_drop <= 1:  # a fraction: 3 meaning "3 points" would make every λ eligible
        raise ConfigError(f"--max-drop is a fraction of accuracy between 0 and 1 (0.03 = 3 points), got {max_drop:g}")
    if pick not in PICKS:
        raise ConfigError(f"--pick is one of {', '.join(PICKS)}, not {pick!r}")


def choose(rows: list[dict], max_drop: float, pick: str = "most-robust", eps: float = 0.3) -> dict:
    """The chosen row among the eligible ones: the most transfer-robust (the paper's criterion) or the largest λ."""
    check_rule(max_drop, pick)
    candidates = [r for r in rows if eligible(r, max_drop)]
    if not candidates:
        raise ConfigError(f"no λ kept clean validation accuracy within {100 * max_drop:g} points of the normal model's; try smaller λ")
    return max(candidates, key=lambda r: r["lambda"] if pick == "largest" else r[f"val_fgsm_transfer_eps{eps}"])


def sweep(condition: str, lambdas: list[float], cfg: TrainConfig, dataset: Dataset, preset: str = "demo", seed: int = 0,
          eps: float = 0.3, max_drop: float = 0.02, cache_dir: Path = CACHE_DIR, progress: bool = True,
          cluster: executor.SlurmExecutor | None = None, pick: str = "most-robust") -> tuple[list[dict], dict]:
    """One row per λ (validation clean and transfer-FGSM accuracy, clean drop below the normal model) and the
    chosen row; with `cluster`, the missing models are trained first as one job array."""
    fields = tunable()
    if condition not in fields:
        raise ConfigError(f"sweep tunes {', '.join(fields)}, not {condition!r}")
    check_rule(max_drop, pick)
    grid = [with_overrides(cfg, {fields[condition]: lam}) for lam in lambdas]
    if cluster is not None:
        cluster.train([("normal", cfg), *((condition, c) for c in grid)], preset, seed, cache_dir, dataset, progress)
    val = dataset.val
    normal, _ = train_or_load_config("normal", cfg, preset, seed, cache_dir, dataset, progress)
    x_adv = fgsm(normal, val.x, val.y, eps)
    normal_clean = accuracy(normal, val.x, val.y)
    rows = []
    for lam, lam_cfg in tqdm(list(zip(lambdas, grid)), desc=f"sweep {condition}", unit="λ", disable=not progress):
        model, meta = train_or_load_config(condition, lam_cfg, preset, seed, cache_dir, dataset, progress)
        clean = accuracy(model, val.x, val.y)
        row = {"lambda": lam, "val_clean": clean, f"val_fgsm_transfer_eps{eps}": accuracy(model, x_adv, val.y),
               "val_clean_drop": normal_clean - clean}
        rows.append({**row, "eligible": eligible(row, max_drop), "train_seconds": meta.get("train_seconds")})
    return rows, choose(rows, max_drop, pick, eps)


def cmd_sweep(args: argparse.Namespace) -> None:
    cfg = config_from_args(args)
    rows, chosen = sweep(args.condition, parse_grid(args.grid), cfg, load_dataset(cfg.dataset), args.preset, args.seed,
                         args.eps, args.max_drop, args.models_dir, cluster=executor.from_args(args), pick=args.pick)
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / f"sweep-{args.condition}.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (args.out / f"sweep-{args.condition}.json").write_text(json.dumps({"condition": args.condition, "chosen": chosen,
                                                                       "max_drop": args.max_drop, "pick": args.pick,
                                                                       "eps": args.eps}, indent=2) + "\n")
    for r in rows:
        print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
    print(f"chosen {tunable()[args.condition]} = {chosen['lambda']:.4g}  (written to {args.out}/sweep-{args.condition}.json)")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="choose a regime's λ (e.g. gradient regularization's) on the validation split",
                       description="Train one model per λ on a log grid; among those within --max-drop of the normal model's clean "
                                   "validation accuracy, pick the λ most robust to its FGSM examples (or, with "
                                   "--pick largest, the largest).")
    p.add_argument("--condition", default="gradreg", help=f"which regime's field: {', '.join(f'{n} ({k})' for n, k in tunable().items())} (default gradreg)")
    p.add_argument("--grid", default="1:4:0.5", help="LO:HI:STEP in powers of ten (default 1:4:0.5)")
    p.add_argument("--eps", type=float, default=0.3, help="FGSM ε of the transferred examples (default 0.3)")
    p.add_argument("--max-drop", type=float, default=0.02,
                   help="largest allowed drop of clean validation accuracy below the normal model's, a fraction (default 0.02)")
    p.add_argument("--pick", choices=PICKS, default="most-robust",
                   help="among the λ within --max-drop: the most robust to the normal model's FGSM examples (default), "
                        "or the largest (the strongest penalty the clean-accuracy budget allows)")
    add_config_args(p)
    add_models_dir_arg(p, "--cache")
    p.add_argument("--out", type=Path, default=Path("runs/sweep"), help="where the table and choice go (default runs/sweep)")
    executor.add_executor_args(p)
    p.set_defaults(func=cmd_sweep)
