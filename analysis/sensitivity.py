"""Sensitivity analysis: linear mixed models with crossed random intercepts (statsmodels MixedLM).

statsmodels' MixedLM is group-based; crossed factors are written as one constant group with one
variance component per factor (`vc_formula`), never as `groups=participant` plus an image
component, which would give image effects nested within participants (statsmodels #9279). This
reproduces lme4's `lmer` REML fit (docs/analysis.md). Two models: the raw
ratings (the metric analysis most papers report; Liddell & Kruschke's caveats apply) and the
linear probability of the target label. Wald z tests only (no Satterthwaite df in statsmodels).
BinomialBayesMixedGLM is deliberately absent: its posterior SDs are far too small for p-values here.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from patsy import DesignInfo
from scipy import stats

from analysis.inference import Layout, analysed_data, holm_within, hypothesis, planned_contrasts
from analysis.tables import Table, plain_table


@dataclass
class MixedFit:
    outcome: str
    conditions: list[str]
    params: pd.Series
    cov: pd.DataFrame
    variance_components: dict[str, float]   # by factor, plus "residual"
    converged: bool
    seconds: float
    warnings: list[str]
    result: object = field(repr=False)


def random_factors(layout: Layout) -> dict[str, str]:
    """Variance components: participant and image, plus the source digit when it is shared (matched)."""
    factors = {"participant": "0 + C(participant_id)", "image": "0 + C(stimulus_id)"}
    if layout.name == "matched" or layout.unit == "source_id":
        factors["source"] = "0 + C(source_id)"
    return factors


def fit_crossed_lmm(answers: pd.DataFrame, outcome: str, layout: Layout) -> MixedFit:
    data, conditions = analysed_data(answers, outcome)
    data = data.assign(condition=pd.Categorical(data["condition"], categories=conditions), one=1)
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = smf.mixedlm(f"{outcome} ~ C(condition)", data, groups="one", re_formula="0", vc_formula=random_factors(layout))
        result = model.fit(reml=True, method=["lbfgs", "bfgs"])  # lbfgs first: the default bfgs stalls on crossed fits
    notes = sorted({f"MixedLM ({outcome}): {w.message}" for w in caught if not issubclass(w.category, (DeprecationWarning, FutureWarning))})
    if not result.converged:
        notes.append(f"MixedLM ({outcome}) did not converge; its variance components are not to be trusted")
    vc = dict(zip(model.exog_vc.names, np.asarray(result.vcomp))) | {"residual": float(result.scale)}
    fixed = [n for n in result.params.index if n == "Intercept" or n.startswith("C(condition)")]
    return MixedFit(outcome, conditions, result.params[fixed], result.cov_params().loc[fixed, fixed], vc,
                    bool(result.converged), time.perf_counter() - started, notes, result)


def mixed_contrasts(fit: MixedFit) -> pd.DataFrame:
    """All planned contrasts, Wald z, Holm within family; Westfall–Kenny–Judd d = Δ / √(total variance)."""
    total_sd = np.sqrt(sum(fit.variance_components.values()))
    rows = []
    for k in planned_contrasts(fit.conditions):
        # MixedLM's t_test takes no strings: patsy turns the hypothesis into its contrast matrix
        test = fit.result.t_test(DesignInfo(list(fit.params.index)).linear_constraint(hypothesis(fit.conditions[0], k)).coefs)
        estimate, se = float(test.effect[0]), float(np.asarray(test.sd).ravel()[0])
        rows.append({"outcome": fit.outcome, "family": k.family, "contrast": f"{k.a} − {k.b}", "estimate": estimate, "se": se,
                     "ci_low": estimate - 1.96 * se, "ci_high": estimate + 1.96 * se, "z": estimate / se,
                     "p": 2 * stats.norm.sf(abs(estimate / se)), "d_WKJ": estimate / total_sd})
    return holm_within(pd.DataFrame(rows), ["family"])


def sensitivity_tables(answers: pd.DataFrame, layout: Layout) -> tuple[list[Table], list[str]]:
    tables, notes, components = [], [], []
    for outcome, title in (("rating", "Rating (1–k scale points), linear mixed model"),
                           ("target", "Target label, linear probability mixed model")):
        fit = fit_crossed_lmm(answers, outcome, layout)
        notes += fit.warnings
        tables.append(plain_table(mixed_contrasts(fit), f"sensitivity_{outcome}", title,
                                  f"MixedLM REML, crossed variance components ({', '.join(random_factors(layout))}); Wald z; "
                                  f"{'converged' if fit.converged else 'NOT converged'} in {fit.seconds:.1f} s. d_WKJ = difference / "
                                  "√(sum of all variance components)."))
        components += [{"outcome": outcome, "component": name, "variance": v, "SD": np.sqrt(v)} for name, v in fit.variance_components.items()]
    tables.append(plain_table(pd.DataFrame(components), "sensitivity_variance_components", "Variance components of the mixed models"))
    return tables, notes
