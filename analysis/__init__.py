"""The analysis: what the analyst runs on the answers a study collected.

`python analysis/report.py RESPONSES --out DIR` (or `python -m analysis.report`), where RESPONSES is
an exported `responses.csv`, a Psych-DS folder (`flask --app study export --format psych-ds`) or a
database URL read through the `responses_long` view; all follow
`contracts/response_row.v1.schema.json`. Options: `--config FILE.toml` ([exclusions] rules, see
`analysis/config.example.toml`) and flags overriding them, `--covariate-l2`, `--sensitivity`
(crossed-variance-component MixedLM), `--crosscheck-r` (lme4 glmer / ordinal clmm via Rscript),
`--power` (participants × sources grid).
It needs neither torch nor flask: `pip install .[analysis]`.

Modules, one idea each: `loading` (reading and validating, derived outcomes), `exclusions` (rules and
the CONSORT table), `simulate` (studies with known effects, matched or nested layout),
`descriptives` (two-way bootstrap), `inference` (two-way cluster-robust logistic and
proportional-odds models, planned contrasts, Holm), `robustness` (by-image and images-fixed tests),
`agreement` (Krippendorff's alpha), `sensitivity` (MixedLM), `rcheck` (R), `power`, `calibration`
(Monte-Carlo checks of the primary tests), `tables` / `figures` / `html_report` (outputs) and
`report` (the command). Why the methods are these: docs/analysis.md.
"""
