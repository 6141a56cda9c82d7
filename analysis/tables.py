"""APA-style tables: one tidy numeric frame (CSV) and one formatted frame (Markdown, LaTeX, HTML).

APA 7 number style: p with three decimals and no leading zero, "< .001" below that (never
"p = .000"); estimates with two decimals; intervals in brackets.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

LATEX_SPECIAL = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                 "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}",
                 "−": "$-$", "×": r"$\times$", "Δ": r"$\Delta$", "α": r"$\alpha$", "<": "$<$", ">": "$>$"}


def fmt_p(p: float) -> str:
    if p is None or not np.isfinite(p):
        return "—"
    if p < 0.001:
        return "< .001"
    return f"{p:.3f}".lstrip("0") if p < 1 else "1.000"


def fmt_num(x: float, digits: int = 2) -> str:
    if x is None or not np.isfinite(x):
        return "—"
    return f"{x:.{digits}f}".replace("-", "−")


def fmt_ci(low: float, high: float, digits: int = 2) -> str:
    return f"[{fmt_num(low, digits)}, {fmt_num(high, digits)}]"


def fmt_with_ci(value: float, low: float, high: float, digits: int = 2) -> str:
    return f"{fmt_num(value, digits)} {fmt_ci(low, high, digits)}"


@dataclass
class Table:
    name: str                    # file stem in the output folder
    title: str
    frame: pd.DataFrame          # formatted strings, as printed
    note: str = ""
    data: pd.DataFrame | None = field(default=None, repr=False)  # numbers for the CSV (default: frame)

    def markdown(self) -> str:
        cells = self.frame.astype(str).map(lambda v: v.replace("|", r"\|"))
        lines = [f"**{self.title}**", "", "| " + " | ".join(self.frame.columns) + " |",
                 "|" + "|".join("---" for _ in self.frame.columns) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in cells.itertuples(index=False)]
        if self.note:
            lines += ["", f"*Note.* {self.note}"]
        return "\n".join(lines) + "\n"

    def latex(self) -> str:
        def esc(text: object) -> str:
            return "".join(LATEX_SPECIAL.get(ch, ch) for ch in str(text))

        body = [" & ".join(esc(v) for v in row) + r" \\" for row in self.frame.itertuples(index=False)]
        lines = [r"% needs \usepackage{booktabs}", r"\begin{table}[htbp]", r"\centering", rf"\caption{{{esc(self.title)}}}", rf"\label{{tab:{self.name}}}",
                 r"\begin{tabular}{" + "l" * len(self.frame.columns) + "}", r"\toprule",
                 " & ".join(esc(c) for c in self.frame.columns) + r" \\", r"\midrule", *body, r"\bottomrule", r"\end{tabular}"]
        if self.note:
            lines += [r"\par\smallskip", rf"\parbox{{\linewidth}}{{\footnotesize\emph{{Note.}} {esc(self.note)}}}"]
        return "\n".join(lines + [r"\end{table}"]) + "\n"

    def html(self) -> str:
        note = f'<p class="note"><em>Note.</em> {html.escape(self.note)}</p>' if self.note else ""
        return (f'<figure class="table" id="{self.name}"><figcaption>{html.escape(self.title)}</figcaption>'
                f"{self.frame.to_html(index=False, escape=True, border=0)}{note}</figure>")

    def write(self, out: Path) -> list[Path]:
        paths = [out / f"{self.name}.md", out / f"{self.name}.tex", out / f"{self.name}.csv"]
        paths[0].write_text(self.markdown())
        paths[1].write_text(self.latex())
        (self.data if self.data is not None else self.frame).to_csv(paths[2], index=False)
        return paths


def significance_table(contrasts: pd.DataFrame, title: str, name: str, clustering: str) -> Table:
    """Contrast | family | b | SE | 95 % CI | t(df) | p | p Holm | ratio [CI] | Δ [CI]."""
    first = contrasts.iloc[0]
    is_rating = first["diff_name"].startswith("mean rating")
    diff_digits = 2 if is_rating else 3
    frame = pd.DataFrame({
        "Contrast": contrasts["contrast"],
        "Family": contrasts["family"],
        "b": [note or fmt_num(b) for b, note in zip(contrasts["estimate"], contrasts["note"])],
        "SE": contrasts["se"].map(fmt_num),
        "95% CI": [fmt_ci(lo, hi) for lo, hi in zip(contrasts["ci_low"], contrasts["ci_high"])],
        "t (df)": [f"{fmt_num(t)} ({int(df)})" if np.isfinite(df) else "—" for t, df in zip(contrasts["t"], contrasts["df"])],
        "p": contrasts["p"].map(fmt_p),
        "p (Holm)": contrasts["p_holm"].map(fmt_p),
        f"{first['ratio_name']} [95% CI]": [fmt_with_ci(r, lo, hi) for r, lo, hi in
                                            zip(contrasts["ratio"], contrasts["ratio_low"], contrasts["ratio_high"])],
        f"Δ {first['diff_name']} [95% CI]": [fmt_with_ci(d, lo, hi, diff_digits) for d, lo, hi in
                                             zip(contrasts["diff"], contrasts["diff_low"], contrasts["diff_high"])],
    })
    scale = "cumulative log-odds (positive = higher ratings)" if is_rating else "log-odds"
    families = contrasts.groupby("family").size()
    note = (f"Method: {first['method']}. b is a population-averaged (marginal) {scale} difference, smaller in size than a "
            f"mixed model's conditional estimate by design. Standard errors are clustered two ways ({clustering}; Cameron, "
            "Gelbach & Miller 2011); t reference with df = the smaller number of clusters − 1. Holm adjustment within each of "
            "this outcome's declared families: " + "; ".join(f"{f} (k = {n})" for f, n in families.items())
            + " — primary = each defended model vs normal, secondary = the defended models among themselves; a contrast that is not "
            "estimable still counts in its family. "
            f"Δ is the model-implied difference in {first['diff_name'].replace(' difference', '')} (delta-method interval).")
    return Table(name, title, frame, note, contrasts)


# Column names of the numeric frames (kept in the CSV files) as the printed tables head them.
HEADERS = {"outcome": "Outcome", "family": "Family", "contrast": "Contrast", "estimate": "Estimate", "se": "SE",
           "ci_low": "95% CI low", "ci_high": "95% CI high", "p": "p", "p_holm": "p (Holm)", "p_value": "p",
           "statistic": "Statistic", "n": "n", "effect": "Effect size", "effect_name": "Effect size measure", "test": "Test",
           "note": "Note", "chi2": "χ²", "df": "df", "z": "z", "d_WKJ": "d (Westfall–Kenny–Judd)", "condition": "Condition",
           "measure": "Measure", "level": "Level", "alpha": "Krippendorff's α", "images": "Images", "raters": "Raters",
           "step": "Step", "participants": "Participants", "sessions": "Sessions", "answers": "Answers",
           "participants removed": "Participants removed", "sessions removed": "Sessions removed",
           "answers removed": "Answers removed", "model": "Model", "method": "Method", "converged": "Converged",
           "image units": "Image units", "component": "Component", "variance": "Variance", "median": "Median",
           "power": "Power", "sources": "Sources"}


def plain_table(data: pd.DataFrame, name: str, title: str, note: str = "", digits: int = 3,
                p_columns: tuple[str, ...] = ("p", "p_holm", "p_value")) -> Table:
    """Any numeric frame, numbers rounded, p-values in APA style."""
    def cell(column: str, value: object) -> str:
        if isinstance(value, (float, np.floating)):
            return fmt_p(value) if column in p_columns else fmt_num(value, digits)
        return "" if value is None else str(value)

    frame = pd.DataFrame({HEADERS.get(str(c), str(c)): [cell(c, v) for v in data[c]] for c in data.columns})
    return Table(name, title, frame, note, data)


ALPHA = 0.05
WHAT = {"target": "labelled as the attack's target class {} often", "true": "labelled as their true class {} often",
        "rating": "rated as {} legitimate examples of the target class"}
MEASURE = {"target": "how often they were labelled as the attack's target class",
           "true": "how often they were labelled as their true class", "rating": "how legitimate they were rated"}


def _shift(row: pd.Series) -> str:
    """The response-scale difference with its interval: percentage points or scale points."""
    scale, digits, unit = (1, 2, "scale points") if row["outcome"] == "rating" else (100, 1, "percentage points")
    return (f"{fmt_num(scale * row['diff'], digits)} {unit}, 95% CI "
            f"{fmt_ci(scale * row['diff_low'], scale * row['diff_high'], digits)}")


def finding(row: pd.Series) -> str:
    """What one contrast found, in words: a direction only when it is significant after Holm."""
    a, b = row["contrast"].split(" − ")
    if row["p_holm"] < ALPHA:
        return (f"images made against the {a} model were {WHAT[row['outcome']].format('more' if row['estimate'] > 0 else 'less')} "
                f"than images made against the {b} model")
    return f"no significant difference between images made against the {a} and the {b} model in {MEASURE[row['outcome']]}"


def headline(row: pd.Series) -> str:
    """One primary contrast for the report's first screen: effect with interval, Holm p, and in a
    few words what it means (a direction only when significant after Holm)."""
    meaning = (WHAT[row["outcome"]].format("more" if row["estimate"] > 0 else "less") if row["p_holm"] < ALPHA
               else "no significant difference")
    return f"{_shift(row)}; Holm p {_p_phrase(row['p_holm'])}: {meaning}"


def apa_sentence(row: pd.Series) -> str:
    """One planned contrast in words, APA style, ready for a Results section."""
    said = finding(row)
    return (f"{said[0].upper()}{said[1:]} (b = {fmt_num(row['estimate'])}, SE = {fmt_num(row['se'])}, t({int(row['df'])}) = "
            f"{fmt_num(row['t'])}, p {_p_phrase(row['p'])}, Holm-adjusted p {_p_phrase(row['p_holm'])}; {row['ratio_name']} = "
            f"{fmt_with_ci(row['ratio'], row['ratio_low'], row['ratio_high'])}; {_shift(row)}).")


def _p_phrase(p: float) -> str:
    formatted = fmt_p(p)
    return formatted if formatted.startswith("<") else f"= {formatted}"
