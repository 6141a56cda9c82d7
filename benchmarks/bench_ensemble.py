"""AutoAttack ensemble cost on one robust model: wall time at three ε, and model passes per image against the budget.

The model is the zoo's PGD-trained `pgd-adversarial` demo model (trained, or reused from runs/models):
the robust model of the field, which keeps most images standing through every attack, so the
cascade's later attacks (APGD-T, FAB-T, Square) run on most of the set instead of a few images;
the images a fixed random subset of the test split, the settings AutoAttack's standard ones
(engine/ensemble.py). Per attack the table gives the images it ran on (those still standing), the
passes it spent per such image (gradient passes: forward + backward with ∇ₓ; forwards alone) against
its budget (what an image that stands through the whole attack costs), and its time against the
pass floor: the same passes at the speed of one batched pass over the whole set.

`python -m benchmarks --only ensemble [--tier quick|full]`; `BENCH_ENSEMBLE_IMAGES=256` runs one size
of the tier alone (its own RESULTS section), since 1,000 images take about an hour on 2 cores.
"""
from __future__ import annotations

import os
import statistics
import time

import torch
import torch.nn.functional as F

from benchmarks.results import Entry, write_section
from engine import zoo
from engine.attacks import eval_mode
from engine.data import load_dataset
from engine.ensemble import EnsembleSettings, attack_layout, autoattack
from engine.evaluate import aggregate
from engine.masking import ensemble_counts, masking_reasons

EPS = (0.1, 0.2, 0.3)
TIERS = {"quick": {"images": [64]}, "full": {"images": [256, 1000]}}
CONDITION = "pgd-adversarial"
SIZES_VARIABLE = "BENCH_ENSEMBLE_IMAGES"


def image_counts(tier: str) -> list[int]:
    chosen = os.environ.get(SIZES_VARIABLE)
    if not chosen:
        return TIERS[tier]["images"]
    try:
        return [int(n) for n in chosen.split(",")]
    except ValueError:
        raise SystemExit(f"{SIZES_VARIABLE} must be image counts separated by commas, not {chosen!r}") from None


def pass_seconds(layouts: dict[str, tuple[torch.nn.Module, torch.Tensor]], y: torch.Tensor,
                 rounds: int = 15) -> dict[str, tuple[float, float]]:
    """Per layout, CPU seconds (this process, all threads) per image of one batched forward, and of one forward + backward
    with ∇ₓ; the layouts take turns within each round, so a noisy spell slows them alike (medians of `rounds`)."""
    def forward(model: torch.nn.Module, x: torch.Tensor) -> None:
        with torch.no_grad():
            model(x)

    def gradient(model: torch.nn.Module, x: torch.Tensor) -> None:
        xg = x.clone().requires_grad_(True)
        torch.autograd.grad(F.cross_entropy(model(xg), y, reduction="sum"), xg)
    times: dict[tuple[str, int], list[float]] = {}
    for model, x in layouts.values():  # warm-up: the first pass of a layout builds its kernels
        with eval_mode(model):
            forward(model, x), gradient(model, x)
    for _ in range(rounds):
        for name, (model, x) in layouts.items():
            with eval_mode(model):
                for kind, fn in enumerate((forward, gradient)):
                    start = time.process_time()
                    fn(model, x)
                    times.setdefault((name, kind), []).append(time.process_time() - start)
    return {name: (statistics.median(times[name, 0]) / len(y), statistics.median(times[name, 1]) / len(y)) for name in layouts}


def run(tier: str) -> None:
    dataset = load_dataset()
    model, meta = zoo.train_or_load(CONDITION, progress=False)
    settings = EnsembleSettings()
    entries: list[Entry] = []
    load_before = os.getloadavg()[0]
    counts = image_counts(tier)
    for n in counts:
        keep = torch.randperm(len(dataset.test.y), generator=torch.Generator().manual_seed(0))[:n]
        x, y = dataset.test.x[keep], dataset.test.y[keep]
        speeds = pass_seconds({"attack": attack_layout(model, x[:256]), "standard": (model, x[:256])}, y[:256])
        (t_forward, t_gradient), (standard_forward, standard_gradient) = speeds["attack"], speeds["standard"]
        entries.append(Entry(f"{n} images: pass speed in the cascade's channels-last layout against the standard one",
                             f"forward {standard_forward / t_forward:.2f}×, gradient pass {standard_gradient / t_gradient:.2f}× "
                             "as fast", target="—"))
        total, cpu, floor_total = 0.0, 0.0, 0.0
        for eps in EPS:
            result = autoattack(model, x, y, eps, settings)
            seconds = sum(c.seconds for c in result.costs)
            total, cpu = total + seconds, cpu + sum(c.cpu_seconds for c in result.costs)
            for c in result.costs:
                nominal_forward, nominal_gradient = settings.nominal_passes(c.attack)
                floor = c.forward_images * t_forward + c.gradient_images * t_gradient
                floor_total += floor
                entries.append(Entry(
                    f"{n} images, ε={eps}, {c.attack}: {c.images} standing in, {c.broken} broken",
                    f"{c.gradient_images / c.images:,.0f} gradient + {c.forward_images / c.images:,.0f} forward passes per image "
                    f"(budget {nominal_gradient:,} + {nominal_forward:,}); {c.seconds:.1f} s wall, {c.cpu_seconds:.1f} s CPU = "
                    f"{c.cpu_seconds / floor:.2f}× the pass floor",
                    target="—"))
            entries.append(Entry(f"{n} images, ε={eps}: ensemble-robust accuracy", f"{result.robust.float().mean():.1%} "
                                 f"(APGD-CE alone {result.robust_after('apgd-ce') / n:.1%}); {seconds:.1f} s"))
        entries.append(Entry(f"{n} images, three ε: ensemble wall time", f"{total:.0f} s; CPU {cpu:.0f} s = {cpu / floor_total:.2f}× "
                             f"the pass floor of {floor_total:.0f} CPU s",
                             target="≤ 600 s on 2 cores (256 images)" if n == 256 else "—"))
    # The masking flag on the demo's gradient-masked model (the target: ≤ 15% at ε 0.1, flagged).
    distilled, _ = zoo.train_or_load("distilled", progress=False)
    keep = torch.randperm(len(dataset.test.y), generator=torch.Generator().manual_seed(0))[:64]
    rows = aggregate([ensemble_counts({"distilled": distilled}, dataset.test.x[keep], dataset.test.y[keep], [0.1], settings,
                                      progress=False)], len(keep))
    at = {r["attack"]: r["accuracy"] for r in rows}
    why = masking_reasons(rows)["distilled"]
    entries.append(Entry("distilled demo model, 64 images, ε=0.1: ensemble-robust accuracy and masking flag",
                         f"{at['ensemble']:.1%} (APGD-CE alone {at['apgd-ce']:.1%}; exactly-zero CE gradient on "
                         f"{at['zero-gradient']:.1%}); {'flagged' if why else 'NOT flagged'}", target="≤ 15% and flagged"))
    chosen = os.environ.get(SIZES_VARIABLE)
    title = (f" ({', '.join(f'{n:,}' for n in counts)} images)" if chosen else
             " (full tier: 256 and 1,000 images)" if tier == "full" else "")
    write_section("AutoAttack ensemble" + title, entries,
                  command=(f"{SIZES_VARIABLE}={chosen} " if chosen else "") + f"python -m benchmarks --only ensemble --tier {tier}",
                  notes=(
        f"Model: the zoo's `{CONDITION}` demo model ({meta['id']}), one robust model as the issue asks; {torch.get_num_threads()} "
        f"threads, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}; 1-minute load average {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after (2 cores, shared). Settings: AutoAttack standard (APGD-CE 100 steps, APGD-T 9 targets × "
        "100 steps, FAB-T 9 targets × 100 steps, Square 5,000 queries), seed 0, each attack on the images still standing and "
        "each image dropped by an attack as soon as it is broken. Budget: passes an image that stands through the whole attack "
        "costs (APGD: 1 + steps gradient passes per run; FAB: a gradient pass and a forward per step; Square: 1 + queries "
        "forwards; 1 forward to choose targets). Pass floor: the same passes at the CPU time (this process, both threads) of one "
        "batched forward, or forward + backward, over up to 256 images (median of 15), in the channels-last layout the cascade "
        "attacks the built-in CNN in; above 1× is the cost of small batches of "
        "survivors, FAB's projections and Python overhead. CPU time rather than wall time because the machine is shared: "
        "on a loaded machine wall time mostly measures the other jobs."))
