"""The analysis: what the analyst runs on the answers a study collected.

`analysis` owns reading responses (an exported `responses.csv` or the `responses_long` view of a
study database; both follow `contracts/response_row.v1.schema.json`), exclusions, descriptives with
two-way bootstrap intervals, the crossed participant × image inference (cluster-robust logistic and
proportional-odds models, Holm-corrected contrasts, effect sizes), agreement, power, and the
report (Markdown / LaTeX / CSV tables, PNG / SVG figures, HTML). It needs neither torch nor flask:
`pip install .[analysis]`. Entry point: `python analysis/report.py RESPONSES --out DIR`.
"""
