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

from analysis.inference import OUTCOMES, Layout, analysed_data, contrast_table, fit_model, planned_contrasts
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


def crosscheck_table(answers: pd.DataFrame, layout: Layout) -> tuple[Table, list[str]]:
    """Our primary contrasts vs normal beside R's, with whether direction and significance agree."""
    r = fit_in_r(answers, layout).set_index(["outcome", "condition"])
    rows, notes = [], []
    for outcome in OUTCOMES:
        fit = fit_model(answers, outcome, layout)
        ours = contrast_table(fit, [k for k in planned_contrasts(fit.conditions) if k.family == "primary"])
        for row in ours.itertuples():
            theirs = r.loc[(outcome.name, row.contrast.split(" − ")[0])]
            rows.append({"outcome": outcome.name, "contrast": row.contrast, "b (Python, marginal)": row.estimate, "SE": row.se,
                         "p": row.p, "b (R, conditional)": theirs["estimate"], "SE (R)": theirs["se"], "p (R)": theirs["p"],
                         "same direction": "yes" if np.sign(row.estimate) == np.sign(theirs["estimate"]) else "NO",
                         "same decision at .05": "yes" if (row.p < 0.05) == (theirs["p"] < 0.05) else "NO",
                         "R fit": f"{theirs['note']} ({theirs['seconds']:.1f} s)"})
    table = pd.DataFrame(rows)
    disagreements = table[(table["same direction"] == "NO") | (table["same decision at .05"] == "NO")]
    notes += [f"R cross-check: for {d.outcome}, {d.contrast}, lme4/ordinal differ from the primary model in direction or in "
              "significance at .05; read that contrast with care" for d in disagreements.itertuples()]
    return plain_table(table, "crosscheck_r", "Primary contrasts vs normal: Python (two-way cluster-robust) beside R (lme4 glmer / ordinal clmm)",
                       f"R random effects: {random_terms(layout)}; Laplace approximation; Wald z. Unadjusted p.",
                       p_columns=("p", "p (R)")), notes
