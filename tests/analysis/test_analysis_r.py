"""The R cross-check path (lme4 glmer / ordinal clmm through Rscript); `make test` installs R."""
import pytest

from analysis.inference import detect_layout
from analysis.rcheck import fit_in_r, r_available
from analysis.report import main
from analysis.simulate import simulate

pytestmark = pytest.mark.skipif(not r_available(), reason="R with lme4 and ordinal not installed (make test installs it)")


def test_glmer_reproduces_the_lme4_reference_numbers():
    from analysis.simulate import simulate_answers

    reference = simulate_answers("nested", seed=1)  # the reference data set
    fixed = fit_in_r(reference, detect_layout(reference), ("target",)).set_index("condition")
    for condition, estimate, se in (("adversarial", 0.835463, 0.243214), ("gradreg", 0.532962, 0.244084),
                                    ("distilled", 0.282644, 0.245223)):
        assert fixed.loc[condition, "estimate"] == pytest.approx(estimate, abs=2e-3)
        assert fixed.loc[condition, "se"] == pytest.approx(se, rel=0.05)


def test_report_puts_r_estimates_beside_ours(tmp_path):
    csv = tmp_path / "responses.csv"
    simulate("matched", participants=16, sources=16, seed=3).to_csv(csv, index=False)
    assert main([str(csv), "--out", str(tmp_path / "out"), "--crosscheck-r", "--bootstrap", "100"]) == 0
    table = (tmp_path / "out" / "crosscheck_r.csv").read_text()
    assert table.count("− normal") == 9 and "glmer Laplace" in table and "clmm Laplace" in table
    assert "Cross-check in R" in (tmp_path / "out" / "report.html").read_text()
