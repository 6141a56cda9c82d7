"""The two contracts: the example documents pass and each broken one fails for its stated reason."""
import json
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

import contracts

EXAMPLES = Path(contracts.__file__).parent / "examples"


def test_valid_manifest_example_passes():
    contracts.validate_manifest(json.loads((EXAMPLES / "manifest.valid.json").read_text()))


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("manifest.broken-*.json")), ids=lambda p: p.stem)
def test_broken_manifest_examples_fail(path):
    doc = json.loads(path.read_text())
    with pytest.raises(contracts.ContractError) as info:
        contracts.validate_manifest(doc)
    assert len(info.value.problems) == 1, info.value.problems


def test_manifest_cross_checks_clean_images_and_duplicate_ids():
    doc = json.loads((EXAMPLES / "manifest.valid.json").read_text())
    doc["stimuli"][2]["model_id"] = "normal-s0"  # a clean image cannot belong to a model
    doc["stimuli"][1]["id"] = doc["stimuli"][0]["id"]
    with pytest.raises(contracts.ContractError) as info:
        contracts.validate_manifest(doc)
    assert any("duplicate" in p for p in info.value.problems)
    assert any("clean images have model_id null" in p for p in info.value.problems)


def test_manifest_labels_must_name_one_of_its_classes():
    doc = json.loads((EXAMPLES / "manifest.valid.json").read_text())
    doc["dataset"]["classes"] = [f"class {k}" for k in range(9)]  # labels 0-8: the example's 7s and 8s have names
    contracts.validate_manifest(doc)
    doc["dataset"]["classes"] = doc["dataset"]["classes"][:8]
    with pytest.raises(contracts.ContractError) as info:
        contracts.validate_manifest(doc)
    named = [f"stimuli/{i}: {key} 8 has no class name (dataset.classes lists 8)"
             for i, keys in enumerate([("target_label", "prediction/label"), ("target_label", "prediction/label"), ("target_label",), ()])
             for key in (*keys, "transfer/normal-s0")]
    assert info.value.problems == named


def test_schema_1_1_takes_more_than_ten_classes_and_1_0_stays_digits():
    doc = json.loads((EXAMPLES / "manifest.valid.json").read_text())
    doc["dataset"]["classes"] = [f"class {k}" for k in range(12)]
    doc["stimuli"][0]["target_label"] = doc["stimuli"][0]["prediction"]["label"] = 11
    with pytest.raises(contracts.ContractError) as info:  # a 1.0 manifest numbers the digits' ten at most
        contracts.validate_manifest(doc)
    assert info.value.problems == ["dataset/classes: schema 1.0 numbers at most 10 classes, not 12 (more need schema_version 1.1)"]
    doc["schema_version"] = "1.1"
    contracts.validate_manifest(doc)
    assert contracts.class_count(doc) == 12
    del doc["dataset"]["classes"]  # no names: the digits, in any version
    with pytest.raises(contracts.ContractError, match="target_label 11 is not a digit 0-9 \\(a set without dataset.classes\\)"):
        contracts.validate_manifest(doc)
    doc["dataset"]["classes"] = [f"class {k}" for k in range(101)]
    with pytest.raises(contracts.ContractError, match="dataset/classes: .* is too long"):
        contracts.validate_manifest(doc)
    doc["schema_version"] = "2.0"
    with pytest.raises(contracts.ContractError, match="schema_version: '2.0' is not one of"):
        contracts.validate_manifest(doc)


def _write_set(directory: Path) -> dict:
    doc = json.loads((EXAMPLES / "manifest.valid.json").read_text())
    (directory / "images").mkdir(parents=True)
    for i, stim in enumerate(doc["stimuli"]):
        path = directory / stim["file"]
        Image.new("L", (28, 28), color=i * 40).save(path)
        stim["sha256"] = contracts.sha256_file(path)
    (directory / "manifest.json").write_text(json.dumps(doc))
    return doc


def test_stimulus_set_checks_every_image_hash(tmp_path):
    doc = _write_set(tmp_path)
    assert contracts.load_stimulus_set(tmp_path)["stimuli"] == doc["stimuli"]
    Image.new("L", (28, 28), color=255).save(tmp_path / doc["stimuli"][1]["file"])
    (tmp_path / doc["stimuli"][2]["file"]).unlink()
    with pytest.raises(contracts.ContractError) as info:
        contracts.load_stimulus_set(tmp_path)
    assert [p.split(":")[0] for p in info.value.problems] == ["stimulus stim-0002", "stimulus stim-0003"]
    assert "does not match its sha256" in str(info.value) and "is missing" in str(info.value)


def test_valid_responses_pass_as_csv_and_as_rows():
    frame = contracts.validate_responses_frame(pd.read_csv(EXAMPLES / "responses.valid.csv"))
    assert list(frame.columns) == contracts.response_columns()
    assert frame["is_catch"].tolist() == [False, False, False, False, True]
    rows = [{k: (None if pd.isna(v) else v) for k, v in r.items()} for r in frame.astype(object).to_dict("records")]
    for r in rows:
        for k in ("trial_index", "true_label", "target_label", "response_label", "response_rating", "rating_min", "rating_max", "catch_failed", "norm_l0"):
            r[k] = None if r[k] is None else int(r[k])
        r["attack"] = r["attack"] or None
    contracts.validate_response_rows(rows)
    rows[1]["response_rating"] = 9
    with pytest.raises(contracts.ContractError, match="outside the scale"):
        contracts.validate_response_rows(rows)


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("responses.broken-*.csv")), ids=lambda p: p.stem)
def test_broken_response_examples_fail(path):
    with pytest.raises(contracts.ContractError) as info:
        contracts.validate_responses_frame(pd.read_csv(path))
    reason = path.stem.removeprefix("responses.broken-").replace("-", " ")
    keyword = {"missing column": "missing column", "duplicate answer": "duplicate",
               "rating outside scale": "outside the rating scale", "unknown condition": "are not one of"}[reason]
    assert keyword in str(info.value)


def test_vocabulary_is_read_from_the_schemas_and_both_contracts_agree():
    response_conditions = contracts.load_schema(contracts.RESPONSE_SCHEMA)["properties"]["condition"]["enum"]
    assert list(contracts.CONDITIONS) == response_conditions and contracts.CONDITIONS[-1] == contracts.CLEAN
    assert {"normal", "gradreg", "pgd-adversarial", "trades"} <= set(contracts.DEFENSES)
    assert set(contracts.DISPLAY_NAMES) == set(contracts.CONDITIONS)  # every condition has a display name
    assert contracts.display_name("gradreg") == "Gradient regularization" and contracts.display_name("new") == "new"
    assert contracts.TASKS == ("label", "rate") and contracts.ROLES == ("experimental", "practice", "catch")


def test_settings_grammar_layers_dotted_keys_and_one_line_errors(tmp_path):
    from pydantic import BaseModel, ConfigDict, Field

    from contracts.settings import SettingsError, parse_sets, read_toml, resolve

    class Inner(BaseModel):
        model_config = ConfigDict(extra="forbid")
        rate: float = Field(1.0, gt=0)
        mode: str = "a"

    class Doc(BaseModel):
        model_config = ConfigDict(extra="forbid")
        main: Inner = Inner()
        other: Inner = Inner()

    path = tmp_path / "s.toml"
    path.write_text('rate = 2.0\n[other]\nmode = "b"\n')
    layers = [read_toml(path, "main", ("main", "other")), parse_sets(["other.rate=3", 'mode="quoted"'], "main", ("main", "other"))]
    doc = resolve(Doc, layers)
    assert (doc.main.rate, doc.main.mode, doc.other.rate, doc.other.mode) == (2.0, "quoted", 3.0, "b")
    for sets, message in [(["main.rate=-1"], "main.rate = -1 (from --set): Input should be greater than 0"),
                          (["main.speed=1"], "unknown key main.speed (from --set); allowed there: rate, mode"),
                          (["rate"], "--set expects KEY=VALUE")]:
        with pytest.raises(SettingsError) as info:
            resolve(Doc, [parse_sets(sets, "main", ("main", "other"))])
        assert message in str(info.value) and "\n" not in str(info.value)
    path.write_text("rate = 0\n")
    with pytest.raises(SettingsError, match=f"main.rate = 0 \\(from {path}\\)"):
        resolve(Doc, [read_toml(path, "main", ("main", "other"))])
