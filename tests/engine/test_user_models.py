"""A user's network: an import path to a factory or a TorchScript file, normalisation as a wrapper,
trained by the zoo's regimes on RGB data, and weights trained elsewhere imported as a checkpoint;
a ResNet from a maintained library (MONAI) through train and evaluate as docs/examples/resnet.toml names it."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import contracts
from engine import architectures, checkpoints, cli, stimuli, zoo
from engine.attacks import fgsm
from engine.config import ConfigError, make_config
from engine.data import from_arrays, load_dataset
from engine.import_model import import_model
from engine.normalize import Normalized
from engine.stimuli.write import read_png
from tinycnn import EXAMPLES

FACTORY = '''
from torch import nn

def tiny(width=4, classes=3):
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(4 * width, classes))

def linear(classes, pixels):
    return nn.Sequential(nn.Flatten(), nn.Linear(pixels, classes))

def not_a_network():
    return 42
'''


@pytest.fixture
def rgb(tmp_path) -> Path:
    """60 RGB 8×8 images of 3 classes that differ by their dominant colour (learnable in a few steps)."""
    rng = np.random.default_rng(0)
    y = np.arange(60) % 3
    x = rng.uniform(0, 0.4, (60, 8, 8, 3))
    x[np.arange(60), :, :, y] += 0.6
    path = tmp_path / "rgb.npz"
    np.savez(path, x=x.astype(np.float32), y=y, classes=np.array(["red", "green", "blue"]))
    return path


@pytest.fixture
def factory(tmp_path) -> Path:
    path = tmp_path / "user_models.py"
    path.write_text(FACTORY)
    return path


def _cfg(rgb: Path, architecture: str, **more):
    return make_config("demo", {"dataset": str(rgb), "architecture": architecture, "epochs": 2, "batch_size": 8, **more})


def test_factory_network_trains_reloads_and_changes_its_cache_key_with_its_file(tmp_path, rgb, factory):
    cfg = _cfg(rgb, f"{factory}:tiny", **{"model.kwargs": {"width": 6}, "model.mean": [0.5], "model.std": [0.25]})
    dataset = load_dataset(str(rgb))
    model, meta = zoo.train_or_load_config("normal", cfg, seed=1, cache_dir=tmp_path / "zoo", dataset=dataset, progress=False)
    assert isinstance(model, Normalized) and model.model[0].out_channels == 6
    assert meta["input_shape"] == [3, 8, 8] and meta["classes"] == ["red", "green", "blue"]
    assert meta["hyperparameters"]["model"] == {"kwargs": {"width": 6}, "mean": [0.5], "std": [0.25]}
    assert meta["hyperparameters"]["architecture_sha256"] == architectures.fingerprint(f"{factory}:tiny")
    path = zoo.checkpoint_path("normal", cfg, "demo", 1, tmp_path / "zoo", dataset)
    again, _ = checkpoints.load(path)
    x = dataset.test.x
    assert torch.equal(again(x), model(x))
    # The attacks see pixels: the adversarial image stays within ε of x in [0, 1], whatever the normalisation.
    adv = fgsm(model, x, dataset.test.y, 0.1)
    assert (adv - x).abs().max() <= 0.1 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    assert torch.allclose(model(x), model.model((x - 0.5) / 0.25))
    factory.write_text(FACTORY + "\n# edited\n")
    assert zoo.checkpoint_path("normal", cfg, "demo", 1, tmp_path / "zoo", dataset) != path


@pytest.mark.filterwarnings("ignore:`torch.jit.s:DeprecationWarning")
def test_torchscript_network_and_distillation_build_the_same_kind_of_network(tmp_path, rgb, factory):
    scripted = tmp_path / "net.pt"
    torch.jit.save(torch.jit.script(architectures.build(f"{factory}:tiny")), scripted)
    dataset = load_dataset(str(rgb))
    model, meta = zoo.train_or_load_config("distilled", _cfg(rgb, str(scripted)), cache_dir=tmp_path / "zoo",
                                           dataset=dataset, progress=False)
    assert isinstance(model, torch.jit.ScriptModule) and meta["val_accuracy"] >= 0
    built = architectures.build("demo", input_shape=(3, 8, 8), classes=3)
    assert type(architectures.fresh(built)) is type(built) and architectures.fresh(built).recipe == built.recipe


def test_weights_trained_elsewhere_import_as_a_checkpoint(tmp_path, rgb, factory):
    torch.manual_seed(5)
    network = architectures.build(f"{factory}:tiny")  # stands in for a network trained elsewhere
    weights = tmp_path / "mine.pt"
    torch.save(network.state_dict(), weights)
    cfg = _cfg(rgb, f"{factory}:tiny", **{"model.mean": [0.5, 0.5, 0.5], "model.std": [0.2, 0.3, 0.4]})
    dataset = load_dataset(str(rgb))
    path, meta = import_model("my-net", "normal", cfg, dataset, weights, tmp_path / "zoo")
    assert meta["origin"]["sha256"] == checkpoints.sha256_file(weights) and meta["condition"] == "normal"
    loaded, _ = checkpoints.load(path)
    mean, std = torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1), torch.tensor([0.2, 0.3, 0.4]).view(1, 3, 1, 1)
    x = dataset.test.x
    with torch.no_grad():
        assert torch.allclose(loaded(x), network.eval()((x - mean) / std), atol=1e-6)
    assert checkpoints.load_many([path], dataset)[1][0]["id"] == "my-net"


def test_an_rgb_three_class_stimulus_set_is_written_verified_and_names_its_classes(tmp_path, rgb, factory):
    dataset = load_dataset(str(rgb))
    cfg = _cfg(rgb, f"{factory}:tiny", epochs=6, **{"model.kwargs": {"width": 8}})
    models = zoo.load_zoo(["normal"], cfg, cache_dir=tmp_path / "zoo", dataset=dataset, progress=False, jobs=1)
    design = stimuli.load_design(overrides={"dataset": str(rgb), "sources_per_class": 1, "practice": 1, "catch": 1,
                                            "conditions": ["normal"], "target_rule": "all", "step": 0.05})
    manifest, files, sheet = stimuli.build(models, dataset, design, seed=0, progress=False)
    out = tmp_path / "set"
    stimuli.write(out, manifest, files, sheet)
    manifest = contracts.load_stimulus_set(out)
    assert manifest["dataset"]["classes"] == ["red", "green", "blue"]
    attacked = [s for s in manifest["stimuli"] if s["condition"] == "normal"]
    assert len(attacked) == 6 and {(s["true_label"], s["target_label"]) for s in attacked} == {(a, b) for a in range(3) for b in range(3) if a != b}
    assert all(read_png(out / s["file"]).shape == (3, 8, 8) for s in manifest["stimuli"]) and sheet.mode == "RGB"
    assert stimuli.verify(out, {m["id"]: models["normal"][0] for m in manifest["models"]}, dataset) == []


def test_twelve_classes_of_non_square_images_make_a_schema_1_1_set(tmp_path, factory):
    """More classes than digits, 6 rows × 8 columns: labels up to 11 in the manifest (schema 1.1)
    and contact-sheet tiles of the images' own shape."""
    rng = np.random.default_rng(0)
    y = np.arange(144) % 12
    x = rng.uniform(0, 0.3, (144, 6, 8))
    x[np.arange(144), y // 2, (y % 2) * 4] = 1.0  # class k: one bright pixel of its own
    path = tmp_path / "twelve.npz"
    np.savez(path, x=x.astype(np.float32), y=y, classes=np.array([f"c{k}" for k in range(12)]))
    dataset = load_dataset(str(path))
    cfg = make_config("demo", {"dataset": str(path), "architecture": f"{factory}:linear", "epochs": 8, "batch_size": 8, "lr": 0.05,
                               "model.kwargs": {"classes": 12, "pixels": 48}})
    models = zoo.load_zoo(["normal"], cfg, cache_dir=tmp_path / "zoo", dataset=dataset, progress=False, jobs=1)
    design = stimuli.load_design(overrides={"dataset": str(path), "sources_per_class": 1, "practice": 1, "catch": 1,
                                            "conditions": ["normal"], "target_rule": "next", "step": 0.05})
    manifest, files, sheet = stimuli.build(models, dataset, design, seed=0, progress=False)
    stimuli.write(tmp_path / "set", manifest, files, sheet)
    manifest = contracts.load_stimulus_set(tmp_path / "set")
    assert manifest["schema_version"] == "1.1" and len(manifest["dataset"]["classes"]) == 12
    attacked = [s for s in manifest["stimuli"] if s["condition"] == "normal"]
    assert {(s["true_label"], s["target_label"]) for s in attacked} == {(k, (k + 1) % 12) for k in range(12)}
    assert read_png(tmp_path / "set" / attacked[0]["file"]).shape == (1, 6, 8)
    zoom = 56 // 8  # the sheet draws small images 7× (contact_sheet): tiles 42 px tall, 56 px wide, in 12 columns
    assert sheet.size == (90 + 12 * (8 * zoom + 2), 14 + 2 * (6 * zoom + 2) + 6)
    assert stimuli.verify(tmp_path / "set", {m["id"]: models["normal"][0] for m in manifest["models"]}, dataset) == []


def test_a_data_set_of_more_classes_than_the_manifest_holds_is_refused_before_any_attack():
    images, labels = np.zeros((303, 1, 4, 4), np.uint8), np.arange(303) % 101
    dataset = from_arrays("many", "many.npz", images, labels, tuple(f"c{k}" for k in range(101)))
    with pytest.raises(ConfigError, match="many has 101 classes; a stimulus set holds at most 100 "
                                          "\\(manifest schema 1.1 labels are 0-99\\)"):
        stimuli.build({}, dataset, stimuli.load_design(), seed=0, progress=False)


def test_a_monai_resnet_trains_under_two_regimes_and_meets_fgsm_pgd_and_the_ensemble(tmp_path, capsys):
    shapes, models = tmp_path / "shapes", tmp_path / "models"
    subprocess.run([sys.executable, str(EXAMPLES / "make_shapes.py"), str(shapes), "--classes", "10", "--per-class", "6"], check=True)
    # The example's config, with ResNet-10 at a quarter width, one epoch and 2 PGD steps instead of ResNet-18's real size.
    small = ["--config", str(EXAMPLES / "resnet.toml"), "--set", "architecture=monai.networks.nets:resnet10",
             "--set", "model.kwargs.widen_factor=0.25", "--set", "epochs=1", "--set", "pgd-adversarial.steps=2"]
    for condition in ("normal", "pgd-adversarial"):
        assert cli.main(["train", "--condition", condition, "--dataset", str(shapes), *small, "--out", str(models)]) == 0
    sidecars = [json.loads(p.read_text()) for p in sorted(models.glob("*.json"))]
    assert [(m["condition"], m["config"]["architecture"], m["config"]["model"]["kwargs"]["spatial_dims"]) for m in sidecars] == [
        ("normal", "monai.networks.nets:resnet10", 2), ("pgd-adversarial", "monai.networks.nets:resnet10", 2)]
    assert sidecars[1]["config"]["pgd-adversarial"] == {"eps": 0.05, "step": 0.02, "steps": 2, "epoch_factor": 1}

    assert cli.main(["evaluate", "--checkpoints", *map(str, sorted(models.glob("*.pt"))), "--dataset", str(shapes), "--limit", "10",
                     "--pgd-eps", "0.05", "--out", str(tmp_path / "evaluate")]) == 0
    with open(tmp_path / "evaluate" / "robustness.csv") as fh:
        rows = {(r["evaluated"], r["attack"]) for r in csv.DictReader(fh) if r["source"] in (r["evaluated"], "-")}
    for condition in ("normal", "pgd-adversarial"):
        assert {(condition, a) for a in ("clean", "fgsm", "pgd", "apgd-ce", "ensemble")} <= rows
    assert "White-box AutoAttack ensemble" in (tmp_path / "evaluate" / "summary.md").read_text()


@pytest.mark.parametrize("case, message", [
    ("no_module", "importing no_such_pkg.models failed (ModuleNotFoundError"),
    ("library_typo", "'monai.networks.nets:resnet99': monai.networks.nets has no resnet99"),
    ("library_3d", "the network does not take 3×8×8 images"),
    ("no_function", "has no missing"),
    ("not_module", "returned a int, not a torch.nn.Module"),
    ("bad_kwargs", "calling it with {'depth': 3} failed"),
    ("classes", "returns shape (5,) per image; the data set has 3 classes"),
    ("mean_std", "mean has 2 values but std has 1"),
    ("not_script", "is not a TorchScript file"),
    ("weights_fit", "do not fit the network"),
    ("weights_none", "give --weights FILE"),
])
def test_bad_networks_give_one_line_errors(tmp_path, capsys, rgb, factory, case, message):
    arch = {"no_module": "no_such_pkg.models:net", "no_function": f"{factory}:missing", "not_module": f"{factory}:not_a_network",
            "not_script": str(rgb), "library_typo": "monai.networks.nets:resnet99",
            "library_3d": "monai.networks.nets:resnet10"}.get(case, f"{factory}:tiny")
    sets = {"bad_kwargs": ["model.kwargs={depth = 3}"], "classes": ["model.kwargs={classes = 5}"],
            # MONAI's networks are 3-D unless given spatial_dims = 2
            "library_3d": ["model.kwargs={n_input_channels = 3, num_classes = 3}"],
            "mean_std": ["model.mean=[0.5, 0.5]", "model.std=[0.2]"]}.get(case, [])
    command = ["train", "--condition", "normal"]
    if case.startswith("weights"):
        wrong = tmp_path / "wrong.pt"
        torch.save(nn.Linear(2, 2).state_dict(), wrong)
        command = ["import-model", "x", "--condition", "normal", *(["--weights", str(wrong)] if case == "weights_fit" else [])]
    argv = [*command, "--dataset", str(rgb), "--set", f"architecture={json.dumps(arch)}", "--set", "epochs=1",
            *[a for s in sets for a in ("--set", s)], "--models-dir", str(tmp_path / "zoo")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert not list((tmp_path / "zoo").glob("*.pt")) if (tmp_path / "zoo").exists() else True


def test_an_installed_packages_network_is_keyed_by_its_defining_file_and_version(tmp_path, monkeypatch):
    """A package that re-exports its factory (as monai.networks.nets does): editing the file that
    defines the network, or installing another version, gives another cache key."""
    package = tmp_path / "mynets"
    package.mkdir()
    (package / "__init__.py").write_text("from mynets.convs import tiny\n")
    (package / "convs.py").write_text("from torch import nn\n\ndef tiny(classes=10):\n    return nn.Sequential(nn.Flatten(), nn.Linear(784, classes))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = architectures.fingerprint("mynets:tiny")
    (package / "convs.py").write_text((package / "convs.py").read_text() + "# a changed network\n")
    assert architectures.fingerprint("mynets:tiny") != before
    monai = architectures.fingerprint("monai.networks.nets:resnet18")
    monkeypatch.setattr(architectures.metadata, "version", lambda name: "99.0")
    assert architectures.distribution_versions("monai.networks.nets") == ["monai==99.0"]
    assert architectures.fingerprint("monai.networks.nets:resnet18") != monai
