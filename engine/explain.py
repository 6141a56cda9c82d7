"""`engine explain`: input-gradient maps ∇ₓ Σₖ log pₖ(x) of the same test images under every model.

Regularized models' maps follow the strokes; a normal model's look like noise (the paper's claim 4).
Each map is scaled by its own largest magnitude and drawn with a diverging colormap (red +, blue −);
an RGB image's map is the sum over its channels. Columns are the data set's classes, by name.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from engine import checkpoints, regimes
from engine.config import add_config_args, check_condition, config_from_args
from engine.data import load_dataset
from engine.models import eval_mode
from engine.zoo import add_models_dir_arg, train_or_load_config


def input_gradients(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """∇ₓ of the summed log-probabilities over all classes, per image (eval mode)."""
    device = next(model.parameters()).device
    x = x.detach().to(device).requires_grad_(True)
    with eval_mode(model):
        (grad,) = torch.autograd.grad(F.log_softmax(model(x), 1).sum(), x)
    return grad.cpu()


def one_per_class(y: torch.Tensor, per_class: int = 1, classes: int = 10) -> torch.Tensor:
    """Positions of the first `per_class` test images of each of `classes` classes, in class order."""
    return torch.cat([torch.nonzero(y == c).flatten()[:per_class] for c in range(classes)])


def plot_grid(models: dict[str, nn.Module], x: torch.Tensor, path: Path, titles: list[str] | None = None) -> None:
    """Inputs in the first row, each model's maps below; `titles` name the columns (e.g. the images' classes)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = {"input": x, **{name: input_gradients(m, x).sum(1) for name, m in models.items()}}
    fig, axes = plt.subplots(len(rows), len(x), figsize=(1.1 * len(x) + 1.2, 1.1 * len(rows)), squeeze=False)
    for r, (name, images) in enumerate(rows.items()):
        for c, img in enumerate(images.numpy()):
            ax = axes[r, c]
            if name != "input":
                scale = max(abs(img).max(), 1e-12)
                ax.imshow(img / scale, cmap="RdBu_r", vmin=-1, vmax=1)
            elif img.shape[0] == 3:
                ax.imshow(img.transpose(1, 2, 0), vmin=0, vmax=1)
            else:
                ax.imshow(img[0], cmap="gray_r", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0 and titles:
                ax.set_title(titles[c], fontsize=8)
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle("input gradients ∇ₓ Σₖ log pₖ (each map scaled to its own maximum)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def cmd_explain(args: argparse.Namespace) -> None:
    cfg = config_from_args(args)
    dataset = load_dataset(cfg.dataset)
    if args.checkpoints:
        models, _ = checkpoints.load_many(args.checkpoints, dataset)
    else:
        wanted = regimes.names() if args.conditions == "all" else [check_condition(c.strip()) for c in args.conditions.split(",")]
        models = {c: train_or_load_config(c, cfg, args.preset, args.seed, args.models_dir, dataset)[0] for c in wanted}
    picked = one_per_class(dataset.test.y, args.per_class, len(dataset.classes))
    x = dataset.test.x[picked]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    plot_grid(models, x, args.out, [dataset.classes[int(label)] for label in dataset.test.y[picked]])
    print(f"wrote {args.out} ({len(models)} models × {len(x)} test images)")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="draw input-gradient maps of the same test images under every model",
                       description="Draw ∇ₓ of the summed log-probabilities for the same test images (one per class) under every model, "
                                   "as one PNG grid.")
    p.add_argument("--conditions", default="all", help=f"comma-separated conditions among {', '.join(regimes.names())} (default: all)")
    p.add_argument("--checkpoints", nargs="+", type=Path, help="draw these checkpoints instead of the preset's zoo")
    p.add_argument("--per-class", type=int, default=1, help="test images per class (default 1)")
    add_config_args(p)
    add_models_dir_arg(p, "--cache")
    p.add_argument("--out", type=Path, default=Path("runs/explain/input-gradients.png"), help="PNG path")
    p.set_defaults(func=cmd_explain)
