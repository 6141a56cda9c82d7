"""The stimulus attack registry: the built-ins behave as the attack functions they wrap, and a
user's attack plugs in by import path with validated parameters that the manifest records."""
from __future__ import annotations

import pytest
import torch

import contracts
from contracts.settings import SettingsError
from engine import attacks, stimuli, stimulus_attacks
from engine.data import load_dataset
from tinycnn import digits, trained_tiny_cnn

USER_ATTACK = '''
from pydantic import Field
from engine import attacks
from engine.stimulus_attacks import Attack, Params

class Knobs(Params):
    eps: float = Field(0.3, gt=0, le=1)

def run(model, x, target, p):
    return attacks.tgsm(model, x, target, p["eps"] / 2)

ATTACK = Attack(name="half-user-step", summary="a test attack", paper="none", run=run, params=Knobs)
NOT_AN_ATTACK = 3
'''


def _design(**changes) -> stimuli.Design:
    return stimuli.load_design(overrides={"sources_per_class": 1, "practice": 0, "catch": 0, "conditions": ["normal"], **changes})


@pytest.mark.parametrize("changes, expected", [
    ({}, lambda m, x, t: attacks.itgsm(m, x, t, 0.1, 10, None, None)[0]),
    ({"attack": "itgsm", "eps": 0.3, "stop_confidence": 0.9}, lambda m, x, t: attacks.itgsm(m, x, t, 0.1, 10, 0.3, 0.9)[0]),
    ({"attack": "tgsm", "step": 0.2}, lambda m, x, t: attacks.tgsm(m, x, t, 0.2)),
    ({"attack": "jsma", "theta": 1.0, "gamma": 0.05}, lambda m, x, t: attacks.jsma(m, x, t, 1.0, 0.05)[0]),
])
def test_built_in_attacks_run_the_functions_they_wrap(changes, expected):
    model, (_, _, x, y) = trained_tiny_cnn(0), digits()
    x, target = x[:6], (y[:6] + 1) % 10
    design = _design(**changes)
    assert torch.equal(stimuli.generate.run_attack(model, x, target, design), expected(model, x, target))


def test_a_users_attack_plugs_in_by_import_path_and_the_manifest_records_it(tmp_path):
    path = tmp_path / "my_attacks.py"
    path.write_text(USER_ATTACK)
    try:
        design = _design(attack=f"{path}:ATTACK", attack_kwargs={"eps": 0.2})
        assert design.attack_params() == {"eps": 0.2} and "half-user-step" in stimulus_attacks.names()
        model, (_, _, x, y) = trained_tiny_cnn(0), digits()
        assert torch.equal(stimuli.generate.run_attack(model, x[:4], y[:4], design), attacks.tgsm(model, x[:4], y[:4], 0.1))
        meta = {"id": "normal-tiny", "condition": "normal", "architecture": "tiny", "hyperparameters": {},
                "checkpoint_sha256": "0" * 64, "clean_accuracy": 0.9}
        manifest, files, sheet = stimuli.build({"normal": (model, meta)}, load_dataset(), design, seed=0, progress=False)
        attacked = [s for s in manifest["stimuli"] if s["attack"]]
        assert attacked and all(s["attack"]["name"] == "half-user-step" and s["attack"]["params"] == {"eps": 0.2} for s in attacked)
        contracts.validate_manifest(manifest)
        with pytest.raises(SettingsError, match=r"attack_kwargs.eps: Input should be less than or equal to 1 \(attack half-user-step takes: eps\)"):
            _design(attack=f"{path}:ATTACK", attack_kwargs={"eps": 2})
        with pytest.raises(SettingsError, match="is a int, not an engine.stimulus_attacks.Attack"):
            _design(attack=f"{path}:NOT_AN_ATTACK")
    finally:
        stimulus_attacks.unregister("half-user-step")


@pytest.mark.parametrize("changes, message", [
    ({"attack": "deepfool"}, "unknown attack 'deepfool'; choose from iterated-tgsm"),
    ({"attack": "no_such_module:ATTACK"}, "importing no_such_module failed"),
    ({"attack": "jsma", "attack_kwargs": {"theta": 1}}, "attack jsma takes its parameters from the design's own fields"),
])
def test_bad_attacks_are_one_line_design_errors(changes, message):
    with pytest.raises(SettingsError, match=message) as raised:
        _design(**changes)
    assert "\n" not in str(raised.value)
