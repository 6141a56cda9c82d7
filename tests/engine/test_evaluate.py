"""`engine evaluate` and `engine explain`: intervals, the grid's shape, the checks, the files written."""
from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np
import pytest
import torch

from engine import checkpoints, cli
from engine.ensemble import EnsembleSettings, autoattack
from engine.data import from_arrays, load_dataset
from benchmarks.bench_fidelity import fidelity_checks, jsma_rows, paper_claims, stroke_share
from engine.evaluate import (EPS_GRID, PGD_EPS, aggregate, robustness_counts, t_interval, wilson,
                             write_report)
from engine.explain import input_gradients, one_per_class, plot_grid
from engine.models import CNN
from engine.models import accuracy, predict


def test_wilson_interval_matches_the_formula_reference():
    # Reference values (statsmodels proportion_confint(method="wilson")).
    assert wilson(81, 100) == pytest.approx((0.7222, 0.8749), abs=1e-4)
    assert wilson(0, 50) == pytest.approx((0.0, 0.0713), abs=1e-4)
    assert wilson(1000, 1000)[1] == 1.0


def test_t_interval_over_seeds():
    mean, lo, hi = t_interval([0.8, 0.9, 1.0])
    assert mean == pytest.approx(0.9) and (lo, hi) == pytest.approx((0.9 - 4.303 * 0.1 / 3 ** 0.5, 1.0))


@pytest.fixture(scope="module")
def tiny_zoo():
    ds = load_dataset()
    models = {}
    for seed, name in enumerate(["normal", "gradreg"]):
        torch.manual_seed(seed)
        model = CNN(4, 4, 16)
        opt = torch.optim.Adam(model.parameters(), 3e-3)
        for idx in torch.randperm(320, generator=torch.Generator().manual_seed(seed)).split(64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(ds.train.x[idx]), ds.train.y[idx]).backward()
            opt.step()
        models[name] = model.eval()
    return ds, models


def test_grid_rows_report_and_files(tiny_zoo, tmp_path):
    ds, models = tiny_zoo
    x, y = ds.test.x[:40], ds.test.y[:40]
    counts = robustness_counts(models, x, y, pgd_steps=3, progress=False)
    rows = aggregate([counts], len(y))
    keys = {(r["source"], r["evaluated"], r["attack"], r["eps"]) for r in rows}
    assert len(rows) == len(keys) == 2 + 2 * 2 * 2 * len(EPS_GRID) + 2 * len(PGD_EPS)
    at = {(r["source"], r["evaluated"], r["attack"], r["eps"]): r for r in rows}
    assert at[("-", "normal", "clean", 0.0)]["accuracy"] == pytest.approx(accuracy(models["normal"], x, y))
    assert at[("gradreg", "normal", "fgsm", 0.0)]["accuracy"] == at[("-", "normal", "clean", 0.0)]["accuracy"]
    assert at[("normal", "normal", "fgsm", 0.3)]["accuracy"] < at[("-", "normal", "clean", 0.0)]["accuracy"]
    assert all(r["ci_low"] <= r["accuracy"] <= r["ci_high"] and r["n"] == 40 and r["seeds"] == 1 for r in rows)
    # Two seeds: mean of the two accuracies, t interval.
    two = {(r["source"], r["evaluated"], r["attack"], r["eps"]): r for r in aggregate([counts, counts], 40)}
    assert two[("-", "normal", "clean", 0.0)]["seeds"] == 2
    meta = [{"condition": c, "id": f"{c}-test", "checkpoint_sha256": "0" * 64} for c in models]
    write_report(rows, meta, tmp_path)
    with open(tmp_path / "robustness.csv") as fh:
        table = list(csv.DictReader(fh))
    assert list(table[0]) == ["source", "evaluated", "attack", "eps", "accuracy", "ci_low", "ci_high", "n", "seeds"]
    assert len(table) == len(rows)
    assert (tmp_path / "robustness-normal.png").stat().st_size > 1000 and (tmp_path / "robustness-gradreg.png").exists()
    summary = (tmp_path / "summary.md").read_text()
    assert "## White-box PGD" in summary and "## Fidelity checks" not in summary  # the targets are the benchmark's


def row(source, evaluated, attack, eps, acc, half=0.02):
    return {"source": source, "evaluated": evaluated, "attack": attack, "eps": eps, "accuracy": acc,
            "ci_low": acc - half, "ci_high": acc + half, "n": 1000, "seeds": 1}


def test_fidelity_checks_pass_and_fail():
    rows = [row("-", m, "clean", 0.0, 0.97) for m in ("normal", "gradreg", "distilled")]
    for eps in (0.2, 0.3):
        rows += [row("normal", "normal", "fgsm", eps, 0.05), row("normal", "gradreg", "fgsm", eps, 0.8),
                 row("normal", "distilled", "fgsm", eps, 0.3), row("gradreg", "distilled", "fgsm", eps, 0.33)]
    rows += [row("distilled", "distilled", "fgsm", 0.3, 0.95), row("distilled", "distilled", "tgsm", 0.3, 0.4)]
    checks = {claim: ok for claim, ok, _ in fidelity_checks(rows)}
    assert all(checks.values()) and len(checks) == 3 + 2 + 2 + 1
    rows[-2] = row("distilled", "distilled", "fgsm", 0.3, 0.5)  # no masking: FGSM works on it
    rows[4] = row("normal", "gradreg", "fgsm", 0.2, 0.3)  # gradreg barely better
    failed = [claim for claim, ok, _ in fidelity_checks(rows) if not ok]
    assert len(failed) == 2 and any("masking" in c for c in failed) and any("ε=0.2: gradreg" in c for c in failed)


def paper_grid(**changes: float) -> list[dict]:
    """A transfer grid on which every claim of the paper holds (its Fig. 2 curves on normal-model FGSM), with
    `changes` keyed "source/evaluated/attack/eps" replacing single accuracies."""
    models = ("normal", "adversarial", "distilled", "gradreg")
    acc = {f"-/{m}/clean/0.0": 0.97 for m in models}
    for a in ("fgsm", "tgsm"):
        acc |= {f"{s}/{m}/{a}/{e}": 0.5 for s in models for m in models for e in (0.3, 0.4, 0.5)}
        acc |= {f"{s}/gradreg/{a}/{e}": 0.8 for s in models for e in (0.3, 0.4, 0.5)}
        acc |= {f"normal/normal/{a}/0.3": 0.05, f"normal/distilled/{a}/0.3": 0.2, f"gradreg/distilled/{a}/0.3": 0.2}
    for m, curve in {"gradreg": (0.80, 0.62, 0.40), "adversarial": (0.86, 0.46, 0.18)}.items():
        acc |= {f"normal/{m}/fgsm/{e}": a for e, a in zip((0.3, 0.4, 0.5), curve)}
    acc |= {f"normal/adversarial/tgsm/{e}": a for e, a in zip((0.3, 0.4, 0.5), (0.7, 0.5, 0.3))}
    acc |= {"distilled/distilled/fgsm/0.3": 0.95} | {k.replace("__", "/"): v for k, v in changes.items()}
    return [row(*k.split("/")[:3], float(k.split("/")[3]), a) for k, a in acc.items()]


JSMA = {"normal": {"accuracy": 0.0, "ci_low": 0.0, "ci_high": 0.01}, "gradreg": {"accuracy": 0.6, "ci_low": 0.55, "ci_high": 0.65},
        "adversarial": {"accuracy": 0.3, "ci_low": 0.25, "ci_high": 0.35}, "distilled": {"accuracy": 0.2, "ci_low": 0.15, "ci_high": 0.25}}
STROKE = {"normal": 0.40, "adversarial": 0.45, "distilled": 0.0, "gradreg": 0.70}


def test_paper_claims_pass_and_fail_with_the_numbers():
    assert paper_claims([row("-", "normal", "clean", 0.0, 0.97)]) == []  # the grid's models were not evaluated
    claims = paper_claims(paper_grid(), JSMA, STROKE)
    assert len(claims) == 3 + 2 * 6 + 2 and all(ok for _, ok, _ in claims), [c for c, ok, _ in claims if not ok]
    evidence = {claim: ev for claim, _, ev in claims}
    overtakes = "gradreg overtakes adversarial training on normal-model FGSM at ε > 0.3 (ahead at ε 0.4 and 0.5)"
    assert "gradreg 80 → 62 → 40 vs adversarial 86 → 46 → 18 (ε .3/.4/.5) (paper: 80 → 62 → 40 vs 86 → 46 → 18)" in evidence[overtakes]
    assert len(paper_claims(paper_grid())) == 15  # without JSMA and the stroke share, those two claims are left out
    # The demo zoo's normal-model FGSM curves, as the issue measured them: adversarial training stays ahead.
    demo = {f"normal__{m}__fgsm__{e}": a for m, curve in {"gradreg": (0.64, 0.35, 0.12), "adversarial": (0.84, 0.68, 0.32)}.items()
            for e, a in zip((0.3, 0.4, 0.5), curve)}
    failed = {c for c, ok, _ in paper_claims(paper_grid(**demo), JSMA, STROKE) if not ok}
    assert failed == {overtakes, "gradreg falls more gradually on normal-model FGSM (a smaller drop from ε 0.3 to 0.5)",
                      "gradreg resists FGSM examples transferred from the normal model better than distilled (ε 0.3) "
                      "and adversarial training (ε 0.5)"}
    # Each of the others can fail on its own numbers.
    cases = [({"-__gradreg__clean__0.0": 0.95}, {}, "clean accuracy"),
             ({"distilled__distilled__fgsm__0.3": 0.5}, {}, "gradient masking"),
             ({"gradreg__adversarial__tgsm__0.3": 0.7}, {}, "TGSM examples (ε 0.3) fool every other model"),
             ({"adversarial__gradreg__tgsm__0.3": 0.4}, {}, "TGSM examples transferred from the adversarial model"),
             ({}, {"gradreg": 0.42}, "follow the strokes")]
    for grid, stroke, which in cases:
        failed = [c for c, ok, _ in paper_claims(paper_grid(**grid), JSMA, STROKE | stroke) if not ok]
        assert len(failed) == 1 and which in failed[0], (which, failed)
    failed = [c for c, ok, _ in paper_claims(paper_grid(), JSMA | {"gradreg": JSMA["distilled"]}, STROKE) if not ok]
    assert len(failed) == 1 and "JSMA" in failed[0]


def test_jsma_accuracy_and_stroke_share_on_real_models(tiny_zoo):
    ds, models = tiny_zoo
    rows = jsma_rows(models, ds, images=4)
    assert set(rows) == set(models) and rows["normal"]["accuracy"] in (0, 0.25, 0.5, 0.75, 1)
    assert all(r["ci_low"] <= r["accuracy"] <= r["ci_high"] for r in rows.values())
    x = ds.test.x[:8]
    share = stroke_share(models["normal"], x)
    assert 0 < share < 1
    ink_everywhere = torch.ones_like(x)  # every pixel is ink: all of the gradient lies on it
    assert stroke_share(models["normal"], ink_everywhere) == pytest.approx(1.0)


def test_explain_maps_and_grid(tiny_zoo, tmp_path):
    ds, models = tiny_zoo
    idx = one_per_class(ds.test.y)
    assert ds.test.y[idx].tolist() == list(range(10))
    x = ds.test.x[idx]
    grads = input_gradients(models["normal"], x)
    assert grads.shape == x.shape and grads.abs().sum() > 0 and not models["normal"].training
    plot_grid(models, x, tmp_path / "maps.png")
    assert (tmp_path / "maps.png").stat().st_size > 1000


def test_checkpoint_from_another_dataset_is_refused(tiny_zoo, tmp_path):
    ds, models = tiny_zoo
    meta = {"condition": "normal", "architecture": "demo", "dataset_sha256": "f" * 64}
    path = tmp_path / "n.pt"
    checkpoints.save(CNN(16, 32, 128), meta, path)
    proc = subprocess.run([sys.executable, "-m", "engine", "evaluate", "--checkpoints", str(path), "--out", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert "trained on another data set" in proc.stderr


@pytest.fixture(scope="module")
def three_classes():
    """Two small CNNs on 90 RGB 8×8 images of three colours: a data set of K = 3 classes."""
    rng = np.random.default_rng(0)
    y = np.arange(90) % 3
    x = rng.integers(0, 100, (90, 3, 8, 8))
    x[np.arange(90), y] += 155  # class k: channel k bright
    ds = from_arrays("colours", "colours.npz", x.astype(np.uint8), y, ("red", "green", "blue"))
    models = {}
    for seed, name in enumerate(["normal", "gradreg"]):
        torch.manual_seed(seed)
        model = CNN(4, 4, 16, classes=3, input_shape=(3, 8, 8))
        opt = torch.optim.Adam(model.parameters(), 1e-2)
        for _ in range(30):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(ds.train.x), ds.train.y).backward()
            opt.step()
        models[name] = model.eval()
    return ds, models


def test_grid_ensemble_targets_and_maps_use_the_data_sets_classes(three_classes, tmp_path):
    """K = 3: TGSM aims at (y + 1) mod 3 (mod 10 would name classes the models lack), the ensemble's nine
    targets shrink to the two other classes (its DLR loss has no fourth logit), and the maps' columns
    are the classes by name."""
    ds, models = three_classes
    x, y = ds.test.x, ds.test.y
    assert accuracy(models["normal"], x, y) > 0.9
    rows = aggregate([robustness_counts(models, x, y, pgd_steps=3, pgd_eps=[0.3], progress=False, classes=3)], len(y))
    at = {(r["source"], r["evaluated"], r["attack"], r["eps"]): r["accuracy"] for r in rows}
    assert at[("normal", "normal", "tgsm", 0.7)] < at[("-", "normal", "clean", 0.0)]
    result = autoattack(models["normal"], x, y, 0.5, EnsembleSettings(apgd_steps=3, fab_steps=3, square_queries=10))
    assert result.robust.sum() < (predict(models["normal"], x)[0] == y).sum()
    idx = one_per_class(ds.test.y, classes=3)
    assert ds.test.y[idx].tolist() == [0, 1, 2]
    plot_grid(models, ds.test.x[idx], tmp_path / "maps.png", list(ds.classes))
    assert (tmp_path / "maps.png").stat().st_size > 1000


def test_the_ensemble_refuses_two_classes_in_one_line(tmp_path, capsys):
    x = np.random.default_rng(0).integers(0, 255, (30, 4, 4)).astype(np.uint8)
    np.savez(tmp_path / "two.npz", x=x, y=np.arange(30) % 2)
    assert cli.main(["evaluate", "--dataset", str(tmp_path / "two.npz"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the AutoAttack ensemble needs at least 3 classes" in err and "--no-ensemble" in err, err
