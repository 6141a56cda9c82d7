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
