"""The report leads with its answer: Chromium shows the primary results in the first 1280×900 pixels."""
import pandas as pd

from analysis.report import main
from analysis.simulate import simulate

SCREEN = {"width": 1280, "height": 900}


def test_the_first_screen_shows_every_primary_result(tmp_path, browser):
    csv = tmp_path / "responses.csv"
    simulate("matched", participants=16, sources=16, seed=3).to_csv(csv, index=False)
    assert main([str(csv), "--out", str(tmp_path / "out"), "--bootstrap", "20"]) == 0
    primary = pd.concat([pd.read_csv(tmp_path / "out" / f"contrasts_{o}.csv") for o in ("target", "true", "rating")])
    primary = primary[primary["family"] == "primary"]
    context = browser.new_context(viewport=SCREEN)
    page = context.new_page()
    page.goto((tmp_path / "out" / "report.html").as_uri())
    findings = page.locator("#s0 .findings li")
    assert findings.count() == len(primary) == 9
    for i in range(findings.count()):
        box = findings.nth(i).bounding_box()
        assert box["y"] + box["height"] <= SCREEN["height"], f"finding {i} ends at {box['y'] + box['height']:.0f} px"
        text = findings.nth(i).inner_text()
        assert "Holm p" in text and "95% CI [" in text
    intro = page.locator("#s0 p").first
    assert "16 participants" in intro.inner_text() and intro.bounding_box()["y"] < SCREEN["height"]
    figure = page.locator("#s0 img").bounding_box()
    assert figure["y"] + figure["height"] <= SCREEN["height"], "the summary figure must be on the first screen"
    for text, (_, row) in zip(findings.all_inner_texts(), primary.iterrows()):  # same order: target, true, rating
        assert f"{row['contrast']}:" in text
        assert ("no significant difference" in text) == (row["p_holm"] >= 0.05), text  # no direction claimed for a null
    context.close()
