"""The five training regimes and one training loop.

Each regime is a loss `(model, x, y, cfg) -> scalar` on a training-mode batch:
- normal: mean cross-entropy.
- adversarial: ½ CE(clean) + ½ CE(FGSM ε), the FGSM examples built against the model's own
  predicted labels (no label leaking), scored against the true labels.
- gradreg: mean CE + λ·½‖∇ₓ mean CE‖² (double backpropagation, Drucker & LeCun 1992).
- gradreg-uniform: mean CE + λ·½‖∇ₓ mean Σₖ log pₖ‖² (the paper's "Grad Reg (1/K)").
- distilled: a teacher trained at temperature T, then a student trained at T on the teacher's
  soft labels; both networks output raw logits, so the student *is* the T = 1 model.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from engine.attacks import eval_mode, fgsm
from engine.config import Config, check_condition
from engine.data import Split
from engine.models import build_model

Loss = Callable[[nn.Module, torch.Tensor, torch.Tensor, Config], torch.Tensor]


def normal_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: Config) -> torch.Tensor:
    return F.cross_entropy(model(x), y)


def adversarial_examples(model: nn.Module, x: torch.Tensor, eps: float) -> torch.Tensor:
    """FGSM against the model's own predictions (eval mode, like every attack)."""
    with torch.no_grad(), eval_mode(model):
        predicted = model(x).argmax(1)
    return fgsm(model, x, predicted, eps)


def adversarial_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: Config) -> torch.Tensor:
    x_adv = adversarial_examples(model, x, cfg.adv_eps)
    # One forward over clean and adversarial halves (BN sees the mixed batch, as in Kurakin et al.);
    # the mean over 2B examples is exactly ½ clean CE + ½ adversarial CE.
    return F.cross_entropy(model(torch.cat([x, x_adv])), torch.cat([y, y]))


def input_gradient_penalty(objective: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """½‖∇ₓ objective‖², kept differentiable (create_graph) so training descends through it."""
    (grad,) = torch.autograd.grad(objective, x, create_graph=True)
    return 0.5 * grad.pow(2).sum()


def gradreg_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: Config) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    ce = F.cross_entropy(model(x), y)
    return ce + cfg.gradreg_lambda * input_gradient_penalty(ce, x)


def gradreg_uniform_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: Config) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    logits = model(x)
    log_probs_sum = F.log_softmax(logits, 1).sum(1).mean()
    return F.cross_entropy(logits, y) + cfg.uniform_lambda * input_gradient_penalty(log_probs_sum, x)


def tempered_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: Config) -> torch.Tensor:
    """CE of softmax(logits / T) against hard labels (teacher) or soft labels (student)."""
    return F.cross_entropy(model(x) / cfg.temperature, y)


def soft_labels(teacher: nn.Module, x: torch.Tensor, temperature: float, batch: int = 1000) -> torch.Tensor:
    """softmax(z / T) of the trained teacher (eval mode) on every training image."""
    with torch.no_grad(), eval_mode(teacher):
        return torch.cat([F.softmax(teacher(xb) / temperature, 1) for xb in x.split(batch)])


LOSSES: dict[str, Loss] = {
    "normal": normal_loss,
    "adversarial": adversarial_loss,
    "gradreg": gradreg_loss,
    "gradreg-uniform": gradreg_uniform_loss,
}


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def fit(model: nn.Module, loss_fn: Loss, x: torch.Tensor, y: torch.Tensor, cfg: Config, seed: int,
        progress: bool = True, desc: str = "train") -> list[float]:
    """Adam over shuffled mini-batches for cfg.epochs; returns the mean loss of each epoch."""
    device = next(model.parameters()).device
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, eps=cfg.adam_eps)
    order = torch.Generator().manual_seed(seed)  # data order depends on the seed only
    history = []
    model.train()
    bar = tqdm(range(cfg.epochs), desc=desc, unit="epoch", disable=not progress, leave=False)
    for _ in bar:
        total, batches = 0.0, 0
        for idx in torch.randperm(len(x), generator=order).split(cfg.batch_size):
            loss = loss_fn(model, x[idx].to(device), y[idx].to(device), cfg)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, batches = total + loss.item(), batches + 1
        history.append(total / batches)
        bar.set_postfix(loss=f"{history[-1]:.4f}")
    model.eval()
    return history


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch: int = 1000) -> torch.Tensor:
    """Predicted labels (eval mode), on the CPU."""
    device = next(model.parameters()).device
    with eval_mode(model):
        return torch.cat([model(xb.to(device)).argmax(1).cpu() for xb in x.split(batch)])


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return (predict(model, x) == y).sum().item() / len(y)


def train(condition: str, cfg: Config, train_split: Split, seed: int = 0, progress: bool = True) -> tuple[nn.Module, dict]:
    """A freshly initialised model trained under `condition`; returns it (eval mode) and training metrics."""
    check_condition(condition)
    torch.manual_seed(seed)  # initial weights and dropout masks
    device = resolve_device(cfg.device)
    x, y = train_split.x, train_split.y
    if cfg.train_size:  # a fixed random subset (the same for every training seed)
        keep = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:cfg.train_size]
        x, y = x[keep], y[keep]
    start = time.perf_counter()
    model = build_model(cfg.architecture).to(device)
    if condition == "distilled":
        cfg = dataclasses.replace(cfg, lr=cfg.distill_lr)
        teacher = build_model(cfg.architecture).to(device)
        fit(teacher, tempered_loss, x, y, cfg, seed, progress, desc=f"{condition} teacher")
        targets = soft_labels(teacher, x.to(device), cfg.temperature).cpu()
        history = fit(model, tempered_loss, x, targets, cfg, seed, progress, desc=f"{condition} student")
    else:
        history = fit(model, LOSSES[condition], x, y, cfg, seed, progress, desc=condition)
    return model, {"train_loss": history[-1], "train_seconds": round(time.perf_counter() - start, 2)}
