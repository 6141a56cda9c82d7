"""`--power`: a participants × sources grid of simulated power with the binding constraint named."""
import pandas as pd
import pytest

from analysis.power import binding_constraint
from analysis.report import main
from analysis.simulate import simulate


def test_power_grid_in_the_report(tmp_path):
    csv = tmp_path / "responses.csv"
    simulate("matched", participants=12, sources=16, seed=5).to_csv(csv, index=False)
    assert main([str(csv), "--out", str(tmp_path / "out"), "--bootstrap", "100", "--power", "--power-participants", "8,16",
                 "--power-sources", "8,24", "--power-studies", "8", "--power-label-sds", "0.7,0.9"]) == 0
    grid = pd.read_csv(tmp_path / "out" / "power.csv")
    assert len(grid) == 4 and {"participants", "sources", "target: gradreg − normal", "rating: gradreg − normal"} <= set(grid.columns)
    assert grid.drop(columns=["participants", "sources"]).apply(lambda c: c.between(0, 1)).all().all()
    page = (tmp_path / "out" / "report.html").read_text()
    assert "label SDs as given (participant 0.70, image unit 0.90)" in page
    assert "binding constraint" in page or "cannot tell" in page


def test_binding_constraint_names_images_when_only_sources_help():
    grid = pd.DataFrame({"participants": [30, 30, 240, 240], "sources": [40, 160, 40, 160], "test": "target: gradreg − normal",
                         "power": [0.30, 0.75, 0.32, 0.79], "studies": 200})
    assert "source images is the binding constraint" in binding_constraint(grid)[0]


def test_label_variance_components_are_estimated_from_pilot_data():
    from analysis.inference import detect_layout
    from analysis.power import label_variance_components
    from analysis.simulate import simulate_answers

    reference = simulate_answers("nested", seed=1)  # glmer: SD participant 0.61, image 0.69 (on the reference data set)
    sds = label_variance_components(reference, detect_layout(reference))
    assert sds["sd_p"] == pytest.approx(0.61, abs=0.1) and sds["sd_i"] == pytest.approx(0.69, abs=0.1)
    assert label_variance_components(reference[reference["participant_id"] < "sim-p0005"], detect_layout(reference)) is None
