"""Input, exclusions, layout detection and the report command end to end."""
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import contracts
from analysis.exclusions import ExclusionRules, apply_exclusions, load_rules
from analysis.inference import detect_layout
from analysis.loading import answers_frame, load_responses
from analysis.report import main
from analysis.simulate import simulate, simulate_answers, to_responses
from conftest import REPO

EXAMPLES = Path(contracts.__file__).parent / "examples"


def report(*args: str, module: bool = False) -> subprocess.CompletedProcess:
    entry = ["-m", "analysis.report"] if module else ["analysis/report.py"]
    return subprocess.run([sys.executable, *entry, *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_simulated_export_follows_the_contract_and_round_trips():
    answers = simulate_answers("matched", participants=8, sources=8, seed=3)
    responses = contracts.validate_responses_frame(to_responses(answers))
    again = answers_frame(responses)
    key = ["participant_id", "stimulus_id", "task"]
    left, right = answers.sort_values(key).reset_index(drop=True), again.sort_values(key).reset_index(drop=True)
    for column in ["condition", "source_id", "target", "true", "rating", "norm_l2"]:
        pd.testing.assert_series_equal(left[column], right[column], check_dtype=False, check_names=False)
    assert not responses.duplicated(["session_id", "trial_index"]).any()


@pytest.mark.parametrize("layout, unit", [("matched", "source_id"), ("nested", "stimulus_id")])
def test_layout_and_cluster_are_detected_from_source_id(layout, unit):
    detected = detect_layout(simulate_answers(layout, participants=8, sources=16, seed=0))
    assert (detected.name, detected.unit) == (layout, unit)


def test_database_url_reads_the_view_not_the_tables(tmp_path):
    csv = tmp_path / "responses.csv"
    simulate(participants=4, sources=8, seed=1).to_csv(csv, index=False)
    db = tmp_path / "study.sqlite"
    with sqlite3.connect(db) as conn:
        pd.read_csv(csv).to_sql("answer_rows", conn, index=False)
        conn.execute("CREATE VIEW responses_long AS SELECT * FROM answer_rows")
    from_view, from_csv = load_responses(f"sqlite:///{db}"), load_responses(csv)
    pd.testing.assert_frame_equal(from_view, from_csv)
    empty = tmp_path / "no_view.sqlite"
    sqlite3.connect(empty).close()
    with pytest.raises(contracts.ContractError, match="responses_long"):
        load_responses(f"sqlite:///{empty}")


@pytest.mark.parametrize("name, says", [
    ("missing-column", "missing column"), ("unknown-condition", "condition"),
    ("rating-outside-scale", "outside the rating scale"), ("duplicate-answer", "duplicate an answer"),
])
def test_broken_exports_fail_with_a_readable_message(name, says, tmp_path, capsys):
    assert main([str(EXAMPLES / f"responses.broken-{name}.csv"), "--out", str(tmp_path / "out")]) == 2
    assert says in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_a_broken_export_exits_2_from_the_command_line():
    result = report(EXAMPLES / "responses.broken-missing-column.csv", "--out", "/tmp/never-written")
    assert result.returncode == 2 and "missing column" in result.stderr and "Traceback" not in result.stderr


def test_exclusions_apply_in_one_place_with_consort_counts(tmp_path):
    responses = contracts.validate_responses_frame(simulate(participants=8, sources=8, seed=2))
    sessions = sorted(responses["session_id"].unique())
    responses.loc[responses["session_id"] == sessions[0], "is_bot"] = True
    responses.loc[responses["session_id"] == sessions[1], "is_pilot"] = True
    responses.loc[responses["session_id"] == sessions[2], "session_state"] = "timed_out"
    responses.loc[responses["session_id"] == sessions[3], "catch_failed"] = 2
    responses.loc[responses["session_id"] == sessions[4], "rt_ms"] = 120.0          # clicks through
    responses.loc[responses.index[responses["session_id"] == sessions[5]][:2], "rt_ms"] = 90.0  # two slips
    kept, table = apply_exclusions(responses, ExclusionRules())
    removed = table.set_index("step")["answers removed"]
    assert removed["excluded: bot sessions"] == 16 and removed["excluded: pilot sessions"] == 16
    assert removed["excluded: incomplete sessions"] == 16
    assert removed["excluded: sessions failing more than 0 catch trial(s)"] == 16
    assert removed["excluded: sessions with more than 25% answers faster than 250 ms"] == 16
    assert removed["excluded: single answers faster than 250 ms"] == 2
    assert table.iloc[-1]["participants"] == 3 and table.iloc[-1]["answers"] == len(kept) == 3 * 16 - 2
    assert load_rules(REPO / "analysis" / "config.example.toml") == ExclusionRules()  # the example lists the defaults
    config = tmp_path / "analysis.toml"
    config.write_text("[exclusions]\nmax_catch_failed = 2\nmin_rt_ms = 100\n")
    rules = load_rules(config, {"drop_pilots": False})
    assert (rules.max_catch_failed, rules.min_rt_ms, rules.drop_pilots) == (2, 100, False)
    config.write_text("[exclusions]\nmin_rt = 100\n")
    with pytest.raises(contracts.ContractError, match="unknown exclusion rule"):
        load_rules(config)


def test_example_export_runs_as_script_and_module(tmp_path):
    for module in (False, True):
        out = tmp_path / f"m{module}"
        result = report(EXAMPLES / "responses.valid.csv", "--out", out, module=module)
        assert result.returncode == 0, result.stderr
        assert (out / "answer_counts.csv").is_file() and (out / "report.html").is_file()
        assert "too little data" in (out / "warnings.txt").read_text()  # said in the report, not only the console


def test_default_report_on_a_full_size_study(tmp_path):
    csv = tmp_path / "responses.csv"
    simulate("matched", participants=60, sources=80, seed=4).to_csv(csv, index=False)
    started = time.perf_counter()
    result = report(csv, "--out", tmp_path / "out")
    elapsed = time.perf_counter() - started
    assert result.returncode == 0, result.stderr
    assert elapsed <= 60, f"default report took {elapsed:.1f} s (target: 60 s on 2 cores)"
    out = tmp_path / "out"
    for stem in ["contrasts_target", "contrasts_true", "contrasts_rating", "descriptives", "exclusions", "agreement",
                 "by_image_rating", "omnibus", "model_diagnostics"]:
        for suffix in (".md", ".tex", ".csv"):
            assert (out / f"{stem}{suffix}").is_file(), stem + suffix
    for stem in ["fig_condition_intervals", "fig_rating_distribution", "fig_legitimacy_vs_l2"]:
        assert (out / f"{stem}.png").stat().st_size > 1000 and (out / f"{stem}.svg").is_file()
    page = (out / "report.html").read_text()
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page), "the HTML must be self-contained"
    assert page.count("data:image/png;base64,") == 4 and "Warnings" not in page
    table = pd.read_csv(out / "contrasts_target.csv")
    primary = table[table["family"] == "primary"]
    assert set(primary["contrast"]) == {"adversarial − normal", "distilled − normal", "gradreg − normal"}
    assert (primary["p_holm"] >= primary["p"]).all() and len(table[table["family"] == "secondary"]) == 3
    assert "source_id" in primary["method"].iloc[0]
    markdown = (out / "contrasts_target.md").read_text()
    assert "p = .000" not in markdown and "population-averaged" in markdown
    assert "\\begin{tabular}" in (out / "contrasts_rating.tex").read_text()


def test_small_designs_warn_and_clean_controls_are_described_not_contrasted(tmp_path):
    responses = simulate("nested", participants=10, sources=16, seed=4)
    normal = responses[responses["condition"] == "normal"]
    clean = normal.assign(condition="clean", stimulus_id="clean-" + normal["stimulus_id"], target_label=pd.NA, norm_l0=0,
                          norm_l2=0.0, norm_linf=0.0, trial_index=normal["trial_index"] + 1000)
    csv = tmp_path / "responses.csv"
    pd.concat([responses, clean]).to_csv(csv, index=False)
    result = report(csv, "--out", tmp_path / "out", "--bootstrap", "200", "--covariate-l2")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    page = (out / "report.html").read_text()
    assert "two-way clustered errors need about 20" in page and "could not be computed" not in page
    assert (out / "contrasts_rating_l2.csv").is_file()
    descriptives = pd.read_csv(out / "descriptives.csv")
    assert "clean" in set(descriptives["condition"])
    assert not pd.read_csv(out / "contrasts_true.csv")["contrast"].str.contains("clean").any()
