"""`engine evaluate`: clean accuracy, the paper's transfer grid and white-box PGD, with intervals.

Every source model's FGSM and TGSM (target (y+1) mod K, K the data set's classes) examples at each ε are scored on every
model (diagonal: white-box; off-diagonal: transfer), against the true labels, over the whole test
split. PGD (random start) is white-box only. With one training seed an accuracy carries a Wilson
95% interval over test images; with several, the mean over seeds carries a t interval over seeds.
"""
from __future__ import annotations

import argparse
import csv
import math
from collections import defaultdict
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from engine import checkpoints, executor, regimes
from engine.attacks import fgsm, madry_step, pgd, tgsm
from engine.config import ConfigError, add_config_args, check_condition, config_from_args
from engine.data import Dataset, load_dataset
from engine.ensemble import EnsembleSettings
from engine.masking import ensemble_counts, ensemble_markdown
from engine.models import predict
from engine.zoo import CACHE_DIR, add_jobs_arg, add_models_dir_arg, load_zoo

EPS_GRID = [round(0.1 * i, 1) for i in range(8)]
PGD_EPS = [0.1, 0.2, 0.3]
# The transfer grid's one-step attacks, as the paper's accuracy curves use them (TGSM toward the next
# class, (y + 1) mod K on a data set of K classes); each takes (model, x, y, ε, K).
GRID_ATTACKS: dict[str, Callable[[nn.Module, torch.Tensor, torch.Tensor, float, int], torch.Tensor]] = {
    "fgsm": lambda model, x, y, eps, classes: fgsm(model, x, y, eps),
    "tgsm": lambda model, x, y, eps, classes: tgsm(model, x, (y + 1) % classes, eps),
}
# Two-sided 95% Student t quantiles for 1…30 degrees of freedom; beyond, the normal 1.96 is within 2%.
T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.16, 2.145, 2.131,
        2.12, 2.11, 2.101, 2.093, 2.086, 2.08, 2.074, 2.069, 2.064, 2.06, 2.056, 2.052, 2.048, 2.045, 2.042]


def wilson(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def t_interval(values: list[float]) -> tuple[float, float, float]:
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = (T975[n - 2] if n - 1 <= len(T975) else 1.96) * sd / math.sqrt(n)
    return mean, max(0.0, mean - half), min(1.0, mean + half)


def in_batches(attack: Callable, model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1000, **kw) -> torch.Tensor:
    device = next(model.parameters()).device
    return torch.cat([attack(model, xb.to(device), yb.to(device), **kw).cpu() for xb, yb in zip(x.split(batch), y.split(batch))])


def robustness_counts(models: dict[str, nn.Module], x: torch.Tensor, y: torch.Tensor, seed: int = 0, pgd_steps: int = 40,
                      pgd_eps: list[float] = PGD_EPS, progress: bool = True, classes: int = 10) -> list[dict]:
    """Correct counts for clean, the FGSM/TGSM source × evaluated grid, and white-box PGD, on a data set of `classes` classes."""
    rows = [{"source": "-", "evaluated": name, "attack": "clean", "eps": 0.0, "correct": int((predict(m, x)[0] == y).sum())}
            for name, m in models.items()]
    jobs = [(s, a, e) for s in models for a in GRID_ATTACKS for e in EPS_GRID if e > 0] + [(s, "pgd", e) for s in models for e in pgd_eps]
    for source, attack, eps in tqdm(jobs, desc="evaluate", unit="attack", disable=not progress):
        if attack == "pgd":
            x_adv = in_batches(pgd, models[source], x, y, eps=eps, step=madry_step(eps, pgd_steps), steps=pgd_steps, seed=seed)
            targets = {source: models[source]}
        else:
            x_adv = in_batches(GRID_ATTACKS[attack], models[source], x, y, eps=eps, classes=classes)
            targets = models
        rows += [{"source": source, "evaluated": name, "attack": attack, "eps": eps, "correct": int((predict(m, x_adv)[0] == y).sum())}
                 for name, m in targets.items()]
    # ε = 0 is the clean accuracy, repeated in each source's curve so the panels start at it.
    clean = {r["evaluated"]: r["correct"] for r in rows[:len(models)]}
    rows += [{"source": s, "evaluated": name, "attack": a, "eps": 0.0, "correct": clean[name]}
             for s in models for a in GRID_ATTACKS for name in models]
    return rows


def white_box_and_ensemble_counts(models: dict[str, nn.Module], x: torch.Tensor, y: torch.Tensor, seed: int, pgd_steps: int,
                                  pgd_eps: list[float], ensemble: bool, progress: bool = True, classes: int = 10) -> list[dict]:
    """`robustness_counts`, plus (with `ensemble`) the AutoAttack ensemble's rows at the PGD ε (engine/masking.py)."""
    rows = robustness_counts(models, x, y, seed, pgd_steps, pgd_eps, progress, classes)
    return rows + (ensemble_counts(models, x, y, pgd_eps, EnsembleSettings(seed=seed), progress) if ensemble else [])


def aggregate(per_seed: list[list[dict]], n: int) -> list[dict]:
    """One row per (source, evaluated, attack, ε): accuracy and its 95% interval (Wilson, or t over seeds)."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for rows in per_seed:
        for r in rows:
            groups[(r["source"], r["evaluated"], r["attack"], r["eps"])].append(r["correct"])
    out = []
    for (source, evaluated, attack, eps), counts in groups.items():
        if len(counts) == 1:
            acc, (lo, hi) = counts[0] / n, wilson(counts[0], n)
        else:
            acc, lo, hi = t_interval([c / n for c in counts])
        out.append({"source": source, "evaluated": evaluated, "attack": attack, "eps": eps, "accuracy": round(acc, 4),
                    "ci_low": round(lo, 4), "ci_high": round(hi, 4), "n": n, "seeds": len(counts)})
    return sorted(out, key=lambda r: (r["attack"] != "clean", r["source"], r["attack"], r["eps"], r["evaluated"]))


def lookup(rows: list[dict]) -> dict[tuple, dict]:
    return {(r["source"], r["evaluated"], r["attack"], r["eps"]): r for r in rows}


def plot_source(rows: list[dict], source: str, path: Path) -> None:
    """The paper's panel: accuracy vs ε on `source`'s examples, one line (and 95% band) per evaluated model."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(GRID_ATTACKS), figsize=(5 * len(GRID_ATTACKS), 3.8), sharey=True)
    for ax, attack in zip(axes, GRID_ATTACKS):
        for name in dict.fromkeys(r["evaluated"] for r in rows if r["source"] == source):
            pts = sorted((r for r in rows if (r["source"], r["evaluated"], r["attack"]) == (source, name, attack)),
                         key=lambda r: r["eps"])
            eps = [r["eps"] for r in pts]
            line, = ax.plot(eps, [r["accuracy"] for r in pts], marker="o", ms=3, label=name, lw=2.5 if name == source else 1.5)
            ax.fill_between(eps, [r["ci_low"] for r in pts], [r["ci_high"] for r in pts], color=line.get_color(), alpha=0.15)
        ax.set(title=f"{attack.upper()} examples made against {source}", xlabel="ε", ylim=(0, 1.02))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (true label)")
    axes[-1].legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def summary_markdown(rows: list[dict], models_meta: list[dict]) -> str:
    at = lookup(rows)
    names = list(dict.fromkeys(r["evaluated"] for r in rows))
    cell = lambda r: f"{100 * r['accuracy']:.1f} [{100 * r['ci_low']:.0f}–{100 * r['ci_high']:.0f}]"
    seeds, n = rows[0]["seeds"], rows[0]["n"]
    interval = "Wilson 95% interval over test images" if seeds == 1 else f"t 95% interval over {seeds} training seeds"
    lines = [f"# Robustness summary\n\n{n} test images, {seeds} training seed(s); accuracy in % with {interval}.\n",
             "## Models\n\n| model | id | clean accuracy | checkpoint sha256 |\n|---|---|---|---|"]
    lines += [f"| {m['condition']} | {m['id']} | {cell(at[('-', m['condition'], 'clean', 0.0)])} | `{m['checkpoint_sha256'][:12]}` |"
              for m in models_meta]
    for attack in GRID_ATTACKS:
        for eps in (0.1, 0.2, 0.3):
            lines += [f"\n## {attack.upper()} ε = {eps}: rows are the source of the examples, columns the evaluated model\n",
                      "| source \\ evaluated | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
            lines += [f"| {s} | " + " | ".join(cell(at[(s, e, attack, eps)]) for e in names) + " |" for s in names]
    pgd_eps = sorted({r["eps"] for r in rows if r["attack"] == "pgd"})
    if pgd_eps:
        lines += ["\n## White-box PGD (random start)\n", "| model | " + " | ".join(f"ε = {e}" for e in pgd_eps) + " |",
                  "|---" * (len(pgd_eps) + 1) + "|"]
        lines += [f"| {s} | " + " | ".join(cell(at[(s, s, 'pgd', e)]) for e in pgd_eps) + " |" for s in names]
    lines.append(ensemble_markdown(rows))
    return "\n".join(lines) + "\n"


def write_report(rows: list[dict], models_meta: list[dict], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "robustness.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["source", "evaluated", "attack", "eps", "accuracy", "ci_low", "ci_high", "n", "seeds"])
        writer.writeheader()
        writer.writerows(rows)
    for source in dict.fromkeys(r["source"] for r in rows if r["attack"] in GRID_ATTACKS):
        plot_source(rows, source, out / f"robustness-{source}.png")
    (out / "summary.md").write_text(summary_markdown(rows, models_meta))


def test_images(dataset: Dataset, limit: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The test split, or a fixed random `limit` of it (the split is ordered by position, often by class)."""
    if not limit:
        return dataset.test.x, dataset.test.y
    keep = torch.randperm(len(dataset.test.y), generator=torch.Generator().manual_seed(0))[:limit]
    return dataset.test.x[keep], dataset.test.y[keep]


def evaluate(conditions: list[str], cfg, dataset: Dataset, preset: str = "demo", seeds: list[int] = (0,), cache_dir: Path = CACHE_DIR,
             limit: int = 0, pgd_steps: int = 40, pgd_eps: list[float] = PGD_EPS, progress: bool = True,
             jobs: int = 0, ensemble: bool = False, cluster: executor.SlurmExecutor | None = None) -> tuple[list[dict], list[dict]]:
    """Train or reuse each condition's model per seed and score the grid; returns (rows, sidecars of the first seed)."""
    x, y = test_images(dataset, limit)
    per_seed, metas = [], []
    for seed in seeds:
        loaded = load_zoo(conditions, cfg, preset, seed, cache_dir, dataset, progress, jobs, cluster)
        metas = metas or [meta for _, meta in loaded.values()]
        per_seed.append(white_box_and_ensemble_counts({c: m for c, (m, _) in loaded.items()}, x, y, seed, pgd_steps, pgd_eps,
                                                      ensemble, progress, len(dataset.classes)))
    return aggregate(per_seed, len(y)), metas


def parse_eps(text: str) -> list[float]:
    try:
        return [float(e) for e in text.split(",") if e.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def cmd_evaluate(args: argparse.Namespace) -> None:
    if args.pgd_steps < 40:
        raise ConfigError(f"--pgd-steps must be ≥ 40 for a credible white-box PGD, got {args.pgd_steps}")
    if args.seeds < 1:
        raise ConfigError(f"--seeds must be ≥ 1, got {args.seeds}")
    cfg = config_from_args(args)
    dataset = load_dataset(cfg.dataset)
    if args.ensemble and len(dataset.classes) < 3:  # APGD's DLR losses divide by the gap to the third-largest logit
        raise ConfigError(f"the AutoAttack ensemble needs at least 3 classes; {dataset.name} has {len(dataset.classes)}: pass --no-ensemble")
    if args.checkpoints:
        models, metas = checkpoints.load_many(args.checkpoints, dataset)
        x, y = test_images(dataset, args.limit)
        rows = aggregate([white_box_and_ensemble_counts(models, x, y, args.seed, args.pgd_steps, args.pgd_eps, args.ensemble,
                                                        classes=len(dataset.classes))], len(y))
    else:
        conditions = list(regimes.names()) if args.conditions == "all" else [check_condition(c.strip()) for c in args.conditions.split(",")]
        rows, metas = evaluate(conditions, cfg, dataset, args.preset, range(args.seed, args.seed + args.seeds), args.models_dir,
                               args.limit, args.pgd_steps, args.pgd_eps, jobs=args.jobs, ensemble=args.ensemble,
                               cluster=executor.from_args(args))
    write_report(rows, metas, args.out)
    summary = (args.out / "summary.md").read_text()
    print(summary.split("\n## ")[1].strip())  # the models and their clean accuracy
    if args.ensemble:
        print(summary.split("## White-box AutoAttack")[1].split("\n## ")[0].strip())
    print(f"wrote {args.out}/robustness.csv, summary.md and one robustness-<source>.png per source model")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="clean, transfer-grid and white-box PGD accuracy with 95%% intervals",
                       description="Score every model on every model's FGSM/TGSM examples (ε 0…0.7) and on white-box PGD "
                                   "(ε .1/.2/.3); write robustness.csv, a PNG per source model and summary.md.")
    p.add_argument("--conditions", default="all", help=f"comma-separated conditions among {', '.join(regimes.names())} (default: all)")
    p.add_argument("--checkpoints", nargs="+", type=Path, help="evaluate these checkpoints instead of the preset's zoo")
    p.add_argument("--seeds", type=int, default=1, help="train/evaluate seeds SEED…SEED+N-1; mean and t interval across them")
    p.add_argument("--limit", type=int, default=0, help="evaluate a fixed random N of the test images (default: all)")
    p.add_argument("--pgd-steps", type=int, default=40, help="PGD iterations (≥ 40, default 40)")
    p.add_argument("--pgd-eps", type=parse_eps, default=PGD_EPS, help="comma-separated PGD ε ('' skips PGD; default 0.1,0.2,0.3)")
    p.add_argument("--ensemble", action=argparse.BooleanOptionalAction, default=True,
                   help="also run the AutoAttack ensemble (original settings) at the PGD ε and flag gradient masking "
                        "(default: on; minutes per robust model on a CPU)")
    add_config_args(p)
    add_models_dir_arg(p, "--cache")
    p.add_argument("--out", type=Path, default=Path("runs/evaluate"), help="output directory (default runs/evaluate)")
    add_jobs_arg(p)
    executor.add_executor_args(p)
    p.set_defaults(func=cmd_evaluate)
