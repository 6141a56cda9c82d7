"""The AutoAttack ensemble, L∞ (Croce & Hein, ICML 2020, arXiv 2003.01690), standard version.

Per image, robust accuracy is the worst case over APGD-CE (100 steps), APGD-T (targeted DLR, 9
targets × 100 steps), FAB-T (9 targets × 100 steps) and Square (5,000 queries), run in that order,
each on the images the previous ones left standing (a misclassified clean image is broken by
"clean" and attacked by none). Every attack is seeded afresh with the same seed, as torchattacks'
AutoAttack seeds its components; that wrapper runs APGD at 10 steps and FAB at 10 (its classes'
defaults), where the original and these defaults run 100 (tests/engine/test_ensemble.py).

A break is counted only after the ensemble has checked it: the example lies in the ε-ball and
[0, 1] and the model misclassifies it. Cost is counted in image passes through the model: a
forward alone, or a forward with the input gradient and its backward (a "gradient pass").

The cascade attacks the zoo's built-in CNN in channels-last memory layout (`attack_layout`): on
CPU a batched forward then runs 1.7× and a gradient pass 1.25× as fast, and a robust image costs
about 7,800 passes (benchmarks/RESULTS.md, "AutoAttack ensemble"). A layout changes the order of
float sums, not the function; a user's network is left as given, since its code may `view`
activations in a way only the standard layout allows.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from engine.apgd import apgd, apgd_targeted
from engine.attacks import HIGH, LOW, eval_mode
from engine.fab import fab_targeted
from engine.models import CNN
from engine.square import square

ATTACK_NAMES = ("apgd-ce", "apgd-t", "fab-t", "square")
# Slack for the ε-ball check: x + ε is rounded to float32 before the difference is taken.
BALL_TOLERANCE = 1e-6


@dataclass(frozen=True)
class EnsembleSettings:
    """AutoAttack's standard settings; tests shrink the budgets."""
    apgd_steps: int = 100
    targets: int = 9
    fab_steps: int = 100
    square_queries: int = 5000
    seed: int = 0

    def nominal_passes(self, attack: str) -> tuple[int, int]:
        """(forward, gradient) passes per image for an image that stays standing through `attack`."""
        return {"apgd-ce": (0, 1 + self.apgd_steps),
                "apgd-t": (1, self.targets * (1 + self.apgd_steps)),
                "fab-t": (1 + self.targets * self.fab_steps, self.targets * self.fab_steps),
                "square": (1 + self.square_queries, 0)}[attack]


class PassCounter(nn.Module):
    """The model, counting the images that pass through it (with and without an input gradient)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.forward_images = 0
        self.gradient_images = 0
        self.train(model.training)  # else the attacks' eval_mode would restore the wrapped model to training mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            self.gradient_images += len(x)
        else:
            self.forward_images += len(x)
        return self.model(x)


@dataclass
class AttackCost:
    attack: str
    images: int  # images it ran on: those still standing
    broken: int
    forward_images: int
    gradient_images: int
    seconds: float
    cpu_seconds: float  # this process's CPU time, all threads: less sensitive than wall time to other jobs


@dataclass
class EnsembleResult:
    eps: float
    robust: torch.Tensor  # (N,) bool
    broken_by: list[str]  # per image: "clean", an attack's name, or "" if it stood
    adversarial: torch.Tensor  # the breaking example, or the clean image where none broke it
    costs: list[AttackCost] = field(default_factory=list)

    def robust_after(self, attack: str) -> int:
        """Images standing after the ensemble's attacks up to and including `attack`."""
        done = {"clean", *ATTACK_NAMES[:ATTACK_NAMES.index(attack) + 1]}
        return sum(b not in done for b in self.broken_by)


def _run(name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
         settings: EnsembleSettings) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator(device=x.device).manual_seed(settings.seed)
    if name == "apgd-ce":
        return apgd(model, x, y, eps, settings.apgd_steps, "ce", generator=generator)
    if name == "apgd-t":
        return apgd_targeted(model, x, y, eps, settings.apgd_steps, settings.targets, generator)
    if name == "fab-t":
        return fab_targeted(model, x, y, eps, settings.fab_steps, settings.targets)
    return square(model, x, y, eps, settings.square_queries, generator)


def attack_layout(model: nn.Module, x: torch.Tensor) -> tuple[nn.Module, torch.Tensor]:
    """The model and images in the memory layout the cascade attacks in: a channels-last copy of a built-in CNN on CPU, else as given."""
    if not isinstance(model, CNN) or x.dim() != 4 or x.device.type != "cpu":
        return model, x
    return copy.deepcopy(model).to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)


def autoattack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
               settings: EnsembleSettings = EnsembleSettings(), attacks: tuple[str, ...] = ATTACK_NAMES) -> EnsembleResult:
    """Run the cascade on one batch (on the model's device); results come back on the CPU."""
    device = next(model.parameters()).device
    model, x = attack_layout(model, x.detach().to(device))
    y = y.to(device)
    counted = PassCounter(model)
    with torch.no_grad(), eval_mode(model):
        standing = model(x).argmax(1) == y
    broken_by = ["" if s else "clean" for s in standing.tolist()]
    adversarial = x.clone()
    costs = []
    for name in attacks:
        idx = standing.nonzero().squeeze(1)
        if len(idx) == 0:
            break
        before = counted.forward_images, counted.gradient_images
        start, cpu_start = time.perf_counter(), time.process_time()
        adv, hit = _run(name, counted, x[idx], y[idx], eps, settings)
        with torch.no_grad(), eval_mode(model):
            in_ball = ((adv - x[idx]).flatten(1).abs().amax(1) <= eps + BALL_TOLERANCE) & (adv >= LOW).flatten(1).all(1) \
                & (adv <= HIGH).flatten(1).all(1)
            checked = hit & in_ball
            if checked.any():  # never an empty batch: some networks cannot take one (MONAI's ResNet views it as (0, -1))
                checked[checked.clone()] = counted(adv[checked]).argmax(1) != y[idx[checked]]
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        for i in idx[checked].tolist():
            broken_by[i] = name
        standing[idx[checked]] = False
        adversarial[idx[checked]] = adv[checked]
        costs.append(AttackCost(name, len(idx), int(checked.sum()), counted.forward_images - before[0],
                                counted.gradient_images - before[1], seconds, cpu_seconds))
    return EnsembleResult(eps, standing.cpu(), broken_by, adversarial.cpu().contiguous(), costs)
