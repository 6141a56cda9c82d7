"""Primary inference: marginal models with two-way cluster-robust errors (participant × image unit).

Participants and images are crossed random factors. statsmodels has no frequentist crossed GLMM or
cumulative-link mixed model, so the primary models are population-averaged: a logistic GLM for the
label outcomes and a proportional-odds `OrderedModel` for ratings, each with Cameron–Gelbach–Miller
two-way clustered standard errors over participants and the image unit, from jackknife-type
(leave-one-cluster-out) meats (`two_way_cluster_cov`). In simulations of this
design (docs/analysis.md) these single-contrast tests matched glmer / clmm in type-I
error and power, provided the image unit is the coarsest image-level unit that carries shared
variance: the source digit in the matched layout, the image in the nested one. Their estimates are
marginal (population-averaged) log-odds, smaller than a GLMM's conditional ones by design.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import statsmodels.api as sm
import statsmodels.formula.api as smf
from scipy import special, stats
from statsmodels.miscmodels.ordinal_model import OrderedModel
from statsmodels.tools.numdiff import approx_fprime

# The shared vocabulary's order is the tables' order; its first present condition, `normal`, is every model's reference.
from contracts import CONDITIONS

MIN_UNITS = 20  # fewer clusters than this per dimension: CGM standard errors run small


@dataclass(frozen=True)
class Outcome:
    name: str
    kind: str           # "binary" (logistic GLM) or "ordinal" (proportional odds)
    title: str
    ratio_name: str     # exp(estimate)
    diff_name: str      # difference of model-implied means on the response scale


OUTCOMES = (
    Outcome("target", "binary", "Target-label rate", "OR", "probability difference"),
    Outcome("true", "binary", "True-label rate", "OR", "probability difference"),
    Outcome("rating", "ordinal", "Legitimacy rating", "cumulative OR", "mean rating difference"),
)


class LogitOrderedModel(OrderedModel):
    """`OrderedModel(distr="logit")` with the logistic cdf from `scipy.special`, the analytic score
    and a Hessian differentiated from it (statsmodels differentiates the log-likelihood twice
    numerically). Same estimates and clustered SEs (oracle-tested), several times faster, which is
    what makes hundreds of calibration and power replicates affordable."""

    def __init__(self, endog, exog, **kwargs):
        kwargs.pop("distr", None)
        super().__init__(endog, exog, distr="logit", **kwargs)

    def cdf(self, x):
        return special.expit(x)

    def pdf(self, x):
        p = special.expit(x)
        return p * (1 - p)

    def score_obs(self, params):
        params = np.asarray(params, dtype=float)
        k_exog = self.exog.shape[1] if self.exog is not None else 0
        thresholds = self.transform_threshold_params(params)  # -inf, θ1..θK-1, inf
        y = np.asarray(self.endog, dtype=int)
        linear = self.exog @ params[:k_exog] if k_exog else 0.0
        low, upp = thresholds[y] - linear, thresholds[y + 1] - linear
        prob = np.maximum(self.cdf(upp) - self.cdf(low), 1e-20)
        pdf_low, pdf_upp = self.pdf(low), self.pdf(upp)  # 0 at ±inf
        # d threshold_j / d raw_m: the first raw parameter shifts every threshold, raw m > 1
        # enters thresholds j >= m as exp(raw_m) (thresholds are cumulative exp-increments).
        raw = params[k_exog:]
        n_thr = len(raw)
        jac = np.zeros((n_thr + 2, n_thr))
        for j in range(1, n_thr + 1):
            jac[j, 0] = 1.0
            jac[j, 1:j] = np.exp(raw[1:j])
        score_thr = (pdf_upp[:, None] * jac[y + 1] - pdf_low[:, None] * jac[y]) / prob[:, None]
        score_exog = -((pdf_upp - pdf_low) / prob)[:, None] * self.exog if k_exog else np.empty((len(y), 0))
        return np.column_stack([score_exog, score_thr])

    def score(self, params):
        return self.score_obs(params).sum(0)

    def hessian(self, params):
        return approx_fprime(np.asarray(params, dtype=float), self.score, centered=True)

    def information_obs(self, params) -> np.ndarray:
        """Each answer's share of the observed information (n × k × k): minus the derivative of its
        score, symmetrised. They sum to minus the Hessian."""
        params = np.asarray(params, dtype=float)
        jac = approx_fprime(params, lambda q: self.score_obs(q).ravel(), centered=True).reshape(len(self.endog), len(params), len(params))
        return -0.5 * (jac + jac.transpose(0, 2, 1))


@dataclass(frozen=True)
class Layout:
    name: str       # "matched" or "nested"
    unit: str       # column whose values are the image-side clusters
    n_units: int
    reason: str


def detect_layout(answers: pd.DataFrame) -> Layout:
    """Matched when a source digit appears under several conditions; the cluster follows from it."""
    adv = answers[answers["condition"] != "clean"]
    conditions_per_source = adv.groupby("source_id")["condition"].nunique()
    images_per_source = adv.groupby("source_id")["stimulus_id"].nunique()
    if (conditions_per_source > 1).any():
        return Layout("matched", "source_id", adv["source_id"].nunique(),
                      f"{int((conditions_per_source > 1).sum())} of {len(conditions_per_source)} source digits were attacked under "
                      "several conditions, so images made from one source share its variance: clustered on the source digit "
                      "(clustering on the single image would be far too conservative here)")
    if (images_per_source > 1).any():
        return Layout("nested", "source_id", adv["source_id"].nunique(),
                      "each source digit appears under one condition but some yield several images: clustered on the source digit")
    return Layout("nested", "stimulus_id", adv["stimulus_id"].nunique(),
                  "each image was made from its own source against one model: clustered on the image")


def condition_column(condition: str) -> str:
    """The model's name for the treatment dummy of `condition`: every model here has the term
    `C(condition)` on a categorical whose first category is the reference."""
    return f"C(condition)[T.{condition}]"


def ordered_conditions(values: pd.Series) -> list[str]:
    present = set(values)
    return [c for c in CONDITIONS if c in present]


def analysed_data(answers: pd.DataFrame, outcome: str) -> tuple[pd.DataFrame, list[str]]:
    """Answers that enter the condition contrasts of `outcome` (clean controls never do), and their
    conditions in canonical order: the reference (normal, else the first present) comes first."""
    data = answers.loc[answers["condition"] != "clean"].dropna(subset=[outcome])
    return data, ordered_conditions(data["condition"])


@dataclass
class ModelFit:
    outcome: Outcome
    conditions: list[str]               # reference first
    params: np.ndarray
    cov: np.ndarray
    names: list[str]
    exog: np.ndarray                    # design matrix as fitted (for marginal means)
    dummy: dict[str, int]               # condition -> column of its treatment dummy
    levels: np.ndarray | None           # rating values (ordinal models)
    n_obs: int
    n_participants: int
    units: dict[str, set]               # condition -> its image units (cluster labels)
    converged: bool
    formula: str
    method: str
    result: object = field(repr=False)
    warnings: list[str] = field(default_factory=list)

    def linear(self, params: np.ndarray, condition: str) -> np.ndarray:
        """Linear predictor with every row set to `condition` (other covariates as observed)."""
        x = self.exog.copy()
        x[:, list(self.dummy.values())] = 0.0
        if condition in self.dummy:
            x[:, self.dummy[condition]] = 1.0
        return x @ params[: x.shape[1]]

    def marginal_means(self, params: np.ndarray) -> np.ndarray:
        """Model-implied mean per condition, averaged over the analysed rows (g-computation):
        probability for binary outcomes, mean rating for ordinal ones."""
        if self.levels is None:
            return np.array([np.mean(special.expit(self.linear(params, c))) for c in self.conditions])
        thresholds = self.result.model.transform_threshold_params(params)  # -inf, θ1..θK-1, inf
        means = []
        for c in self.conditions:
            cdf = special.expit(thresholds[None, :] - self.linear(params, c)[:, None])
            means.append(np.mean(np.diff(cdf, axis=1) @ self.levels))
        return np.array(means)


def _design(answers: pd.DataFrame, outcome: Outcome, covariate: bool) -> tuple[pd.DataFrame, str, list[str]]:
    data, conditions = analysed_data(answers, outcome.name)
    if not conditions:
        raise ValueError(f"{outcome.title}: no answers to analyse")
    data = data.assign(condition=pd.Categorical(data["condition"], categories=conditions))
    rhs = "C(condition)"  # treatment coding; the reference is the first category
    if covariate:  # centred, so the intercept stays the reference condition at the average norm
        data = data.assign(l2_centred=data["norm_l2"] - data["norm_l2"].mean())
        rhs += " + l2_centred"
    return data, rhs, conditions


def fit_model(answers: pd.DataFrame, outcome: Outcome, layout: Layout, covariate: bool = False) -> ModelFit:
    data, rhs, conditions = _design(answers, outcome, covariate)
    notes: list[str] = []
    n_participants, n_units = data["participant_id"].nunique(), data[layout.unit].nunique()
    if len(conditions) < 2 or data[outcome.name].nunique() < 2 or min(n_participants, n_units) < 2:
        raise ValueError(f"{outcome.title}: too little data to fit a model ({len(data)} answers, {len(conditions)} condition(s), "
                         f"{n_participants} participants, {n_units} image units, {data[outcome.name].nunique()} distinct outcome value(s))")
    formula = f"{outcome.name} ~ {rhs}"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if outcome.kind == "binary":
            result = smf.glm(formula, data, family=sm.families.Binomial()).fit()
            converged, levels = bool(result.converged), None
            fitted = np.asarray(result.fittedvalues)
            scores, information = result.model.score_obs(result.params.to_numpy()), binomial_information(result.model.exog, fitted)
            method = "logistic GLM (population-averaged), two-way cluster-robust SE (jackknife-type)"
        else:
            levels = np.sort(data[outcome.name].unique())
            data = data.assign(**{outcome.name: pd.Categorical(data[outcome.name], categories=levels, ordered=True)})
            result = LogitOrderedModel.from_formula(formula, data).fit(method="bfgs", disp=False, maxiter=200)
            converged = bool(result.mle_retvals.get("converged", True))
            scores, information = result.model.score_obs(result.params.to_numpy()), result.model.information_obs(result.params.to_numpy())
            method = "proportional-odds logit (population-averaged), two-way cluster-robust SE (jackknife-type)"
    cov = two_way_cluster_cov(scores, information, data["participant_id"].to_numpy(), data[layout.unit].to_numpy())
    notes += sorted({f"{outcome.title}: {w.category.__name__}: {w.message}" for w in caught
                     if not issubclass(w.category, (DeprecationWarning, FutureWarning))})
    if not converged:
        notes.append(f"{outcome.title}: the model did not converge; its numbers are not to be trusted")
    units = {c: set(g) for c, g in data.groupby("condition", observed=True)[layout.unit]}
    per_condition = pd.Series({c: len(u) for c, u in units.items()})
    if per_condition.min() < MIN_UNITS or n_participants < MIN_UNITS:
        notes.append(f"{outcome.title}: only {int(per_condition.min())} image units in the smallest condition and {n_participants} "
                     f"participants; two-way clustered errors need about {MIN_UNITS} or more of each and run small below that")
    names = list(result.params.index)
    dummy = {c: names.index(condition_column(c)) for c in conditions[1:]}
    if negative_contrast_variance(cov, list(dummy.values())):
        notes.append(f"{outcome.title}: the two-way cluster-robust covariance gives some condition contrast a negative "
                     "variance; such contrasts are shown as —")
    # model.exog holds the covariates only: with the intercept for the GLM, without the thresholds for OrderedModel
    return ModelFit(outcome, conditions, np.asarray(result.params), cov, names,
                    np.asarray(result.model.exog, dtype=float), dummy, levels, int(len(data)),
                    n_participants, units, converged, formula, f"{method} (participant × {layout.unit})", result, notes)


def binomial_information(exog: np.ndarray, fitted: np.ndarray) -> np.ndarray:
    """Each answer's share of a logistic GLM's information, μ(1 − μ)·x xᵀ (n × k × k)."""
    weight = fitted * (1 - fitted)
    return weight[:, None, None] * exog[:, :, None] * exog[:, None, :]


def jackknife_meat(scores: np.ndarray, information: np.ndarray, clusters: np.ndarray, root: np.ndarray, inverse_root: np.ndarray) -> np.ndarray:
    """Σ_g ũ_g ũ_gᵀ over the clusters of one dimension, each cluster's score ũ_g = (I − A_g A⁻¹)⁻¹ u_g.

    A_g is the cluster's share of the information A. This is the one-step jackknife: A⁻¹ũ_g is
    how much the estimate moves when cluster g is left out (Mancl & DeRouen 2001 for GEE; CV3 in
    MacKinnon, Nielsen & Webb 2023). Raw scores u_g are too small by about the cluster's leverage
    A_g A⁻¹, so the plain sandwich runs small; G/(G − 1) corrects only the average of it.
    A_g A⁻¹ is similar to the symmetric A^-½ A_g A^-½, whose eigen-decomposition gives the inverse;
    leverages are held below 1 (a cluster that alone determines a parameter)."""
    codes, n_clusters = pd.factorize(clusters)[0], len(pd.unique(clusters))
    k = scores.shape[1]
    u = np.zeros((n_clusters, k))
    np.add.at(u, codes, scores)
    a_g = np.zeros((n_clusters, k, k))
    np.add.at(a_g, codes, information)
    leverage, vectors = np.linalg.eigh(inverse_root @ a_g @ inverse_root)
    leverage = np.clip(leverage, 0.0, 0.99)
    adjust = root @ (vectors / (1 - leverage)[:, None, :]) @ vectors.transpose(0, 2, 1) @ inverse_root
    adjusted = np.einsum("gij,gj->gi", adjust, u)
    return adjusted.T @ adjusted


def two_way_cluster_cov(scores: np.ndarray, information: np.ndarray, participants: np.ndarray, units: np.ndarray) -> np.ndarray:
    """Two-way cluster-robust covariance (Cameron, Gelbach & Miller 2011) with jackknife-type meats.

    V = A⁻¹ (M_participant + M_unit − M_participant×unit) A⁻¹, each M from `jackknife_meat`.
    statsmodels' CGM form (G/(G − 1)-scaled raw meats) gave rating tests that rejected true nulls
    in up to 7 % of studies on an independent generator (benchmarks/RESULTS.md, "calibration of
    the rating tests"); the standard errors were a few per cent short."""
    information_total = information.sum(0)
    values, vectors = np.linalg.eigh(information_total)
    root, inverse_root = (vectors * np.sqrt(values)) @ vectors.T, (vectors / np.sqrt(values)) @ vectors.T
    cells = pd.factorize(pd.Series(pd.factorize(participants)[0]).astype(str) + "|" + pd.Series(pd.factorize(units)[0]).astype(str))[0]
    meat = sum(sign * jackknife_meat(scores, information, clusters, root, inverse_root)
               for clusters, sign in ((participants, 1), (units, 1), (cells, -1)))
    bread = np.linalg.inv(information_total)
    return bread @ meat @ bread


def negative_contrast_variance(cov: np.ndarray, columns: list[int]) -> bool:
    """Whether some contrast between conditions has a negative variance.

    CGM's V_participant + V_unit − V_intersection need not be positive semi-definite. Checking the
    whole matrix warned in 10 of 30 small null studies (30 participants × 40 sources) although every reported contrast was fine: the
    negative direction lay in the rating thresholds, which no contrast uses. Only the block of the
    condition dummies carries the contrasts, so that block is checked, with a tolerance relative to
    its largest eigenvalue so that rounding does not count."""
    eigenvalues = np.linalg.eigvalsh(cov[np.ix_(columns, columns)]) if columns else np.zeros(1)
    return bool(eigenvalues.min() < -1e-10 * max(np.abs(eigenvalues).max(), np.finfo(float).tiny))


@dataclass(frozen=True)
class Contrast:
    a: str
    b: str
    family: str  # "primary" (defended vs normal) or "secondary" (defended vs defended)


def planned_contrasts(conditions: list[str] | tuple[str, ...]) -> list[Contrast]:
    """Primary: each defended model vs normal. Secondary: every pair of defended models (later vs
    earlier), so each contrast belongs to one family and is shown once.
    `conditions` are the declared ones (analysis.design), reference first."""
    reference, others = conditions[0], conditions[1:]
    primary = [Contrast(c, reference, "primary") for c in others]
    secondary = [Contrast(others[j], others[i], "secondary") for i in range(len(others)) for j in range(i + 1, len(others))]
    return primary + secondary


def holm(p: np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values (valid under any dependence): the i-th smallest p times
    (m − i + 1), made monotone, capped at 1; oracle-tested against statsmodels and pingouin, whose
    `multipletests(method="holm")` runs a full gc.collect() on every call (half a second each in a
    process holding fitted models, most of a simulated study's time). A test that could not be
    computed stays NaN but still counts in its family (as p = 1, which never rejects): the family
    is what was declared, and losing a test must not make the others' correction milder."""
    p = np.asarray(p, dtype=float)
    finite = np.isfinite(p)
    filled = np.where(finite, p, 1.0)
    order = np.argsort(filled, kind="stable")
    adjusted = np.empty_like(filled)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(filled[order] * np.arange(len(p), 0, -1)))
    return np.where(finite, adjusted, np.nan)


def estimable(contrast: Contrast, present: list[str]) -> bool:
    """Both conditions have analysable answers."""
    return contrast.a in present and contrast.b in present


NOT_ESTIMABLE = "not estimable (no analysable answers in {})"


def not_estimable_note(contrast: Contrast, present: list[str]) -> str:
    return NOT_ESTIMABLE.format(" and ".join(c for c in (contrast.a, contrast.b) if c not in present))


def hypothesis(reference: str, contrast: Contrast) -> str:
    """`contrast` as a statsmodels hypothesis string on the treatment dummies of `C(condition)`."""
    a = condition_column(contrast.a) if contrast.a != reference else ""
    b = f"- {condition_column(contrast.b)}" if contrast.b != reference else ""
    return f"{a} {b} = 0".strip()


def reference_df(fit: ModelFit, contrast: Contrast) -> int:
    """Degrees of freedom of the t reference: the smaller number of clusters minus one (Cameron &
    Miller 2015), counting only the image units of the two compared conditions. With 20 images per
    condition (nested) the normal reference rejected a true null in ~7 % of studies; t(G − 1) is
    the usual small-cluster remedy and changes little when clusters are many."""
    n_units = len(fit.units[contrast.a] | fit.units[contrast.b])
    return min(fit.n_participants, n_units) - 1


def contrast_table(fit: ModelFit, contrasts: list[Contrast], level: float = 0.95) -> pd.DataFrame:
    """Estimates on the model scale, exp() of them, and response-scale differences, Holm per family."""
    means = fit.marginal_means(fit.params)
    jacobian = approx_fprime(fit.params, fit.marginal_means, centered=True)  # conditions × params
    index = {c: i for i, c in enumerate(fit.conditions)}
    rows = []
    for k in contrasts:
        if not estimable(k, fit.conditions):
            rows.append({"outcome": fit.outcome.name, "family": k.family, "contrast": f"{k.a} − {k.b}", "estimate": np.nan,
                         "p": np.nan, "ratio_name": fit.outcome.ratio_name, "diff_name": fit.outcome.diff_name,
                         "method": fit.method, "note": not_estimable_note(k, fit.conditions)})
            continue
        with warnings.catch_warnings():  # a negative variance (non-PSD covariance) gives NaN, printed as —
            warnings.simplefilter("ignore", RuntimeWarning)
            test = fit.result.t_test(hypothesis(fit.conditions[0], k), cov_p=fit.cov)
        estimate, se = float(test.effect[0]), float(np.asarray(test.sd).ravel()[0])
        df = reference_df(fit, k)
        crit = stats.t.ppf(0.5 + level / 2, df)
        diff_grad = jacobian[index[k.a]] - jacobian[index[k.b]]
        diff, diff_se = means[index[k.a]] - means[index[k.b]], float(np.sqrt(diff_grad @ fit.cov @ diff_grad))
        rows.append({
            "outcome": fit.outcome.name, "family": k.family, "contrast": f"{k.a} − {k.b}",
            "estimate": estimate, "se": se, "ci_low": estimate - crit * se, "ci_high": estimate + crit * se,
            "t": estimate / se, "df": df, "p": 2 * stats.t.sf(abs(estimate / se), df),
            "ratio_name": fit.outcome.ratio_name, "ratio": np.exp(estimate),
            "ratio_low": np.exp(estimate - crit * se), "ratio_high": np.exp(estimate + crit * se),
            "diff_name": fit.outcome.diff_name, "diff": diff, "diff_low": diff - crit * diff_se, "diff_high": diff + crit * diff_se,
            "method": fit.method, "note": "",
        })
    columns = ["outcome", "family", "contrast", "estimate", "se", "ci_low", "ci_high", "t", "df", "p", "ratio_name", "ratio",
               "ratio_low", "ratio_high", "diff_name", "diff", "diff_low", "diff_high", "method", "note"]
    return holm_within(pd.DataFrame(rows, columns=columns), ["family"])


def holm_within(table: pd.DataFrame, families: list[str]) -> pd.DataFrame:
    """Add `p_holm` (right after `p`): Holm within each family, the groups of the `families` columns."""
    table = table.copy()
    table.insert(table.columns.get_loc("p") + 1, "p_holm", np.nan)
    for _, family in table.groupby(families):
        table.loc[family.index, "p_holm"] = holm(family["p"].to_numpy())
    return table


def omnibus(fit: ModelFit) -> dict[str, float]:
    """Cluster-robust Wald chi-square that all conditions are equal. Descriptive only: with tens of
    clusters such multi-restriction tests over-reject (0.08–0.11 at a nominal 0.05 in simulation)."""
    restrictions = ", ".join(f"{condition_column(c)} = 0" for c in fit.conditions[1:])
    test = fit.result.wald_test(restrictions, cov_p=fit.cov, scalar=True, use_f=False)
    return {"outcome": fit.outcome.name, "chi2": float(test.statistic), "df": len(fit.conditions) - 1, "p": float(test.pvalue)}
