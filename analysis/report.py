"""`python analysis/report.py RESPONSES --out DIR`: the analyst's report from a responses export.

RESPONSES is an exported responses.csv or a database URL (read through the `responses_long` view).
Writes APA-style tables (Markdown, LaTeX, CSV), figures (PNG, SVG), report.md and one self-contained
report.html into DIR. Problems that do not stop the analysis (too few images for clustered errors,
non-convergence, a step that could not run) are listed as warnings in the report itself.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from analysis import figures
from analysis.agreement import alpha_by_condition
from analysis.design import Declared, declared_conditions
from analysis.descriptives import condition_summary, rating_distribution
from analysis.exclusions import ExclusionRules, apply_exclusions, load_rules
from analysis.html_report import Section, render
from analysis.inference import (OUTCOMES, Layout, contrast_table, detect_layout, fit_model, omnibus, ordered_conditions,
                                planned_contrasts)
from analysis.loading import answers_frame, load_responses, one_line
from analysis.robustness import by_image, by_participant
from analysis.tables import Table, apa_sentence, fmt_with_ci, headline, plain_table, significance_table
from contracts import ContractError


class OneLineParser(argparse.ArgumentParser):
    """Usage errors in one line (argparse prints the whole usage first)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {value}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python analysis/report.py",
        description="Significance tables, figures and an HTML report from a study's responses "
                    "(responses.csv export, or a database URL read through the responses_long view).",
    )
    parser.add_argument("responses", help="responses.csv exported by `flask --app study export`, a Psych-DS folder "
                                          "(export --format psych-ds), or a database URL "
                                          "such as sqlite:///instance/study.sqlite or postgresql+psycopg://…")
    parser.add_argument("--out", type=Path, default=Path("report"), help="output directory (default: ./report)")
    parser.add_argument("--config", type=Path, help="analysis config (TOML) with [exclusions] and [design] tables")
    parser.add_argument("--manifest", type=Path, help="stimulus manifest whose conditions are the declared ones "
                                                      "(default: [design] conditions of the config, else the export's data_dictionary.csv)")
    rules = parser.add_argument_group("exclusions (override the config)")
    rules.add_argument("--min-rt-ms", type=float, help="answers faster than this are implausible (default 250)")
    rules.add_argument("--max-fast-share", type=float, help="exclude sessions with more too-fast answers than this share (default 0.25)")
    rules.add_argument("--max-catch-failed", type=int, help="exclude sessions failing more catch trials than this (default 0)")
    rules.add_argument("--drop-missing-rt", action="store_true",
                       help="leave out answers without a reaction time (otherwise they refuse the export), counted in the report")
    rules.add_argument("--include-incomplete", action="store_const", const=False, dest="require_completed",
                       help="keep sessions that did not complete")
    rules.add_argument("--include-pilots", action="store_const", const=False, dest="drop_pilots", help="keep pilot sessions")
    parser.add_argument("--covariate-l2", action="store_true",
                        help="also fit the primary models with the L2 perturbation norm as a covariate")
    parser.add_argument("--bootstrap", type=at_least(1), default=1000, help="two-way bootstrap replicates (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and power simulations")
    parser.add_argument("--sensitivity", action="store_true",
                        help="also fit linear mixed models with crossed variance components (statsmodels MixedLM; slower)")
    parser.add_argument("--crosscheck-r", action="store_true",
                        help="fit glmer / clmm with crossed random effects in R (lme4, ordinal) and show them beside ours")
    power = parser.add_argument_group("power (simulation over participants × source images)")
    power.add_argument("--power", action="store_true", help="simulate power per primary contrast over a grid")
    power.add_argument("--power-participants", default="30,60,120", help="participant counts (default 30,60,120)")
    power.add_argument("--power-sources", default="40,80,160", help="source-image counts, multiples of 4 (default 40,80,160)")
    power.add_argument("--power-studies", type=at_least(1), default=100, help="simulated studies per grid cell (default 100)")
    power.add_argument("--power-target-effect", type=float, default=0.5,
                       help="assumed gradreg − normal effect on the target-label log-odds (default 0.5)")
    power.add_argument("--power-rating-effect", type=float, default=0.3,
                       help="assumed gradreg − normal effect on the latent rating logit (default 0.3)")
    power.add_argument("--power-label-sds", help="participant and image-unit SDs of the target label (logit scale), e.g. 0.8,0.8; "
                                                 "default: estimated from the data when it has ≥ 10 participants, else 0.8,0.8")
    return parser


@dataclass
class Report:
    """What the run produced, in reading order; `warnings` end up at the top of the HTML."""
    out: Path
    sections: list[Section] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    @contextlib.contextmanager
    def step(self, what: str) -> Iterator[None]:
        """Run one part; if it fails, say so in the report and carry on with the rest."""
        try:
            with warnings.catch_warnings():
                # Degenerate cells (one participant, no variance) give NaN, which the tables print as "—".
                warnings.simplefilter("ignore", RuntimeWarning)
                yield
        except Exception as exc:  # one failing part (e.g. too little data) must not lose the others
            self.warnings.append(f"{what} could not be computed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            if not isinstance(exc, ValueError):  # ValueError carries a full explanation; anything else may be a bug
                traceback.print_exc(file=sys.stderr)

    def add(self, section: Section) -> Section:
        self.sections.append(section)
        for table in section.tables:
            self.files += table.write(self.out)
        return section


def descriptive_tables(summary: pd.DataFrame) -> Table:
    """Wide table: one row per condition, each statistic with its two-way bootstrap interval."""
    rows = []
    for condition, part in summary.groupby("condition", sort=False):
        row = {"Condition": condition, "Participants": str(part["participants"].iloc[0]),
               "Images": str(part["images"].iloc[0]), "Sources": str(part["sources"].iloc[0])}
        for r in part.itertuples():
            digits = 0 if r.column == "rt_ms" else 2 if r.column in ("rating", "norm_l2") else 3
            row[f"{r.statistic} [95% CI]"] = fmt_with_ci(r.estimate, r.ci_low, r.ci_high, digits)
        rows.append(row)
    frame = pd.DataFrame(rows).fillna("—")
    return Table("descriptives", "Descriptive statistics per condition", frame,
                 "Means over answers. 95% intervals from a two-way (pigeonhole) bootstrap that resamples participants and "
                 "image units independently (Owen 2007); in the matched layout it is conservative.", summary)


def primary_section(report: Report, answers: pd.DataFrame, layout: Layout, declared: Declared, covariate: bool) -> pd.DataFrame:
    """The primary models' section; returns the primary family's rows (for the summary)."""
    suffix = "_l2" if covariate else ""
    label = " (adjusted for the L2 norm)" if covariate else ""
    section = Section(f"Primary inference{label}", (
        "Crossed participants × images. Decisions rest on the Holm-adjusted single contrasts; the omnibus test below "
        "is descriptive (cluster-robust Wald tests of several restrictions over-reject with tens of clusters). "
        + ("The L2 norm of each image's perturbation enters as a centred covariate, separating 'looks more like the "
           "target' from 'was changed more'; Δ averages over the observed norms." if covariate else "")))
    omnibus_rows, diagnostics, sentences, primary = [], [], [], []
    clustering = f"participants × {'source images' if layout.unit == 'source_id' else 'images'}"
    for outcome in OUTCOMES:
        with report.step(f"{outcome.title}: primary model{label}"):
            fit = fit_model(answers, outcome, layout, covariate=covariate)
            report.warnings += fit.warnings
            table = contrast_table(fit, planned_contrasts(declared.conditions))
            section.tables.append(significance_table(table, f"{outcome.title}: planned contrasts{label}",
                                                     f"contrasts_{outcome.name}{suffix}", clustering))
            primary.append(table[table["family"] == "primary"])
            sentences += [apa_sentence(row) for _, row in primary[-1].iterrows() if not row["note"]]
            omnibus_rows.append(omnibus(fit))
            diagnostics.append({"outcome": outcome.name, "model": fit.formula, "method": fit.method, "answers": fit.n_obs,
                                "participants": fit.n_participants, "image units": len(set().union(*fit.units.values())),
                                "converged": "yes" if fit.converged else "NO"})
    if omnibus_rows:
        section.tables.append(plain_table(pd.DataFrame(omnibus_rows), f"omnibus{suffix}", f"Omnibus Wald tests{label} (descriptive only)",
                                          "Two-way cluster-robust Wald chi-square that all conditions are equal. Over-sized in "
                                          "simulation (0.08–0.11 at a nominal .05): not a basis for decisions."))
        section.tables.append(plain_table(pd.DataFrame(diagnostics), f"model_diagnostics{suffix}", f"Models as fitted{label}"))
    section.intro += "\n\nIn words (primary family):\n\n" + "\n\n".join(sentences) if sentences else ""
    report.add(section)
    return pd.concat(primary, ignore_index=True) if primary else pd.DataFrame()


OUTCOME_WORDS = {"target": "target-label rate", "true": "true-label rate", "rating": "legitimacy rating"}


def summary_section(report: Report, answers: pd.DataFrame, declared: Declared, primary: pd.DataFrame) -> Section:
    """The report's first screen: what was compared, on whom, and what each primary contrast found."""
    analysed = answers[answers["condition"] != "clean"]
    defended = [c for c in declared.conditions[1:]]
    intro = (f"Compared: adversarial images made against the {', '.join(defended)} model{'s' if len(defended) > 1 else ''}, each "
             f"against those made against the {declared.conditions[0]} model, judged by {analysed['participant_id'].nunique()} "
             f"participants on {analysed['stimulus_id'].nunique()} images from {analysed['source_id'].nunique()} sources "
             f"({len(analysed)} answers after exclusions). Found (difference with 95% CI; Holm-adjusted within each outcome):")
    findings = [f"{OUTCOME_WORDS[row['outcome']].capitalize()}, {row['contrast']}: " + (row["note"] if row["note"] else headline(row))
                for _, row in primary.iterrows()]
    section = Section("Answer", intro, findings=findings)
    if len(primary) and primary["diff"].notna().any():
        section.figures.append(figures.primary_effects(primary, report.out)[0])
    return section


def robustness_section(report: Report, answers: pd.DataFrame, layout: Layout, declared: Declared) -> None:
    section = Section("Robustness and fixed-image analyses", (
        "By-image (F2) tests treat images as the sample (calibrated in simulation, but they ignore participant × condition "
        "variation). By-participant tests average over images and so treat the shown images as fixed: they do NOT "
        "generalise to other images and in simulations of this design rejected true nulls far too often; they are shown "
        "only because readers expect them."))
    for outcome in OUTCOMES:
        with report.step(f"{outcome.title}: robustness tests"):
            contrasts = planned_contrasts(declared.conditions)
            item = by_image(answers, outcome.name, layout, contrasts)
            test = item["test"][item["p"].notna()].iloc[0] if item["p"].notna().any() else "no test could be computed"
            section.tables.append(plain_table(item, f"by_image_{outcome.name}", f"{outcome.title}: by-image (F2) tests",
                                              f"Per-image means; {test}. Holm within family."))
            primary = [k for k in contrasts if k.family == "primary"]
            fixed = by_participant(answers, outcome.name, primary)
            section.tables.append(plain_table(fixed, f"by_participant_{outcome.name}",
                                              f"{outcome.title}: by-participant tests (images fixed — not valid for images in general)",
                                              "Participant means per condition; paired t and Wilcoxon signed-rank. Secondary only."))
    report.add(section)


def write_outputs(report: Report, title: str, summary: str) -> None:
    out = report.out
    (out / "report.md").write_text(f"# {title}\n\n{summary}\n\n"
                                   + ("## Warnings\n\n" + "".join(f"- {w}\n" for w in report.warnings) + "\n" if report.warnings else "")
                                   + "".join(f"## {s.heading}\n\n{s.intro}\n\n" + "".join(f"- {f}\n" for f in s.findings) + "\n"
                                             + "\n".join(t.markdown() for t in s.tables)
                                             + "".join(f"\n![{f.stem}]({f.name})\n" for f in s.figures) + "\n"
                                             for s in report.sections))
    (out / "report.html").write_text(render(title, summary, report.warnings, report.sections))
    (out / "warnings.txt").write_text("".join(f"{w}\n" for w in report.warnings))


def software_versions() -> str:
    import scipy
    import statsmodels

    return (f"Python {platform.python_version()}, numpy {np.__version__}, pandas {pd.__version__}, scipy {scipy.__version__}, "
            f"statsmodels {statsmodels.__version__}")


REPORT_MARKERS = ("report.html", "warnings.txt")  # an existing --out holding one of these is an earlier report


def check_out(out: Path) -> None:
    """--out must be new, empty, or an earlier report (which is replaced whole, never merged)."""
    if out.exists() and not out.is_dir():
        raise ContractError(f"--out {out}", ["exists and is not a folder"])
    if out.is_dir() and any(out.iterdir()) and not any((out / m).is_file() for m in REPORT_MARKERS):
        raise ContractError(f"--out {out}", ["is a folder that holds other files, not an earlier report; choose a new folder"])


@contextlib.contextmanager
def atomic_folder(out: Path) -> Iterator[Path]:
    """A temporary sibling of `out` to write into; it replaces `out` only when the run succeeds, so
    `out` always holds one whole run (or nothing) and a failed run leaves no trace."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield tmp
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, old / out.name)
            os.replace(tmp, out)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    try:
        responses = load_responses(args.responses, allow_missing_rt=args.drop_missing_rt)
        rules = load_rules(args.config, {k: getattr(args, k) for k in
                                         ("min_rt_ms", "max_fast_share", "max_catch_failed", "require_completed", "drop_pilots")})
        declared = declared_conditions(args.config, args.manifest, args.responses, ordered_conditions(responses["condition"]))
        check_out(args.out)
        kept, consort = apply_exclusions(responses, rules)
        if kept.empty:
            raise ContractError("exclusions", [f"all {len(responses)} answers were excluded, nothing to analyse ("
                                               + "; ".join(f"{r.step.removeprefix('excluded: ')}: {r['answers removed']}"
                                                           for _, r in consort.iloc[1:-1].iterrows() if r["answers removed"])
                                               + "); check the rules or the export"])
    except ContractError as exc:
        print(f"report: error: {one_line(exc)}", file=sys.stderr)
        return 2
    with atomic_folder(args.out) as out:
        return write_report(args, Report(out), responses, kept, consort, rules, declared, started)


def write_report(args: argparse.Namespace, report: Report, responses: pd.DataFrame, kept: pd.DataFrame, consort: pd.DataFrame,
                 rules: ExclusionRules, declared: Declared, started: float) -> int:
    out = report.out
    counts = responses.groupby(["condition", "task"]).size().rename("answers").reset_index()
    counts.to_csv(out / "answer_counts.csv", index=False)

    answers = answers_frame(kept)
    if responses.attrs.get("dropped_missing_rt"):
        report.warnings.append(f"{responses.attrs['dropped_missing_rt']} answer(s) without a reaction time were left out "
                               "before the exclusion steps (--drop-missing-rt)")
    report.add(Section("Exclusions", " ".join(s + "." for s in rules.describe()) + " The steps apply in this order.",
                       [plain_table(consort, "exclusions", "Participants, sessions and answers through the exclusion steps (CONSORT-style)")]))
    layout = detect_layout(answers)
    analysable = set(answers.loc[answers["condition"] != "clean", "condition"])
    report.warnings += [f"declared condition {c} has no analysable answers: its contrasts are shown as not estimable and "
                        "still count in their Holm families" for c in declared.conditions if c not in analysable]
    undeclared = [c for c in ordered_conditions(answers["condition"]) if c not in declared.conditions and c != "clean"]
    report.warnings += [f"condition {c} has answers but was not declared ({declared.source}): described, never contrasted"
                        for c in undeclared]
    report.add(Section("Design", f"Declared conditions (from {declared.source}): {', '.join(declared.conditions)}; the "
                                 "contrast families are built from them. "
                                 f"Layout detected from source_id: {layout.name}; {layout.reason}. "
                                 f"{answers['participant_id'].nunique()} participants, {answers['stimulus_id'].nunique()} images from "
                                 f"{answers['source_id'].nunique()} sources, {len(answers)} answers after exclusions."))

    with report.step("Descriptives"):
        summary = condition_summary(answers, layout, args.bootstrap, args.seed)
        section = Section("Descriptives", tables=[descriptive_tables(summary)], figures=[figures.condition_intervals(summary, out)[0]])
        if answers["rating"].notna().any():
            distribution = rating_distribution(answers)
            section.tables.append(plain_table(distribution.reset_index(), "rating_distribution", "Ratings per scale point", digits=1))
            section.figures += [figures.rating_distribution(distribution, out)[0], figures.legitimacy_vs_l2(answers, out)[0]]
        report.add(section)

    primary = primary_section(report, answers, layout, declared, covariate=False)
    with report.step("Summary of the primary contrasts"):
        report.sections.insert(0, summary_section(report, answers, declared, primary))
    if args.covariate_l2:
        primary_section(report, answers, layout, declared, covariate=True)
    robustness_section(report, answers, layout, declared)

    with report.step("Agreement"):
        alpha = pd.concat([alpha_by_condition(answers, "response_label", "nominal", args.bootstrap, args.seed),
                           alpha_by_condition(answers, "rating", "ordinal", args.bootstrap, args.seed)], ignore_index=True)
        report.add(Section("Agreement", "Krippendorff's alpha per condition: raters are participants, units are images "
                                        "(nominal for the chosen class, ordinal for ratings); 95% intervals from resampling images. "
                                        "Alpha describes the images; it is not a test of conditions.",
                           [plain_table(alpha, "agreement", "Krippendorff's alpha per condition")]))

    if args.sensitivity:
        from analysis.sensitivity import sensitivity_tables

        with report.step("Sensitivity analysis (MixedLM)"):
            tables, notes = sensitivity_tables(answers, layout)
            report.warnings += notes
            report.add(Section("Sensitivity: linear mixed models with crossed random effects", (
                "statsmodels MixedLM, REML, one group with a variance component per random factor (crossed, not nested). "
                "Linear model on the raw ratings and linear-probability model for the target label; Wald z tests."), tables))
    if args.crosscheck_r:
        from analysis.rcheck import crosscheck_table

        with report.step("R cross-check (lme4 / ordinal)"):
            table, notes = crosscheck_table(answers, layout, declared.conditions)
            report.warnings += notes
            report.add(Section("Cross-check in R", (
                "glmer (labels) and clmm (ratings) with crossed random intercepts, beside the primary Python models. R's "
                "estimates are conditional (subject-specific) and therefore larger in size than our population-averaged ones; "
                "direction and significance should agree."), [table]))
    if args.power:
        from analysis.power import power_section

        with report.step("Power simulation"):
            report.add(power_section(args, answers, layout))

    title = "Human judgements of adversarial images: analysis report"
    summary_line = (f"{args.responses}: {len(responses)} answers received, {len(answers)} analysed from "
                    f"{answers['participant_id'].nunique()} participants. {software_versions()}. "
                    f"Generated in {time.perf_counter() - started:.1f} s.")
    write_outputs(report, title, summary_line)
    print(summary_line)
    for warning in report.warnings:
        print(f"warning: {warning}")
    print(f"wrote {args.out / 'report.html'} and {len(report.files)} table files")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
