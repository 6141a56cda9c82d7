"""Attack throughput against torchattacks (same model, batch and outputs, interleaved, one process), and stimulus generation.

The model is the zoo's `normal` demo model (trained, or reused from runs/models). Each round times
the engine's attack and torchattacks' on the same inputs, one right after the other; the ratio is
the median of the per-round ratios (machines here are shared, so absolute times drift, ratios less).
Outputs are checked identical before timing. The physical limit of a gradient attack is its number of
forward+backward passes: the "unit" is one forward+backward with the input gradient on the same batch.

`python -m benchmarks --only attacks [--tier quick|full]`
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Callable

import torch
import torchattacks

from benchmarks.results import Entry, write_section
from engine import attacks, stimuli, zoo
from engine.data import load_dataset

TIERS = {"quick": {"batch": 128, "rounds": 7, "jsma_images": 8, "jsma_rounds": 1},
         "full": {"batch": 256, "rounds": 11, "jsma_images": 256, "jsma_rounds": 3}}


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


PEAK_SCRIPT = """
import sys
from pathlib import Path
import torch, torchattacks
from engine import attacks, zoo
from engine.data import load_dataset
test = load_dataset().test
x, t = test.x[:{k}], (test.y[:{k}] + 1) % 10
model, _ = zoo.train_or_load("normal", progress=False)
def status(key):
    return int(next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(key)).split()[1])
Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark to the current resident set
before = status("VmRSS:")
if sys.argv[1] == "engine":
    attacks.jsma(model, x, t)
else:
    attack = torchattacks.JSMA(model, theta=1.0, gamma=0.1)
    attack.set_mode_targeted_by_label(quiet=True)
    attack(x, t)
print((status("VmHWM:") - before) / 1024)
"""


def jsma_peak_mib(which: str, k: int) -> float:
    """Rise of the resident set during one JSMA run, in a fresh process (so no allocator cache hides it)."""
    out = subprocess.run([sys.executable, "-c", PEAK_SCRIPT.format(k=k), which], capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def interleaved(ours: Callable[[], object], theirs: Callable[[], object], rounds: int) -> tuple[float, float, float]:
    """Median seconds of each and the median per-round ratio theirs/ours (> 1: ours is faster)."""
    mine, peer = [], []
    for _ in range(rounds):
        mine.append(timed(ours)[0])
        peer.append(timed(theirs)[0])
    return statistics.median(mine), statistics.median(peer), statistics.median(p / m for m, p in zip(mine, peer))


def unit_seconds(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, rounds: int) -> float:
    with attacks.eval_mode(model):
        return statistics.median(timed(lambda: attacks.loss_gradient(model, x, y))[0] for _ in range(rounds))


def run(tier: str) -> None:
    cfg = TIERS[tier]
    dataset = load_dataset()
    model, meta = zoo.train_or_load("normal", progress=False)
    x, y = dataset.test.x[:cfg["batch"]], dataset.test.y[:cfg["batch"]]
    n = len(x)
    entries: list[Entry] = []
    unit = unit_seconds(model, x, y, cfg["rounds"])
    entries.append(Entry(f"unit: one forward+backward with ∇ₓ, batch {n}", f"{n / unit:,.0f} img/s"))

    # FGSM ε = 0.3 and PGD-40 (ε = 0.3, α = 0.01, seeded random start), batch 256.
    fgsm_ta = torchattacks.FGSM(model, eps=0.3)
    assert torch.equal(attacks.fgsm(model, x, y, 0.3), fgsm_ta(x, y))
    mine, peer, ratio = interleaved(lambda: attacks.fgsm(model, x, y, 0.3), lambda: fgsm_ta(x, y), cfg["rounds"])
    entries.append(Entry(f"FGSM ε=0.3, batch {n}", f"{n / mine:,.0f} img/s ({mine / unit:.2f} units)",
                         f"torchattacks.FGSM {n / peer:,.0f} img/s", f"{ratio:.2f}×", "≥ 0.95×"))

    pgd_ta = torchattacks.PGD(model, eps=0.3, alpha=0.01, steps=40, random_start=True)

    def pgd_theirs() -> torch.Tensor:
        torch.manual_seed(0)  # the same random start as seed=0 below
        return pgd_ta(x, y)
    assert torch.equal(attacks.pgd(model, x, y, 0.3, 0.01, 40, seed=0), pgd_theirs())
    mine, peer, ratio = interleaved(lambda: attacks.pgd(model, x, y, 0.3, 0.01, 40, seed=0), pgd_theirs, cfg["rounds"])
    entries.append(Entry(f"PGD-40 ε=0.3 α=0.01 random start, batch {n}", f"{n / mine:,.1f} img/s ({mine / unit:.1f} units; floor 40)",
                         f"torchattacks.PGD {n / peer:,.1f} img/s", f"{ratio:.2f}×", "≥ 0.95×"))

    # JSMA θ = 1, γ = 0.1, target (y + 1) mod 10: batched engine vs torchattacks' image-at-a-time loop.
    k = cfg["jsma_images"]
    xj, tj = x[:k], (y[:k] + 1) % 10
    jsma_ta = torchattacks.JSMA(model, theta=1.0, gamma=0.1)
    jsma_ta.set_mode_targeted_by_label(quiet=True)
    adv, success = attacks.jsma(model, xj, tj)
    same = sum(torch.equal(a, b) for a, b in zip(adv, jsma_ta(xj, tj)))
    mine, peer, ratio = interleaved(lambda: attacks.jsma(model, xj, tj), lambda: jsma_ta(xj, tj), cfg["jsma_rounds"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # torchattacks' best case: one image at a time gains nothing from threads
    peer_1 = statistics.median(timed(lambda: jsma_ta(xj, tj))[0] for _ in range(cfg["jsma_rounds"]))
    torch.set_num_threads(threads)
    # Floor: every iteration of every image needs one forward and two vector-Jacobian products;
    # θ = 1 saturates two pixels per iteration, so an image's iterations are its L0 / 2.
    image_iterations = int((adv != xj).flatten(1).sum()) / 2 + k
    with attacks.eval_mode(model):
        def step3() -> None:
            xa = x.clone().requires_grad_(True)
            z = model(xa)
            torch.autograd.grad(z, xa, torch.ones_like(z), retain_graph=True)
            torch.autograd.grad(z, xa, torch.ones_like(z))
        floor = image_iterations / n * statistics.median(timed(step3)[0] for _ in range(cfg["rounds"]))
    mem_mine, mem_peer = jsma_peak_mib("engine", k), jsma_peak_mib("torchattacks", k)
    entries.append(Entry(f"JSMA θ=1 γ=0.1, {k} images (identical output: {same}/{k}; target hit {success.float().mean():.0%})",
                         f"{k / mine:,.1f} img/s; {mine / floor:.1f}× the pass floor; peak +{mem_mine:.0f} MiB",
                         f"torchattacks.JSMA {k / peer:,.2f} img/s ({k / peer_1:,.2f} at 1 thread); peak +{mem_peer:.0f} MiB",
                         f"{ratio:.1f}× ({peer_1 / mine:.1f}× vs 1 thread)", "≥ 5× (stretch 10×)"))

    # Stimulus generation for the default design with the zoo's cached models (training timed by the zoo).
    design = stimuli.load_design()
    models = {c: zoo.train_or_load(c, progress=False) for c in design.conditions}
    with TemporaryDirectory() as tmp:
        seconds, (manifest, files, sheet) = timed(lambda: stimuli.build(models, dataset, design, 0, progress=False))
        seconds += timed(lambda: stimuli.write(Path(tmp) / "set", manifest, files, sheet))[0]
    train_seconds = sum(float(m.get("train_seconds", 0)) for _, m in models.values())
    entries.append(Entry(f"generate-stimuli, default design ({len(manifest['stimuli'])} stimuli), models cached",
                         f"{seconds:.1f} s (the {len(models)} sidecars' training seconds sum to {train_seconds:.0f} s, two "
                         "trainings at a time when cold: the cold run's wall time is in \"Stimulus generation: six-defense "
                         "default, cold\")", target="—"))
    # One section per tier (the full one runs JSMA at scale), so a quick run does not erase the full one.
    write_section("Attacks and stimulus generation" + (" (full tier: JSMA at scale)" if tier == "full" else ""), entries, command=f"python -m benchmarks --only attacks --tier {tier}", notes=(
        f"Model: the zoo's `normal` demo model ({meta['id']}); {torch.get_num_threads()} threads, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset (OpenMP spins while waiting)')}. Ratios are medians of per-round ratios of interleaved runs "
        "in one process with torch's default threads; outputs were checked identical first (PGD with the same seeded random "
        "start). JSMA's floor is the time of one forward + two vector-Jacobian products per image-iteration: our JSMA needs "
        "exactly that (∇Z_t and ∇ΣZ instead of one backward per class) plus an n·m pair search over two Pareto layers "
        "(m ≈ tens of features) instead of scoring all n² = 614,656 pairs. Peak memory: rise of the resident set during one "
        "run of the same images in a fresh process (Linux VmHWM after a reset)."))
