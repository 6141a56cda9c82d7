"""Stimulus sets: contract validity, provenance recomputed from the saved PNGs, matching, targets, CLI."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

import contracts
from contracts.settings import parse_sets
from engine import checkpoints, cli, stimuli
from engine.config import ConfigError
from engine.data import load_dataset
from engine.models import build_model
from tinycnn import trained_tiny_cnn


@pytest.fixture(scope="module")
def dataset():
    return load_dataset()


def tiny_meta(condition: str, dataset) -> dict:
    return {"id": f"{condition}-tiny", "condition": condition, "architecture": "tiny", "hyperparameters": {"steps": 60},
            "checkpoint_sha256": "0" * 64, "clean_accuracy": 0.9, "dataset_sha256": dataset.sha256, "seed": 0}


@pytest.fixture(scope="module")
def models(dataset) -> dict:
    """Two differently seeded tiny CNNs standing in for two conditions (their perturbations differ in size)."""
    return {c: (trained_tiny_cnn(seed), tiny_meta(c, dataset)) for seed, c in enumerate(("normal", "gradreg"))}


class Saturated(nn.Module):
    """A model's logits times 50: the saturated softmax of a distilled network at T = 50."""
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 50 * self.model(x)


def small_design(**changes) -> stimuli.Design:
    return stimuli.load_design(overrides={"sources_per_class": 2, "practice": 2, "catch": 3,
                                          "conditions": ["normal", "gradreg"], **changes})


def read_png(path: Path) -> torch.Tensor:
    image = Image.open(path)
    assert image.mode == "L" and image.size == (28, 28)
    return torch.from_numpy(np.array(image)).float().div(255).view(1, 1, 28, 28)


@pytest.fixture(scope="module")
def written(tmp_path_factory, models, dataset) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("sets") / "default"
    manifest, files, sheet = stimuli.build(models, dataset, small_design(), seed=3, progress=False)
    stimuli.write(out, manifest, files, sheet)
    return out, manifest


def test_written_set_follows_the_contract_and_the_matched_layout(written, dataset):
    out, _ = written
    manifest = contracts.load_stimulus_set(out)
    experimental = [s for s in manifest["stimuli"] if s["role"] == "experimental"]
    by_condition = {c: [s for s in experimental if s["condition"] == c] for c in ("normal", "gradreg", "clean")}
    assert {c: len(v) for c, v in by_condition.items()} == {"normal": 20, "gradreg": 20, "clean": 20}
    # Every condition shows the same sources with the same targets (each source is its own control).
    pairs = {c: sorted((s["source_id"], s["target_label"]) for s in v) for c, v in by_condition.items()}
    assert pairs["normal"] == pairs["gradreg"] == pairs["clean"]
    assert sorted(np.bincount([s["true_label"] for s in by_condition["clean"]])) == [2] * 10
    assert all(s["target_label"] == (s["true_label"] + 1) % 10 for s in experimental)
    sources = {s["source_index"] for s in experimental}
    others = [s for s in manifest["stimuli"] if s["role"] != "experimental"]
    assert sorted(s["role"] for s in others) == ["catch"] * 3 + ["practice"] * 2
    assert not sources & {s["source_index"] for s in others}
    assert set(dataset.test.indices.tolist()) >= sources
    assert manifest["dataset"]["split"] == "test" and manifest["config"]["attack"] == "iterated-tgsm"
    assert manifest["dataset"]["classes"] == [str(d) for d in range(10)]  # answer names by label
    assert Image.open(out / "contact_sheet.png").size[1] > 3 * 58  # rows: clean + two conditions
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_norms_and_predictions_are_those_of_the_saved_images(written, models, dataset):
    out, manifest = written
    by_id = {meta["id"]: model for model, meta in models.values()}
    pool = stimuli.pool_images(dataset)
    for s in manifest["stimuli"]:
        image = read_png(out / s["file"])
        source = pool[s["source_index"]].view(1, 1, 28, 28)
        delta = (image - source).flatten()
        assert s["norms"]["l0"] == int((delta != 0).sum())
        assert s["norms"]["l2"] == pytest.approx(float(delta.norm()), abs=1e-5)
        assert s["norms"]["linf"] == pytest.approx(float(delta.abs().max()), abs=1e-5)
        with torch.no_grad():
            probs = {mid: F.softmax(m(image), 1)[0] for mid, m in by_id.items()}
        assert s["transfer"] == {mid: int(p.argmax()) for mid, p in probs.items()}
        if s["model_id"] is not None:
            assert s["prediction"]["label"] == s["transfer"][s["model_id"]]
            assert s["prediction"]["confidence"] == pytest.approx(float(probs[s["model_id"]].max()), abs=1e-5)
            assert s["attack"]["success"] == (s["prediction"]["label"] == s["target_label"])
    attacked = [s for s in manifest["stimuli"] if s["attack"]]
    assert np.mean([s["attack"]["success"] for s in attacked]) > 0.8  # the paper's attack reaches its targets
    assert all(s["transfer"][m] == s["true_label"] for s in manifest["stimuli"] if s["role"] == "catch" for m in s["transfer"])


def test_verify_finds_every_record_that_no_longer_matches(written, models, dataset, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(written[0], out)
    by_id = {meta["id"]: model for model, meta in models.values()}
    assert stimuli.verify(out, by_id, dataset) == []
    manifest = json.loads((out / "manifest.json").read_text())
    first, second = manifest["stimuli"][0], manifest["stimuli"][1]
    image = np.array(Image.open(out / first["file"]))
    image[0, 0] = 255 - image[0, 0]
    Image.fromarray(image, mode="L").save(out / first["file"])
    second["transfer"]["normal-tiny"] = (second["transfer"]["normal-tiny"] + 1) % 10
    (out / "manifest.json").write_text(json.dumps(manifest))
    problems = stimuli.verify(out, by_id, dataset)
    assert any(first["id"] in p and "sha256" in p for p in problems) and any(first["id"] in p and "norms" in p for p in problems)
    assert any(second["id"] in p and "transfer" in p for p in problems)


def test_an_images_bytes_do_not_depend_on_the_sources_attacked_with_it(dataset):
    """Regenerating fewer sources gives the same bytes for the sources both sets hold. Attacked as one
    batch (the batch's mean loss), 4 of these 40 came out different against this saturated model."""
    models = {"distilled": (Saturated(trained_tiny_cnn(0)).eval(), tiny_meta("distilled", dataset))}

    def hashes(sources_per_class: int) -> dict[str, str]:
        design = small_design(conditions=["distilled"], sources_per_class=sources_per_class, practice=0, catch=0, clean_controls=False)
        manifest, _, _ = stimuli.build(models, dataset, design, seed=3, progress=False)
        return {s["id"]: s["sha256"] for s in manifest["stimuli"]}

    fewer, more = hashes(4), hashes(8)
    assert len(fewer) == 40 and len(more) == 80 and set(fewer) <= set(more)
    assert {k: more[k] for k in fewer} == fewer


def test_l2_matching_equalises_norms_within_two_percent_on_8_bit_images(models, dataset, tmp_path):
    manifest, files, sheet = stimuli.build(models, dataset, small_design(matching="l2"), seed=3, progress=False)
    stimuli.write(tmp_path / "matched", manifest, files, sheet)
    groups: dict[tuple, list[dict]] = {}
    for s in manifest["stimuli"]:
        if s["attack"]:
            groups.setdefault((s["source_id"], s["target_label"]), []).append(s)
    for group in groups.values():
        l2 = [s["norms"]["l2"] for s in group]
        before = [s["matching"]["norms_before"]["l2"] for s in group]
        assert max(l2) <= 1.02 * min(l2)
        smallest = int(np.argmin(before))
        assert l2[smallest] == before[smallest] and all(a <= b + 1e-6 for a, b in zip(l2, before))
        assert max(s["matching"]["scale"] for s in group) == 1.0
    assert any(max(s["matching"]["norms_before"]["l2"] for s in g) > 1.1 * min(s["matching"]["norms_before"]["l2"] for s in g)
               for g in groups.values())  # there was something to match


def test_match_l2_is_exact_for_the_smallest_and_never_leaves_the_pixel_range():
    gen = torch.Generator().manual_seed(0)
    x8 = torch.randint(0, 256, (5, 1, 28, 28), generator=gen, dtype=torch.uint8)
    adv8 = torch.randint(0, 256, (3, 5, 1, 28, 28), generator=gen, dtype=torch.uint8)
    matched, scale = stimuli.match_l2(x8, adv8)
    dist = (matched.float() - x8.float()).flatten(2).norm(dim=2)
    assert (dist.amax(0) <= 1.02 * dist.amin(0)).all() and (scale <= 1).all()
    smallest = (adv8.float() - x8.float()).flatten(2).norm(dim=2).argmin(0)
    assert all(torch.equal(matched[smallest[k], k], adv8[smallest[k], k]) for k in range(5))


def test_target_rules():
    gen = torch.Generator().manual_seed(0)
    y = torch.tensor([0, 3, 9])
    which, t = stimuli.assign_targets(y, "all", gen)
    assert which.tolist() == [0] * 9 + [1] * 9 + [2] * 9
    assert all(sorted(t[which == i].tolist()) == sorted(set(range(10)) - {int(y[i])}) for i in range(3))
    assert stimuli.assign_targets(y, "next", gen)[1].tolist() == [1, 4, 0]
    draw = lambda: stimuli.assign_targets(y, "random", torch.Generator().manual_seed(5))[1]  # noqa: E731
    assert torch.equal(draw(), draw()) and (draw() != y).all()


def test_all_targets_layout_and_jsma(models, dataset):
    design = small_design(sources_per_class=1, target_rule="all", attack="tgsm", clean_controls=False, practice=0, catch=0)
    manifest, _, _ = stimuli.build(models, dataset, design, seed=0, progress=False)
    contracts.validate_manifest(manifest)
    assert len(manifest["stimuli"]) == 2 * 10 * 9 and manifest["stimuli"][0]["attack"]["params"] == {"eps": 0.1}
    design = small_design(sources_per_class=1, attack="jsma", gamma=0.05, clean_controls=False, practice=0, catch=0)
    manifest, _, _ = stimuli.build(models, dataset, design, seed=0, progress=False)
    assert all(s["attack"]["params"] == {"theta": 1.0, "gamma": 0.05} and s["norms"]["l0"] <= 40 for s in manifest["stimuli"])


def test_writing_refuses_a_non_empty_folder_and_never_leaves_half_a_set(written, tmp_path):
    _, manifest = written
    out = tmp_path / "set"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        stimuli.write(out, manifest, {}, Image.new("L", (1, 1)))
    with pytest.raises(contracts.ContractError):  # images missing: validation fails before publishing
        stimuli.write(out, manifest, {}, Image.new("L", (1, 1)), force=True)
    assert [p.name for p in tmp_path.iterdir()] == ["set"] and (out / "keep.txt").exists()


def test_design_errors_are_one_line_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown key design.sources .*allowed there: dataset, split"):
        stimuli.load_design(overrides={"sources": 3})
    with pytest.raises(ConfigError, match="design.target_rule = 'nearest' .*'next', 'all' or 'random'"):
        stimuli.load_design(overrides={"target_rule": "nearest"})
    with pytest.raises(ConfigError, match="unknown condition"):
        stimuli.load_design(overrides={"conditions": ["normal", "robust"]})
    with pytest.raises(ConfigError, match="design.iterations = 2.5"):
        stimuli.load_design(overrides={"iterations": 2.5})
    assert stimuli.load_design(overrides={"attack": "itgsm"}).attack == "iterated-tgsm"  # the old name still reads
    assert stimuli.load_design().conditions == ("normal", "adversarial", "distilled", "gradreg", "pgd-adversarial", "trades")
    assert stimuli.load_design(name="paper").conditions == ("normal", "adversarial", "distilled", "gradreg")
    with pytest.raises(ConfigError, match="unknown design 'papr'; choose one of six-defenses, paper"):
        stimuli.load_design(name="papr")
    (tmp_path / "d.toml").write_text('matching = "l2"\nsources_per_class = 3\n')
    design = stimuli.load_design(tmp_path / "d.toml", {"step": 0.05})
    assert (design.matching, design.sources_per_class, design.step, design.iterations) == ("l2", 3, 0.05, 10)
    assert parse_sets(['conditions=["normal"]', "target_rule=all", "train.gradreg.lambda=3e2"], "design", ("design", "train"))[1] == {
        "design": {"conditions": ["normal"], "target_rule": "all"}, "train": {"gradreg": {"lambda": 300.0}}}


def briefly_trained_demo_cnn(dataset, steps: int = 40) -> nn.Module:
    torch.manual_seed(0)
    model = build_model("demo")
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        batch = torch.randint(len(dataset.train.y), (64,), generator=gen)
        optimiser.zero_grad()
        F.cross_entropy(model(dataset.train.x[batch]), dataset.train.y[batch]).backward()
        optimiser.step()
    return model.eval()


def checkpoint_meta(condition: str, dataset, **changes) -> dict:
    return {"id": f"{condition}-test", "condition": condition, "architecture": "demo", "hyperparameters": {"steps": 40},
            "clean_accuracy": 0.9, "dataset_sha256": dataset.sha256, "seed": 0, **changes}


def test_cli_writes_a_set_from_given_checkpoints(tmp_path, dataset, capsys, monkeypatch):
    """End to end through `engine generate-stimuli --models` (the zoo's training is its own tests' business)."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    model = briefly_trained_demo_cnn(dataset)
    paths = []
    for condition in ("normal", "gradreg"):
        checkpoints.save(model, checkpoint_meta(condition, dataset), tmp_path / f"{condition}.pt")
        paths.append(str(tmp_path / f"{condition}.pt"))
    out = tmp_path / "cli-set"
    argv = ["generate-stimuli", "--out", str(out), "--models", *paths, "--quiet", "--set", 'conditions=["normal","gradreg"]',
            "--set", "sources_per_class=1", "--set", "practice=1", "--set", "catch=1", "--set", "train.gradreg.lambda=300"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "normal 10, gradreg 10, clean 10" in printed
    manifest = contracts.load_stimulus_set(out)
    assert [m["id"] for m in manifest["models"]] == ["normal-test", "gradreg-test"]
    assert manifest["created_at"] == "2023-11-14T22:13:20Z"  # pinned by SOURCE_DATE_EPOCH
    config = json.loads((out / "manifest.json").read_text())["config"]
    assert config["preset"] == "demo" and config["train"]["gradreg"]["lambda"] == 300 and config["sources_per_class"] == 1
    assert cli.main(["verify", str(out), "--models-dir", str(tmp_path)]) == 0
    assert "all 32 stimuli match" in capsys.readouterr().out
    assert cli.main(argv) == 2  # not empty now
    assert "pass --force" in capsys.readouterr().err
    for bad, message in [("catch=-1", "design.catch = -1 (from --set)"), ("train.trades.beta=x", "train.trades.beta = 'x' (from --set)")]:
        assert cli.main([*argv, "--force", "--set", bad]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    assert cli.main([*argv, "--force"]) == 2
    assert capsys.readouterr().err.strip() == ("engine generate-stimuli: error: SOURCE_DATE_EPOCH must be whole seconds "
                                               "since 1970, not 'yesterday'")


def test_verify_accepts_a_faithful_retrain_and_names_what_differs_otherwise(tmp_path, dataset, capsys):
    model = briefly_trained_demo_cnn(dataset)
    checkpoints.save(model, checkpoint_meta("normal", dataset), tmp_path / "made" / "normal.pt")
    out = tmp_path / "set"
    assert cli.main(["generate-stimuli", "--out", str(out), "--models", str(tmp_path / "made" / "normal.pt"), "--quiet",
                     "--set", 'conditions=["normal"]', "--set", "sources_per_class=1", "--set", "practice=0",
                     "--set", "catch=0"]) == 0
    capsys.readouterr()

    def run_verify(directory: Path) -> tuple[int, str]:
        status = cli.main(["verify", str(out), "--models-dir", str(directory)])
        captured = capsys.readouterr()
        return status, captured.out + captured.err

    # Retrained the same way, in another folder: the same bytes, found by sha256.
    checkpoints.save(briefly_trained_demo_cnn(dataset), checkpoint_meta("normal", dataset), tmp_path / "again" / "normal.pt")
    assert run_verify(tmp_path / "again") == (0, f"{out}: all 20 stimuli match their hashes, norms and every model's predictions\n")
    # Same settings, other bytes (here: one weight nudged by 1e-7), same records: accepted, said so.
    nudged = briefly_trained_demo_cnn(dataset)
    with torch.no_grad():
        next(nudged.parameters()).view(-1)[0] += 1e-7
    checkpoints.save(nudged, checkpoint_meta("normal", dataset), tmp_path / "nudged" / "normal.pt")
    status, text = run_verify(tmp_path / "nudged")
    assert status == 0 and "normal.pt has the recorded settings, seed and data but other bytes" in text
    assert "1 model(s) retrained faithfully" in text
    # Same settings, other weights that change the records: each changed record is listed.
    checkpoints.save(briefly_trained_demo_cnn(dataset, steps=5), checkpoint_meta("normal", dataset), tmp_path / "short" / "normal.pt")
    status, text = run_verify(tmp_path / "short")
    assert status == 2 and "other bytes" in text and ": prediction recorded" in text
    # Other settings: not used; every setting that differs is named.
    checkpoints.save(nudged, checkpoint_meta("normal", dataset, seed=1, hyperparameters={"steps": 5}), tmp_path / "other" / "normal.pt")
    status, text = run_verify(tmp_path / "other")
    assert status == 2 and "the closest, normal.pt, was trained otherwise: hyperparameters.steps 40 → 5; seed 0 → 1" in text
    status, text = run_verify(tmp_path / "nothing")
    assert status == 2 and "none of condition normal" in text
