"""`python analysis/report.py RESPONSES --out DIR`: the analyst's report from a responses export."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the checkout importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd

from contracts import ContractError, validate_responses_frame


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python analysis/report.py",
        description="Significance tables and figures from a study's responses (CSV export of responses_long).",
    )
    parser.add_argument("responses", type=Path, help="responses.csv exported by `flask --app study export`")
    parser.add_argument("--out", type=Path, default=Path("report"), help="output directory (default: ./report)")
    return parser


def load_responses(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise ContractError(f"responses file {path}", [f"{path} does not exist; pass the responses.csv of an export"])
    return validate_responses_frame(pd.read_csv(path, keep_default_na=True))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        responses = load_responses(args.responses)
    except ContractError as exc:
        print(f"report: error: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    counts = responses.groupby(["condition", "task"]).size().rename("answers").reset_index()
    counts.to_csv(args.out / "answer_counts.csv", index=False)
    print(f"{len(responses)} answers from {responses['participant_id'].nunique()} participants")
    print(counts.to_string(index=False))
    print(f"wrote {args.out / 'answer_counts.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
