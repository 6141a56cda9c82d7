"""Oracle checks: our numbers against scipy / pingouin on literal inputs and against the reference
values of lme4, ordinal and statsmodels on the reference data set (docs/analysis.md, "Oracles")."""
import warnings

import numpy as np
import pingouin as pg
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from analysis.agreement import alpha_by_condition, krippendorff_alpha
from analysis.inference import OUTCOMES, contrast_table, detect_layout, fit_model, holm, omnibus, planned_contrasts
from analysis.robustness import by_image, by_participant, mann_whitney, paired_t, wilcoxon_paired
from analysis.simulate import simulate_answers

# Data set U: per-participant mean ratings, columns normal, adversarial, gradreg, distilled.
U = np.array("""3.25 3.80 3.60 3.20 2.80 3.55 3.10 2.95 4.10 4.45 4.05 4.00 3.55 4.10 4.20 3.65
2.95 3.20 3.40 3.05 3.70 4.25 3.70 3.50 4.40 4.90 4.95 4.30 3.05 3.35 3.00 3.15
2.60 3.30 3.15 2.70 3.90 4.05 4.30 3.85 3.35 3.75 3.90 3.40 4.05 4.60 4.60 3.95""".split(), float).reshape(12, 4)
NORMAL, ADVERSARIAL, GRADREG, DISTILLED = U.T


def test_paired_t_matches_scipy_and_pingouin():
    ours = paired_t(GRADREG, NORMAL)
    assert ours["statistic"] == pytest.approx(4.838329, rel=1e-6) and ours["p"] == pytest.approx(0.000520383, rel=1e-6)
    theirs = pg.ttest(GRADREG, NORMAL, paired=True)
    assert ours["statistic"] == pytest.approx(theirs["T"].iloc[0], rel=1e-9)
    assert ours["p"] == pytest.approx(theirs["p_val"].iloc[0], rel=1e-9)


@pytest.mark.parametrize("x, w, p, rbc", [
    (GRADREG, 3, 0.0048828125, 0.909091),   # one zero difference and tied |d|: exact permutation
    (ADVERSARIAL, 0, 0.00048828125, 1.0),
    (DISTILLED, 37, 0.9350585938, None),     # the floating-point tie trap: raw x - y would give W = 36
])
def test_wilcoxon_matches_oracle_and_pingouin(x, w, p, rbc):
    ours = wilcoxon_paired(x, NORMAL)
    assert ours["statistic"] == w and ours["p"] == pytest.approx(p, rel=1e-6)
    if rbc is not None:
        assert ours["effect"] == pytest.approx(rbc, rel=1e-5)
        assert ours["p"] == pytest.approx(pg.wilcoxon(x, NORMAL)["p_val"].iloc[0], rel=1e-9)


def test_mann_whitney_matches_scipy_and_pingouin():
    a = [.20, .35, .15, .40, .25, .30, .10, .45]
    b = [.30, .50, .45, .55, .35, .60, .40, .25]
    ours = mann_whitney(b, a)
    assert ours["statistic"] == 51.5 and ours["p"] == pytest.approx(0.045201, rel=1e-4)
    theirs = pg.mwu(b, a)
    assert ours["p"] == pytest.approx(theirs["p_val"].iloc[0], rel=1e-9)
    assert ours["effect"] == pytest.approx(theirs["RBC"].iloc[0], rel=1e-9)


def test_by_image_in_the_nested_layout_is_mann_whitney_on_image_means():
    # The unit is the image itself there; grouping by it twice once raised pandas' ambiguous-level warning.
    answers = simulate_answers("nested", participants=10, sources=16, seed=4)
    layout = detect_layout(answers)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = by_image(answers, "rating", layout, planned_contrasts(["normal", "adversarial", "gradreg", "distilled"]))
    means = answers.dropna(subset=["rating"]).groupby(["condition", "stimulus_id"])["rating"].mean()
    row = table.set_index("contrast").loc["gradreg − normal"]
    assert row["n"] == 8 and row["p"] == pytest.approx(stats.mannwhitneyu(means["gradreg"], means["normal"], method="asymptotic").pvalue, rel=1e-12)


def test_holm_matches_statsmodels_and_pingouin():
    p = np.array([0.001, 0.008, 0.012, 0.030, 0.041, 0.20])
    expected = [0.006, 0.04, 0.048, 0.09, 0.09, 0.2]
    np.testing.assert_allclose(holm(p), expected, rtol=1e-9)
    np.testing.assert_allclose(holm(p), multipletests(p, method="holm")[1], rtol=1e-12)
    np.testing.assert_allclose(holm(p[::-1]), pg.multicomp(p[::-1], method="holm")[1], rtol=1e-12)


def test_descriptive_participant_means_match_pandas_and_pingouin():
    answers = simulate_answers("nested", participants=12, sources=16, seed=5)
    table = by_participant(answers, "rating", planned_contrasts(["normal", "gradreg"])[:1])
    wide = answers.dropna(subset=["rating"]).pivot_table(index="participant_id", columns="condition", values="rating", aggfunc="mean")
    expected = pg.ttest(wide["gradreg"], wide["normal"], paired=True)
    row = table[table["test"] == "paired t"].iloc[0]
    assert row["statistic"] == pytest.approx(expected["T"].iloc[0], rel=1e-9)
    assert row["p"] == pytest.approx(expected["p_val"].iloc[0], rel=1e-9)


def test_krippendorff_alpha_published_values():
    nan = np.nan
    k = np.array([[1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan], [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
                  [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan], [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan]])  # coders x units
    assert krippendorff_alpha(k, "nominal") == pytest.approx(0.743421, abs=1e-6)
    assert krippendorff_alpha(k, "ordinal") == pytest.approx(0.815388, abs=1e-6)


@pytest.fixture(scope="module")
def reference():
    """simulate("nested", seed=1), the reference data set, with its fingerprint."""
    answers = simulate_answers("nested", seed=1)
    labels, ratings = answers[answers["task"] == "label"], answers[answers["task"] == "rate"]
    order = ["normal", "adversarial", "gradreg", "distilled"]
    assert labels.groupby("condition")["target"].sum()[order].tolist() == [233, 400, 332, 282]
    assert labels.groupby("condition")["true"].sum()[order].tolist() == [508, 334, 420, 525]
    assert ratings.groupby("condition")["rating"].sum()[order].tolist() == [4728, 5413, 4545, 4865]
    assert ratings["rating"].value_counts().sort_index().tolist() == [811, 660, 600, 516, 614, 707, 892]
    return answers


# estimate / SE of (adversarial, gradreg, distilled) − normal on the reference data set. Estimates:
# statsmodels. Label SEs: R sandwich 3.0.2, vcovCL(glm(y ~ condition, binomial), cluster = ~ participant_id
# + stimulus_id, type = "HC3", cadjust = TRUE), the same jackknife-type two-way covariance computed
# from the hat matrix; rating SEs: ours (sandwich has no clm methods), pinned.
REFERENCE_FITS = {
    "target": [(0.730013, 0.2324528551), (0.462103, 0.2260714198), (0.242870, 0.2356212545)],
    "true": [(-0.643639, 0.2258123710), (-0.309935, 0.2191436376), (0.057790, 0.2178001566)],
    "rating": [(0.467916, 0.158189), (-0.129503, 0.175370), (0.093202, 0.175177)],
}


@pytest.mark.parametrize("outcome", OUTCOMES, ids=lambda o: o.name)
def test_two_way_cluster_models_match_reference(reference, outcome):
    layout = detect_layout(reference)
    assert (layout.name, layout.unit) == ("nested", "stimulus_id")
    fit = fit_model(reference, outcome, layout)
    table = contrast_table(fit, planned_contrasts(fit.conditions)).set_index("contrast")
    for condition, (estimate, se) in zip(["adversarial", "gradreg", "distilled"], REFERENCE_FITS[outcome.name]):
        row = table.loc[f"{condition} − normal"]  # one row: each contrast is in one family
        assert row["estimate"] == pytest.approx(estimate, rel=1e-4, abs=1e-6)
        assert row["se"] == pytest.approx(se, rel=1e-4)
        assert row["p"] == pytest.approx(2 * stats.t.sf(abs(estimate / se), row["df"]), rel=1e-3)
    if outcome.kind == "ordinal":  # the answers' information shares add up to the model's information
        np.testing.assert_allclose(fit.result.model.information_obs(fit.params).sum(0), -fit.result.model.hessian(fit.params),
                                   rtol=1e-4, atol=1e-6)
    if outcome.name == "target":
        assert omnibus(fit)["chi2"] == pytest.approx(10.718476, rel=1e-5)
        # probability scale: the model-implied difference equals the raw difference of rates (saturated model)
        rates = reference.groupby("condition")["target"].mean()
        assert table.loc["gradreg − normal", "diff"] == pytest.approx(rates["gradreg"] - rates["normal"], abs=1e-6)


def test_agreement_per_condition_matches_reference(reference):
    ratings = alpha_by_condition(reference, "rating", "ordinal", replicates=50).set_index("condition")["alpha"]
    np.testing.assert_allclose(ratings[["normal", "adversarial", "gradreg", "distilled"]],
                               [0.059458, 0.062980, 0.092679, 0.089934], atol=1e-6)
    # the reference values use the three-way label (target / true / other), not the digit
    three_way = reference.assign(label3=np.select([reference["target"] == 1, reference["true"] == 1, reference["task"] == "label"],
                                                  [0.0, 1.0, 2.0], np.nan))
    labels = alpha_by_condition(three_way, "label3", "nominal", replicates=50).set_index("condition")["alpha"]
    np.testing.assert_allclose(labels[["normal", "adversarial", "gradreg", "distilled"]],
                               [0.091259, 0.083243, 0.062817, 0.056111], atol=1e-6)


def test_crossed_mixedlm_matches_lmer_reference(reference):
    from analysis.sensitivity import fit_crossed_lmm, mixed_contrasts

    fit = fit_crossed_lmm(reference, "rating", detect_layout(reference))
    assert fit.converged
    table = mixed_contrasts(fit).set_index("contrast")
    # lmer REML: 0.570833 / 0.207853 (SE within 5 % across libraries); statsmodels reference 0.207847
    for condition, estimate in (("adversarial", 0.570833), ("gradreg", -0.152500), ("distilled", 0.114167)):
        row = table.loc[f"{condition} − normal"]
        assert row["estimate"] == pytest.approx(estimate, abs=2e-6)
        assert row["se"] == pytest.approx(0.207853, rel=1e-3)
    assert fit.variance_components["participant"] == pytest.approx(1.001282, rel=1e-3)
    assert fit.variance_components["image"] == pytest.approx(0.379282, rel=1e-3)
    assert fit.variance_components["residual"] == pytest.approx(3.164774, rel=1e-4)
