"""`engine sweep`: choose a regime's setting (gradreg's λ, TRADES' β, …) on the validation split.

A regime names the field swept by default (`Regime.sweep_field`); `--field` sweeps any other
field of its table. Each value (a log grid, or a list) trains a model, scored on the validation
split by one of SCORES: accuracy on FGSM examples made against a normal model (the paper's
criterion for gradient regularization, transfer), or accuracy under white-box PGD-40 (the
criterion of the adversarial-training papers). Among the values whose clean validation accuracy
is at most `max_drop` below the normal model's, `pick="most-robust"` takes the best score and
`pick="largest"` the largest value (the strongest setting the clean-accuracy budget allows).
Test images are never looked at.
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from engine import executor, regimes
from engine.attacks import fgsm, madry_step, pgd
from engine.config import ConfigError, TrainConfig, add_config_args, config_from_args, with_overrides
from engine.data import Dataset, load_dataset
from engine.models import accuracy
from engine.zoo import CACHE_DIR, add_models_dir_arg, train_or_load_config

SCORES = ("transfer-fgsm", "white-box-pgd")
PGD_STEPS = 40


def tunable() -> dict[str, str]:
    """Regimes `engine sweep` tunes by default, and the dotted key of the field it tunes."""
    return {n: f"{n}.{regimes.get(n).sweep_field}" for n in regimes.names() if regimes.get(n).sweep_field}


def swept_key(condition: str, field: str | None = None) -> str:
    """The dotted key a sweep of `condition` tunes: `field` of its table, else the regime's own choice."""
    names = fields(condition)
    field = field or regimes.get(condition).sweep_field
    if not names:
        raise ConfigError(f"{condition} has no field to sweep")
    if field is None:
        raise ConfigError(f"{condition} names no field to sweep by default; pass --field (one of {', '.join(names)})")
    if field not in names:
        raise ConfigError(f"{condition} has no field {field!r}; its fields: {', '.join(names)}")
    return f"{condition}.{field}"


def fields(condition: str) -> list[str]:
    return [f.alias or key for key, f in regimes.get(condition).params.model_fields.items()]


def parse_grid(spec: str) -> list[float]:
    """`LO:HI:STEP` in log10 units, e.g. `1:4:0.5` for 10, 31.6, …, 10⁴."""
    try:
        lo, hi, step = (float(v) for v in spec.split(":"))
    except ValueError:
        raise ConfigError(f"--grid expects LO:HI:STEP in powers of ten, e.g. 1:4:0.5; got {spec!r}") from None
    if step <= 0 or hi < lo:
        raise ConfigError(f"--grid {spec!r}: need STEP > 0 and HI ≥ LO")
    return [float(10 ** e) for e in np.arange(lo, hi + step / 2, step)]


def parse_values(spec: str) -> list[float]:
    """`V1,V2,…`, e.g. `0.3,0.35,0.4`."""
    try:
        values = [float(v) for v in spec.split(",")]
    except ValueError:
        raise ConfigError(f"--values expects numbers separated by commas, e.g. 1,2,4; got {spec!r}") from None
    if len(set(values)) != len(values):
        raise ConfigError(f"--values {spec!r} repeats a value")
    return values


def score_of(condition: str, score: str | None = None) -> str:
    """The score a sweep of `condition` uses: `score`, else the regime's own default."""
    return score or regimes.get(condition).sweep_score


def score_column(score: str, eps: float) -> str:
    """The row's column that `score` fills."""
    if score not in SCORES:
        raise ConfigError(f"--score is one of {', '.join(SCORES)}, not {score!r}")
    return f"val_fgsm_transfer_eps{eps}" if score == "transfer-fgsm" else f"val_pgd{PGD_STEPS}_eps{eps}"


PICKS = ("most-robust", "largest")


def eligible(row: dict, max_drop: float) -> bool:
    """Whether a swept row's clean validation accuracy is at most `max_drop` below the normal model's
    (a hair of slack: both accuracies are fractions of the same images, so an exact tie is a tie)."""
    return row["val_clean_drop"] <= max_drop + 1e-9


def check_rule(max_drop: float, pick: str) -> None:
    """A one-line error for a selection rule that cannot be meant (checked before any training)."""
    if not 0 <= max_drop <= 1:  # a fraction: 3 meaning "3 points" would make every value eligible
        raise ConfigError(f"--max-drop is a fraction of accuracy between 0 and 1 (0.03 = 3 points), got {max_drop:g}")
    if pick not in PICKS:
        raise ConfigError(f"--pick is one of {', '.join(PICKS)}, not {pick!r}")


def choose(rows: list[dict], max_drop: float, pick: str = "most-robust", column: str = "val_fgsm_transfer_eps0.3") -> dict:
    """The chosen row among the eligible ones: the best `column` (most robust) or the largest value."""
    check_rule(max_drop, pick)
    candidates = [r for r in rows if eligible(r, max_drop)]
    if not candidates:
        raise ConfigError(f"no value kept clean validation accuracy within {100 * max_drop:g} points of the normal model's; "
                          "try weaker settings")
    return max(candidates, key=lambda r: r["value"] if pick == "largest" else r[column])


def robust_accuracy(model: torch.nn.Module, score: str, x: torch.Tensor, y: torch.Tensor, eps: float,
                    transferred: torch.Tensor, seed: int) -> float:
    """`score` of one swept model on the validation images (`transferred`: the normal model's FGSM examples)."""
    if score == "transfer-fgsm":
        return accuracy(model, transferred, y)
    return accuracy(model, pgd(model, x, y, eps, madry_step(eps, PGD_STEPS), PGD_STEPS, seed=seed), y)


def sweep(condition: str, values: list[float], cfg: TrainConfig, dataset: Dataset, preset: str = "demo", seed: int = 0,
          eps: float = 0.3, max_drop: float = 0.02, cache_dir: Path = CACHE_DIR, progress: bool = True,
          cluster: executor.SlurmExecutor | None = None, pick: str = "most-robust", field: str | None = None,
          score: str | None = None) -> tuple[list[dict], dict]:
    """One row per value (validation clean and robust accuracy, clean drop below the normal model) and the
    chosen row; with `cluster`, the missing models are trained first as one job array."""
    key = swept_key(condition, field)
    score = score_of(condition, score)
    column = score_column(score, eps)
    check_rule(max_drop, pick)
    grid = [with_overrides(cfg, {key: v}) for v in values]
    if cluster is not None:
        cluster.train([("normal", cfg), *((condition, c) for c in grid)], preset, seed, cache_dir, dataset, progress)
    val = dataset.val
    normal, _ = train_or_load_config("normal", cfg, preset, seed, cache_dir, dataset, progress)
    transferred = fgsm(normal, val.x, val.y, eps) if score == "transfer-fgsm" else val.x
    normal_clean = accuracy(normal, val.x, val.y)
    rows = []
    for value, value_cfg in tqdm(list(zip(values, grid)), desc=f"sweep {key}", unit="value", disable=not progress):
        model, meta = train_or_load_config(condition, value_cfg, preset, seed, cache_dir, dataset, progress)
        clean = accuracy(model, val.x, val.y)
        row = {"field": key, "value": value, "val_clean": clean,
               column: robust_accuracy(model, score, val.x, val.y, eps, transferred, seed), "val_clean_drop": normal_clean - clean}
        rows.append({**row, "eligible": eligible(row, max_drop), "train_seconds": meta.get("train_seconds")})
    return rows, choose(rows, max_drop, pick, column)


def cmd_sweep(args: argparse.Namespace) -> None:
    cfg = config_from_args(args)
    score = score_of(args.condition, args.score)
    values = parse_values(args.values) if args.values else parse_grid(args.grid)
    rows, chosen = sweep(args.condition, values, cfg, load_dataset(cfg.dataset), args.preset, args.seed,
                         args.eps, args.max_drop, args.models_dir, cluster=executor.from_args(args), pick=args.pick,
                         field=args.field, score=score)
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / f"sweep-{args.condition}.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (args.out / f"sweep-{args.condition}.json").write_text(json.dumps({"condition": args.condition, "chosen": chosen,
                                                                       "max_drop": args.max_drop, "pick": args.pick,
                                                                       "score": score, "eps": args.eps}, indent=2) + "\n")
    for r in rows:
        print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
    print(f"chosen {chosen['field']} = {chosen['value']:.4g}  (written to {args.out}/sweep-{args.condition}.json)")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="choose a regime's setting (gradreg's λ, TRADES' β, …) on the validation split",
                       description="Train one model per value of a regime's field; among those within --max-drop of the normal "
                                   "model's clean validation accuracy, pick the most robust by --score (or, with "
                                   "--pick largest, the largest value).")
    p.add_argument("--condition", default="gradreg",
                   help=f"which regime (default gradreg); by default it sweeps {', '.join(f'{n}: {k}' for n, k in tunable().items())}")
    p.add_argument("--field", help="another field of the regime's table to sweep, e.g. epoch_factor")
    p.add_argument("--grid", default="1:4:0.5", help="LO:HI:STEP in powers of ten (default 1:4:0.5)")
    p.add_argument("--values", help="the values to sweep, comma-separated, in place of --grid (e.g. 0.3,0.35,0.4)")
    p.add_argument("--score", choices=SCORES,
                   help="transfer-fgsm: accuracy on the normal model's FGSM examples (gradreg's default); white-box-pgd: "
                        f"accuracy under PGD-{PGD_STEPS} against the swept model (the adversarial-training regimes' default)")
    p.add_argument("--eps", type=float, default=0.3, help="ε of the scoring attack (default 0.3)")
    p.add_argument("--max-drop", type=float, default=0.02,
                   help="largest allowed drop of clean validation accuracy below the normal model's, a fraction (default 0.02)")
    p.add_argument("--pick", choices=PICKS, default="most-robust",
                   help="among the values within --max-drop: the best --score (default), or the largest value "
                        "(the strongest setting the clean-accuracy budget allows)")
    add_config_args(p)
    add_models_dir_arg(p, "--cache")
    p.add_argument("--out", type=Path, default=Path("runs/sweep"), help="where the table and choice go (default runs/sweep)")
    executor.add_executor_args(p)
    p.set_defaults(func=cmd_sweep)
