"""`--power`: a participants × sources grid of simulated power with the binding constraint named."""
import pandas as pd

from analysis.power import binding_constraint
from analysis.report import main
from analysis.simulate import simulate


def test_power_grid_in_the_report(tmp_path):
    csv = tmp_path / "responses.csv"
    simulate("matched", participants=12, sources=16, seed=5).to_csv(csv, index=False)
    assert main([str(csv), "--out", str(tmp_path / "out"), "--bootstrap", "100", "--power", "--power-participants", "8,16",
                 "--power-sources", "8,24", "--power-studies", "8"]) == 0
    grid = pd.read_csv(tmp_path / "out" / "power.csv")
    assert len(grid) == 4 and {"participants", "sources", "target: gradreg − normal", "rating: gradreg − normal"} <= set(grid.columns)
    assert grid.drop(columns=["participants", "sources"]).apply(lambda c: c.between(0, 1)).all().all()
    assert "binding constraint" in (tmp_path / "out" / "report.html").read_text() or "cannot tell" in (tmp_path / "out" / "report.html").read_text()


def test_binding_constraint_names_images_when_only_sources_help():
    grid = pd.DataFrame({"participants": [30, 30, 240, 240], "sources": [40, 160, 40, 160], "test": "target: gradreg − normal",
                         "power": [0.30, 0.75, 0.32, 0.79], "studies": 200})
    assert "source images is the binding constraint" in binding_constraint(grid)[0]
