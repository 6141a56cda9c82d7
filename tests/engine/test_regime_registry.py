"""A defense is one module: a toy regime registered here alone is trained, swept, listed and attacked.

Nothing outside this file knows the toy regime. Its name is not in the contracts' vocabulary, so
the test adds it to the loaded schema for the set's validation, as the one schema line would.
"""
from __future__ import annotations

import json

import pytest
import torch.nn.functional as F
from pydantic import Field

import contracts
from engine import cli, regimes, stimuli, zoo
from engine.config import make_config
from engine.data import load_dataset
from engine.sweep import sweep

TINY = {"epochs": 1, "train_size": 1000, "lr": 0.01}  # ~70% clean: enough for one correct source per class


class ToyParams(regimes.Params):
    smoothing: float = Field(0.1, ge=0, le=1, description="label smoothing of the cross-entropy")


def toy_loss(model, x, y, params: ToyParams):
    return F.cross_entropy(model(x), y, label_smoothing=params.smoothing)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    regime = regimes.register(regimes.Regime(name="toy-smooth", summary="label-smoothed cross-entropy", paper="a test",
                                             params=ToyParams, loss=toy_loss, sweep_field="smoothing"))
    yield regime, tmp_path_factory.mktemp("models")
    regimes.unregister(regime.name)


def test_the_toy_regime_trains_with_its_own_config_table_and_cache_key(toy):
    _, models_dir = toy
    cfg = make_config(overrides={**TINY, "toy-smooth.smoothing": 0.2})
    assert cfg.params("toy-smooth").smoothing == 0.2 and cfg.params("gradreg").lambda_ == 100
    model, meta = zoo.train_or_load_config("toy-smooth", cfg, cache_dir=models_dir, progress=False)
    assert meta["condition"] == "toy-smooth" and meta["hyperparameters"]["toy-smooth"] == {"smoothing": 0.2}
    assert meta["config"]["toy-smooth"] == {"smoothing": 0.2} and not model.training
    # Its field changes its key only.
    other = make_config(overrides={**TINY, "toy-smooth.smoothing": 0.3})
    assert zoo.cache_key("toy-smooth", other, "x", 0) != zoo.cache_key("toy-smooth", cfg, "x", 0)
    assert zoo.cache_key("normal", other, "x", 0) == zoo.cache_key("normal", cfg, "x", 0)


def test_the_toy_regime_is_swept_and_listed_in_help(toy, capsys):
    _, models_dir = toy
    rows, chosen = sweep("toy-smooth", [0.01, 0.1], make_config(overrides=TINY), load_dataset(), cache_dir=models_dir,
                         max_drop=1.0, progress=False)
    assert [r["value"] for r in rows] == [0.01, 0.1] and chosen in rows
    _, largest = sweep("toy-smooth", [0.01, 0.1], make_config(overrides=TINY), load_dataset(), cache_dir=models_dir,
                       max_drop=1.0, progress=False, pick="largest")  # the same, cached models
    assert largest["value"] == 0.1 and largest["eligible"]
    pgd_rows, _ = sweep("toy-smooth", [0.1], make_config(overrides=TINY), load_dataset(), cache_dir=models_dir,
                        max_drop=1.0, progress=False, score="white-box-pgd")  # the adversarial-training papers' criterion
    assert pgd_rows[0]["val_pgd40_eps0.3"] < pgd_rows[0]["val_clean"] and "val_fgsm_transfer_eps0.3" not in pgd_rows[0]
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())  # argparse rewraps lines
    assert "toy-smooth: label-smoothed cross-entropy" in help_text and "toy-smooth.{smoothing}" in help_text


def test_stimuli_are_made_against_the_toy_regime(toy, tmp_path, monkeypatch):
    _, models_dir = toy
    dataset = load_dataset()
    models = zoo.load_zoo(["normal", "toy-smooth"], make_config(overrides=TINY), cache_dir=models_dir, dataset=dataset,
                          progress=False, jobs=1)
    design = stimuli.load_design(overrides={"conditions": ["normal", "toy-smooth"], "sources_per_class": 1, "practice": 1,
                                            "catch": 1, "iterations": 3})
    manifest, files, sheet = stimuli.build(models, dataset, design, seed=0, progress=False)
    defense = contracts.load_schema(contracts.MANIFEST_SCHEMA)["$defs"]["defense"]
    monkeypatch.setitem(defense, "enum", [*defense["enum"], "toy-smooth"])
    stimuli.write(tmp_path / "set", manifest, files, sheet)
    written = json.loads((tmp_path / "set" / "manifest.json").read_text())
    toy_images = [s for s in written["stimuli"] if s["condition"] == "toy-smooth"]
    assert len(toy_images) == 10 and {m["condition"] for m in written["models"]} == {"normal", "toy-smooth"}
