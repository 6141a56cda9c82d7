"""Every bad export or option is refused in one line, exit 2, no traceback, nothing written; --out
always holds one whole run."""
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from analysis.inference import negative_contrast_variance
from analysis.report import main
from analysis.simulate import simulate
from conftest import REPO


@pytest.fixture(scope="module")
def responses() -> pd.DataFrame:
    return simulate("nested", participants=8, sources=16, seed=1)


def refused(capsys, argv: list[str], says: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_a_header_only_export_exits_2_in_one_line_from_the_command_line(responses, tmp_path):
    csv = tmp_path / "responses.csv"
    responses.head(0).to_csv(csv, index=False)
    result = subprocess.run([sys.executable, "analysis/report.py", str(csv), "--out", str(tmp_path / "out")], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "no answers" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_an_export_where_every_answer_is_excluded_is_refused(responses, tmp_path, capsys):
    csv = tmp_path / "responses.csv"
    responses.assign(is_bot=True).to_csv(csv, index=False)
    refused(capsys, [str(csv), "--out", str(tmp_path / "out")], f"all {len(responses)} answers were excluded")
    assert not (tmp_path / "out").exists()


def test_two_rating_scales_are_refused_naming_the_scales_found(responses, tmp_path, capsys):
    odd = responses["participant_id"] == responses["participant_id"].iloc[0]
    changed = responses.assign(rating_max=np.where(odd, 5, 7),
                               response_rating=np.where(odd, responses["response_rating"].clip(upper=5), responses["response_rating"]))
    changed["response_rating"] = changed["response_rating"].astype("Int64")
    csv = tmp_path / "responses.csv"
    changed.to_csv(csv, index=False)
    err = refused(capsys, [str(csv), "--out", str(tmp_path / "out")], "ratings use 2 scales")
    assert "1–5" in err and "1–7" in err and "1 participant(s)" in err and not (tmp_path / "out").exists()


def test_a_semicolon_delimited_file_is_named_as_such(responses, tmp_path, capsys):
    csv = tmp_path / "responses.csv"
    responses.to_csv(csv, index=False, sep=";")
    refused(capsys, [str(csv), "--out", str(tmp_path / "out")], "semicolon-delimited")


def test_problems_are_located_by_file_line(responses, tmp_path, capsys):
    bad = responses.copy()
    bad["norm_l2"] = bad["norm_l2"].astype(object)
    bad.loc[26, "norm_l2"] = "lots"  # data row 26 (0-based) is line 28 of the file
    csv = tmp_path / "responses.csv"
    bad.to_csv(csv, index=False)
    refused(capsys, [str(csv), "--out", str(tmp_path / "out")], "(file lines 28)")


def test_missing_reaction_times_refuse_unless_asked_to_drop_them(responses, tmp_path, capsys):
    csv = tmp_path / "responses.csv"
    responses.assign(rt_ms=responses["rt_ms"].mask(responses.index % 50 == 0)).to_csv(csv, index=False)
    refused(capsys, [str(csv), "--out", str(tmp_path / "out")], "pass --drop-missing-rt")
    assert main([str(csv), "--out", str(tmp_path / "out"), "--drop-missing-rt", "--bootstrap", "20"]) == 0
    assert "without a reaction time were left out" in (tmp_path / "out" / "warnings.txt").read_text()


@pytest.mark.parametrize("option, value", [("--bootstrap", "-5"), ("--min-rt-ms", "-100"), ("--max-fast-share", "7"),
                                           ("--max-catch-failed", "-1")])
def test_options_out_of_range_are_refused(responses, tmp_path, capsys, option, value):
    csv = tmp_path / "responses.csv"
    responses.to_csv(csv, index=False)
    try:
        code = main([str(csv), "--out", str(tmp_path / "out"), option, value])
    except SystemExit as exc:  # argparse's own refusal
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and option.lstrip("-").replace("-", "_")[:8] in err.replace("-", "_"), err
    assert not (tmp_path / "out").exists()


def test_out_holds_one_whole_run(responses, tmp_path, capsys):
    csv, out = tmp_path / "responses.csv", tmp_path / "out"
    responses.to_csv(csv, index=False)
    assert main([str(csv), "--out", str(out), "--bootstrap", "20"]) == 0
    (out / "stale_from_an_earlier_run.csv").write_text("x\n")
    first = (out / "report.html").read_text()
    assert main([str(csv), "--out", str(out), "--bootstrap", "20", "--covariate-l2"]) == 0
    assert not (out / "stale_from_an_earlier_run.csv").exists() and (out / "contrasts_target_l2.csv").is_file()
    assert (out / "report.html").read_text() != first
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary folder left behind
    other = tmp_path / "papers"
    other.mkdir()
    (other / "thesis.tex").write_text("precious")
    refused(capsys, [str(csv), "--out", str(other)], "not an earlier report")
    assert (other / "thesis.tex").read_text() == "precious"


def test_a_missing_sqlite_file_is_refused_not_created(tmp_path, capsys):
    db = tmp_path / "nope.sqlite"
    refused(capsys, [f"sqlite:///{db}", "--out", str(tmp_path / "out")], "does not exist")
    assert not db.exists()


def test_only_a_negative_contrast_variance_warns():
    # intercept and one condition dummy; the whole matrix has a negative eigenvalue (intercept direction)
    cov = np.array([[-1e-3, 0.0, 0.0], [0.0, 0.04, 0.01], [0.0, 0.01, 0.05]])
    assert np.linalg.eigvalsh(cov).min() < 0 and not negative_contrast_variance(cov, [1, 2])
    assert not negative_contrast_variance(np.diag([1.0, 0.04, -1e-19]), [1, 2])  # rounding, not a negative variance
    assert negative_contrast_variance(np.array([[1.0, 0, 0], [0, 0.04, 0.05], [0, 0.05, 0.04]]), [1, 2])
