"""Checkpoints and the zoo's cache: bit-identical reloads, hash and architecture checks, one-line CLI errors."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import engine.zoo as zoo
from engine import checkpoints
from engine.config import ConfigError, make_config
from engine.models import build_model

TINY = {"epochs": 1, "train_size": 128}
REQUIRED = {"id", "condition", "architecture", "hyperparameters", "checkpoint_sha256", "clean_accuracy",
            "dataset_sha256", "seed", "git_commit"}


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    cache = tmp_path_factory.mktemp("models")
    model, meta = zoo.train_or_load("normal", seed=3, cache_dir=cache, overrides=TINY, progress=False)
    return cache, model, meta


def test_train_or_load_metadata(cached):
    cache, model, meta = cached
    assert REQUIRED <= set(meta)
    assert meta["id"] == "normal-demo-s3" and meta["architecture"] == "demo" and meta["seed"] == 3
    assert 0 <= meta["clean_accuracy"] <= 1 and meta["hyperparameters"]["epochs"] == 1
    assert "gradreg" not in meta["hyperparameters"] and meta["config"]["dataset"] == "mnist-5k"
    assert not model.training
    (pt,) = cache.glob("*.pt")
    assert json.loads(pt.with_suffix(".json").read_text()) == meta


def test_second_call_reuses_the_checkpoint_bit_identically(cached, monkeypatch):
    cache, model, meta = cached
    monkeypatch.setattr(zoo, "train", lambda *a, **k: pytest.fail("retrained instead of reusing the checkpoint"))
    again, meta2 = zoo.train_or_load("normal", seed=3, cache_dir=cache, overrides=TINY, progress=False)
    # The same metadata down to key order: a stimulus manifest quoting it has the same bytes either way.
    assert json.dumps(meta2) == json.dumps(meta)
    a, b = model.state_dict(), again.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.rand(8, 1, 28, 28)
    assert torch.equal(model(x), again(x))


def test_other_config_or_seed_means_another_checkpoint(cached):
    cfg = make_config(overrides=TINY)
    keys = {zoo.cache_key("normal", cfg, "abc", 0), zoo.cache_key("normal", cfg, "abc", 1),
            zoo.cache_key("normal", cfg, "abd", 0), zoo.cache_key("gradreg", cfg, "abc", 0),
            zoo.cache_key("normal", make_config(overrides={**TINY, "lr": 0.01}), "abc", 0)}
    assert len(keys) == 5
    assert zoo.cache_key("normal", make_config(overrides={**TINY, "device": "auto"}), "abc", 0) in keys
    # A regime's own field changes only that regime's key.
    other = make_config(overrides={**TINY, "gradreg.lambda": 5.0})
    assert zoo.cache_key("normal", other, "abc", 0) in keys and zoo.cache_key("gradreg", other, "abc", 0) not in keys


def copy_checkpoint(cached, tmp_path):
    (pt,) = cached[0].glob("*.pt")
    dst = tmp_path / pt.name
    dst.write_bytes(pt.read_bytes())
    dst.with_suffix(".json").write_text(pt.with_suffix(".json").read_text())
    return dst


def test_corrupted_checkpoint_is_refused(cached, tmp_path):
    pt = copy_checkpoint(cached, tmp_path)
    data = bytearray(pt.read_bytes())
    data[-100] ^= 1
    pt.write_bytes(bytes(data))
    with pytest.raises(checkpoints.CheckpointError, match="sha256 .* was changed or corrupted"):
        checkpoints.load(pt)


def test_wrong_architecture_is_refused(cached, tmp_path):
    pt = copy_checkpoint(cached, tmp_path)
    with pytest.raises(checkpoints.CheckpointError, match="holds a 'demo' model, expected architecture 'paper'"):
        checkpoints.load(pt, architecture="paper")
    # A sidecar that lies about the architecture: the weights do not fit.
    meta = json.loads(pt.with_suffix(".json").read_text())
    checkpoints.save(build_model("demo"), {**meta, "architecture": "paper"}, pt)
    with pytest.raises(checkpoints.CheckpointError, match="does not fit architecture 'paper'"):
        checkpoints.load(pt)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(checkpoints.CheckpointError, match="does not exist"):
        checkpoints.load(tmp_path / "nope.pt")


def test_config_layers_and_errors(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('epochs = 3\n[gradreg]\nlambda = 500.0\n')
    cfg = make_config("demo", {"epochs": "4"}, toml)
    assert (cfg.epochs, cfg.params("gradreg").lambda_, cfg.batch_size) == (4, 500.0, 64)
    assert make_config("paper").batch_size == 256 and make_config("paper").params("gradreg").lambda_ == 10 ** 4.75
    toml.write_text('[train]\nepochs = 2\n[train.gradreg-uniform]\nlambda = 7\n')  # the same keys under [train]
    cfg = make_config("demo", None, toml)
    assert (cfg.epochs, cfg.params("gradreg-uniform").lambda_) == (2, 7.0)
    for overrides, message in [({"gradreg.lambda": -1}, "train.gradreg.lambda = -1 .*greater than or equal to 0"),
                               ({"epochs": "many"}, "train.epochs = 'many'"),
                               ({"colour": 1}, "unknown key train.colour .*allowed there: architecture"),
                               ({"architecture": "vgg"}, "unknown architecture 'vgg'; give paper, demo")]:
        with pytest.raises(ConfigError, match=message):
            make_config("demo", overrides)
    with pytest.raises(ConfigError, match="unknown preset"):
        make_config("huge")
    toml.write_text("epochs = = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        make_config("demo", None, toml)
    toml.write_text('[gradreg]\nlambda = "big"\n')
    with pytest.raises(ConfigError, match=f"train.gradreg.lambda = 'big' \\(from {toml}\\)"):  # names the file
        make_config("demo", None, toml)


@pytest.mark.parametrize("argv, message", [
    (["train", "--condition", "bogus"], "unknown regime 'bogus'"),
    (["train", "--set", "train.gradreg.lambda=-3"], "train.gradreg.lambda = -3 (from --set)"),
    (["train", "--set", "trades.beta"], "--set expects KEY=VALUE"),
    (["train", "--dataset", "/no/such/dir"], "does not exist"),
    (["sweep", "--grid", "1:x"], "--grid expects"),
    (["sweep", "--max-drop", "3"], "--max-drop is a fraction of accuracy between 0 and 1 (0.03 = 3 points), got 3"),
    (["sweep", "--condition", "trades", "--field", "gamma"], "trades has no field 'gamma'; its fields: beta, eps, step, steps"),
    (["sweep", "--condition", "normal"], "normal has no field to sweep"),
    (["sweep", "--values", "1,,2"], "--values expects numbers separated by commas"),
])
def test_cli_bad_input_is_one_line(argv, message, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "engine", *argv, "--out", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1 and message in proc.stderr


def test_load_zoo_trains_missing_models_in_parallel_processes_with_the_same_weights(tmp_path):
    """Two models trained at once in worker processes (one thread each) equal, byte for byte, the
    same models trained here one after the other by a process that runs torch on two threads:
    a checkpoint does not depend on how its training was started."""
    cfg = make_config(overrides=TINY)
    parallel = zoo.load_zoo(["normal", "gradreg"], cfg, seed=5, cache_dir=tmp_path / "parallel", progress=False, jobs=2)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the float sums of a convolution's backward pass follow the thread count
    try:
        serial = zoo.load_zoo(["normal", "gradreg"], cfg, seed=5, cache_dir=tmp_path / "serial", progress=False, jobs=1)
    finally:
        torch.set_num_threads(threads)
    for condition in ("normal", "gradreg"):
        ours, theirs = parallel[condition][0].state_dict(), serial[condition][0].state_dict()
        assert all(torch.equal(ours[k], theirs[k]) for k in ours), condition
        assert parallel[condition][1]["checkpoint_sha256"] == serial[condition][1]["checkpoint_sha256"], condition
        assert parallel[condition][1]["condition"] == condition
