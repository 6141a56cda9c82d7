"""Families come from the declared design: a declared condition without answers is reported, its
contrasts are not estimable and still count in their Holm family; R is compared at the same adjustment."""
import json

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.multitest import multipletests

import contracts
from analysis.design import declared_conditions
from analysis.rcheck import same_decisions
from analysis.report import main
from analysis.simulate import simulate
from pathlib import Path

EXAMPLES = Path(contracts.__file__).parent / "examples"
DICTIONARY_ROW = "file,column,type,description\nresponses.csv,condition,\"one of: normal, adversarial, distilled, gradreg\",x\n"


def test_a_declared_condition_without_answers_keeps_its_place_in_the_holm_family(tmp_path):
    responses = simulate("nested", participants=12, sources=32, seed=2)
    csv = tmp_path / "responses.csv"
    responses[responses["condition"] != "distilled"].to_csv(csv, index=False)
    (tmp_path / "data_dictionary.csv").write_text(DICTIONARY_ROW)
    assert main([str(csv), "--out", str(tmp_path / "out"), "--bootstrap", "20"]) == 0
    table = pd.read_csv(tmp_path / "out" / "contrasts_target.csv").set_index("contrast")
    assert table.loc["distilled − normal", "note"].startswith("not estimable (no analysable answers in distilled")
    primary = table[table["family"] == "primary"]
    assert len(primary) == 3 and len(table[table["family"] == "secondary"]) == 3
    raw = primary["p"].fillna(1.0).to_numpy()  # the missing test counts as one that never rejects
    expected = multipletests(raw, method="holm")[1]
    np.testing.assert_allclose(primary["p_holm"].dropna(), expected[primary["p"].notna().to_numpy()], rtol=1e-12)
    assert (primary["p_holm"].dropna() >= multipletests(primary["p"].dropna(), method="holm")[1] - 1e-15).all()
    page = (tmp_path / "out" / "report.html").read_text()
    assert "declared condition distilled has no analysable answers" in page


def test_declared_conditions_come_from_config_then_manifest_then_dictionary(tmp_path):
    config = tmp_path / "a.toml"
    config.write_text('[design]\nconditions = ["gradreg", "normal", "clean"]\n')
    assert declared_conditions(config, None, tmp_path / "r.csv", ["normal"]).conditions == ("normal", "gradreg")
    manifest = EXAMPLES / "manifest.valid.json"
    conditions = {s["condition"] for s in json.loads(manifest.read_text())["stimuli"]} - {"clean"}
    assert set(declared_conditions(None, manifest, tmp_path / "r.csv", ["normal"]).conditions) == conditions
    (tmp_path / "data_dictionary.csv").write_text(DICTIONARY_ROW)
    assert declared_conditions(None, None, tmp_path / "r.csv", ["normal"]).conditions == ("normal", "adversarial", "distilled", "gradreg")
    found = declared_conditions(None, None, "sqlite:///x.sqlite", ["gradreg", "normal"])
    assert found.conditions == ("normal", "gradreg") and found.source.startswith("the data")
    config.write_text('[design]\nconditions = ["normal", "robust"]\n')
    with pytest.raises(contracts.ContractError, match="unknown condition"):
        declared_conditions(config, None, tmp_path / "r.csv", [])


def test_r_crosscheck_compares_decisions_at_the_same_adjustment():
    # the case that was called "same decision": Holm .076 in Python against .011 in R
    table = pd.DataFrame({"b (Python, marginal)": [0.4], "b (R, conditional)": [0.6], "p": [0.03], "p (R)": [0.004],
                          "p (Holm)": [0.076], "p (Holm, R)": [0.011]})
    row = same_decisions(table).iloc[0]
    assert row["same decision, raw p < 0.05"] == "yes" and row["same decision, Holm p < 0.05"] == "NO"
    assert row["same direction"] == "yes"
