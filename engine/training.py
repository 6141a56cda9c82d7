"""One training loop, and `train`: a freshly initialised model trained under a registered regime.

The regimes themselves (their losses, config tables and papers) live in engine/regimes/, one
module each.
"""
from __future__ import annotations

import contextlib
import time
from typing import Callable, Iterator

import torch
from torch import nn
from tqdm.auto import tqdm

from engine import architectures, regimes
from engine.config import TrainConfig
from engine.data import Split

BatchLoss = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def fit_loss(model: nn.Module, loss_fn: BatchLoss, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, seed: int,
             progress: bool = True, desc: str = "train", lr: float | None = None, epochs: int | None = None) -> list[float]:
    """Adam (cfg.lr unless `lr`) over shuffled mini-batches for cfg.epochs (unless `epochs`); returns the mean loss of each epoch."""
    device = next(model.parameters()).device
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr if lr is None else lr,
                                 eps=cfg.adam_eps)
    order = torch.Generator().manual_seed(seed)  # data order depends on the seed only
    history = []
    model.train()
    bar = tqdm(range(cfg.epochs if epochs is None else epochs), desc=desc, unit="epoch", disable=not progress, leave=False)
    for _ in bar:
        total, batches = 0.0, 0
        for idx in torch.randperm(len(x), generator=order).split(cfg.batch_size):
            loss = loss_fn(model, x[idx].to(device), y[idx].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, batches = total + loss.item(), batches + 1
        history.append(total / batches)
        bar.set_postfix(loss=f"{history[-1]:.4f}")
    model.eval()
    return history


# On the CPU the float sums of a convolution's backward pass are split by the intra-op thread
# count, so one seed gives other weights on 1 or 2 threads. Training always runs on TRAIN_THREADS
# (the zoo's parallel workers use one each anyway): the same settings make the same checkpoint
# bytes whether `engine train`, `evaluate`, `generate-stimuli` or a SLURM task trained them.
TRAIN_THREADS = 1


@contextlib.contextmanager
def training_threads(device: torch.device) -> Iterator[None]:
    """Run torch on TRAIN_THREADS intra-op threads inside the block (CPU only), as before after it."""
    before = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(TRAIN_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train(condition: str, cfg: TrainConfig, train_split: Split, seed: int = 0, progress: bool = True,
          classes: int = 10) -> tuple[nn.Module, dict]:
    """A freshly initialised model for `classes` classes trained under `condition`; returns it (eval mode) and training metrics."""
    with training_threads(resolve_device(cfg.device)):
        return _train(condition, cfg, train_split, seed, progress, classes)


def _train(condition: str, cfg: TrainConfig, train_split: Split, seed: int, progress: bool, classes: int) -> tuple[nn.Module, dict]:
    regime = regimes.get(condition)
    params = cfg.params(condition)
    torch.manual_seed(seed)  # initial weights, dropout masks and any random attack starts
    device = resolve_device(cfg.device)
    x, y = train_split.x, train_split.y
    if cfg.train_size:  # a fixed random subset (the same for every training seed)
        keep = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:cfg.train_size]
        x, y = x[keep], y[keep]
    start = time.perf_counter()
    input_shape = tuple(x.shape[1:])
    model = architectures.build(cfg.architecture, cfg.model, input_shape, classes).to(device)
    if not architectures.is_builtin(cfg.architecture):  # a user's network: refuse a misfit before training
        architectures.check_output(model, input_shape, classes)
    if regime.fit is not None:
        history = regime.fit(model, x, y, cfg, params, seed, progress)
    else:
        history = fit_loss(model, lambda m, xb, yb: regime.loss(m, xb, yb, params), x, y, cfg, seed, progress, desc=condition,
                           epochs=params.epochs(cfg.epochs))
    return model, {"train_loss": history[-1], "train_seconds": round(time.perf_counter() - start, 2)}
