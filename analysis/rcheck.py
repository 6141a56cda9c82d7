"""Cross-check in R: glmer (labels) and clmm (ratings) with crossed random intercepts, via Rscript.

R's lme4 and ordinal are the reference implementations for crossed mixed models (Debian ships
them as r-cran-lme4 and r-cran-ordinal). Their estimates are conditional (subject-specific) and so
larger in size than our population-averaged ones; the check is that direction and significance
agree. Only data go to R (a temporary CSV) and only fixed effects come back.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.inference import OUTCOMES, Layout, analysed_data, contrast_table, fit_model, holm, planned_contrasts
from analysis.tables import Table, plain_table

R_SCRIPT = r"""
args <- commandArgs(trailingOnly = TRUE)  # data.csv out.csv random-terms outcomes reference
suppressMessages({library(lme4); library(ordinal)})
d <- read.csv(args[1], stringsAsFactors = FALSE)
rows <- list()
for (r in unique(d$replicate)) {  # one data set, or many simulated ones in a single R session
  dr <- d[d$replicate == r, ]
  dr$condition <- relevel(factor(dr$condition), ref = args[5])
  for (y in strsplit(args[4], ",")[[1]]) {
    sub <- dr[!is.na(dr[[y]]), ]
    if (y == "rating") {
      sub$rating <- factor(sub$rating, ordered = TRUE)
      elapsed <- system.time(m <- clmm(as.formula(paste("rating ~ condition +", args[3])), data = sub))[["elapsed"]]
      note <- paste("clmm Laplace; convergence code", m$optRes$convergence)
    } else {
      elapsed <- system.time(m <- glmer(as.formula(paste(y, "~ condition +", args[3])), data = sub, family = binomial))[["elapsed"]]
      note <- paste(c("glmer Laplace", if (isSingular(m)) "singular fit", m@optinfo$conv$lme4$messages), collapse = "; ")
    }
    cf <- summary(m)$coefficients
    keep <- grepl("^condition", rownames(cf))
    rows[[length(rows) + 1]] <- data.frame(replicate = r, outcome = y, condition = sub("^condition", "", rownames(cf)[keep]),
                                           estimate = cf[keep, 1], se = cf[keep, 2], p = cf[keep, 4], seconds = elapsed, note = note)
  }
}
write.csv(do.call(rbind, rows), args[2], row.names = FALSE)
"""


def r_available() -> bool:
    """Rscript on PATH with lme4 and ordinal installed."""
    if shutil.which("Rscript") is None:
        return False
    probe = subprocess.run(["Rscript", "-e", "suppressMessages({library(lme4); library(ordinal)})"], capture_output=True)
    return probe.returncode == 0


def random_terms(layout: Layout) -> str:
    """lme4 syntax for the crossed structure: participant and image, plus the source when shared."""
    terms = ["(1 | participant_id)", "(1 | stimulus_id)"]
    if layout.unit == "source_id":
        terms.insert(1, "(1 | source_id)")
    return " + ".join(terms)


def fit_in_r(answers: pd.DataFrame, layout: Layout, outcomes: tuple[str, ...] = ("target", "true", "rating"),
             timeout: float = 1800) -> pd.DataFrame:
    """Fixed effects vs the reference condition from R: replicate, outcome, condition, estimate, se, p, seconds, note.

    A `replicate` column in `answers` (simulated studies stacked) fits each replicate separately."""
    if not r_available():
        raise RuntimeError("R with lme4 and ordinal is not installed (Debian: apt-get install r-cran-lme4 r-cran-ordinal)")
    columns = ["replicate", "participant_id", "stimulus_id", "source_id", "condition", *outcomes]
    data = answers.assign(replicate=answers.get("replicate", 0)).loc[answers["condition"] != "clean", columns]
    with tempfile.TemporaryDirectory(prefix="rcheck-") as tmp:
        script, data_csv, out_csv = Path(tmp, "fit.R"), Path(tmp, "data.csv"), Path(tmp, "out.csv")
        script.write_text(R_SCRIPT)
        data.to_csv(data_csv, index=False)
        reference = analysed_data(data, outcomes[0])[1][0]
        result = subprocess.run(["Rscript", str(script), str(data_csv), str(out_csv), random_terms(layout), ",".join(outcomes), reference],
                                capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"Rscript failed: {result.stderr.strip().splitlines()[-1] if result.stderr.strip() else result.returncode}")
        return pd.read_csv(out_csv, keep_default_na=False, na_values=[""])


def same_decisions(table: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Whether Python and R agree in direction and in the decision at the same adjustment: raw p
    and Holm p within the declared primary family, both stated (the report decides on Holm)."""
    def agree(ours: pd.Series, theirs: pd.Series) -> list[str]:
        return ["—" if not (np.isfinite(a) and np.isfinite(b)) else "yes" if (a < alpha) == (b < alpha) else "NO"
                for a, b in zip(ours, theirs)]

    return table.assign(**{
        "same direction": ["—" if not (np.isfinite(a) and np.isfinite(b)) else "yes" if np.sign(a) == np.sign(b) else "NO"
                           for a, b in zip(table["b (Python, marginal)"], table["b (R, conditional)"])],
        f"same decision, raw p < {alpha:g}": agree(table["p"], table["p (R)"]),
        f"same decision, Holm p < {alpha:g}": agree(table["p (Holm)"], table["p (Holm, R)"]),
    })


def crosscheck_table(answers: pd.DataFrame, layout: Layout, declared: tuple[str, ...]) -> tuple[Table, list[str]]:
    """Our primary contrasts vs normal beside R's, with whether direction and decisions agree."""
    r = fit_in_r(answers, layout).set_index(["outcome", "condition"])
    rows = []
    for outcome in OUTCOMES:
        fit = fit_model(answers, outcome, layout)
        ours = contrast_table(fit, [k for k in planned_contrasts(declared) if k.family == "primary"])
        theirs = [r.loc[(outcome.name, row.contrast.split(" − ")[0])] if np.isfinite(row.p) else None for row in ours.itertuples()]
        r_p = np.array([t["p"] if t is not None else np.nan for t in theirs])
        for row, t, p_holm in zip(ours.itertuples(), theirs, holm(r_p)):  # R's Holm over the same declared family
            rows.append({"outcome": outcome.name, "contrast": row.contrast, "b (Python, marginal)": row.estimate, "SE": row.se,
                         "p": row.p, "p (Holm)": row.p_holm, "b (R, conditional)": np.nan if t is None else t["estimate"],
                         "SE (R)": np.nan if t is None else t["se"], "p (R)": np.nan if t is None else t["p"], "p (Holm, R)": p_holm,
                         "R fit": row.note if t is None else f"{t['note']} ({t['seconds']:.1f} s)"})
    table = same_decisions(pd.DataFrame(rows))
    disagree = table[(table.iloc[:, -3:] == "NO").any(axis=1)]
    notes = [f"R cross-check: for {d.outcome}, {d.contrast}, lme4/ordinal differ from the primary model in direction or in "
             "the decision at .05 (raw or Holm); read that contrast with care" for d in disagree.itertuples()]
    return plain_table(table, "crosscheck_r", "Primary contrasts vs normal: Python (two-way cluster-robust) beside R (lme4 glmer / ordinal clmm)",
                       f"R random effects: {random_terms(layout)}; Laplace approximation; Wald z. Decisions compared at the same "
                       "adjustment: unadjusted p, and Holm over the declared primary family (the report's decisions rest on Holm).",
                       p_columns=("p", "p (Holm)", "p (R)", "p (Holm, R)")), notes
