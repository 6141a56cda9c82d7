"""`engine` console script: one subcommand per researcher task, `--help` on each."""
from __future__ import annotations

import argparse
import sys

from engine import __version__, evaluate, explain, import_model, stimuli, sweep, zoo
from engine.architectures import ArchitectureError
from engine.checkpoints import CheckpointError
from engine.config import ConfigError
from engine.data import EMBEDDED, SPEC_HELP, DatasetError, load_dataset


class UserError(Exception):
    """A mistake in the user's input; printed as one line, never as a traceback."""


def cmd_data(args: argparse.Namespace) -> None:
    ds = load_dataset(args.dataset, seed=args.seed)
    print(f"dataset {ds.name} (source {ds.source}, sha256 {ds.sha256[:12]}…), images {'×'.join(map(str, ds.test.x.shape[1:]))}, "
          f"classes {', '.join(ds.classes)}")
    for name in ("train", "val", "test"):
        split = getattr(ds, name)
        counts = split.y.bincount(minlength=len(ds.classes)).tolist()
        print(f"  {name:5s} {len(split.y):6d} images, per class {counts}, pixels in [{split.x.min():.0f}, {split.x.max():.0f}]")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="engine", description="Train the model zoo, attack it, and write stimulus sets.")
    parser.add_argument("--version", action="version", version=f"engine {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("data", help="load a data set and print its splits", description="Load a data set and print its splits.")
    p.add_argument("--dataset", default=EMBEDDED, help=f"{SPEC_HELP} (default {EMBEDDED})")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/validation/test split (default 0)")
    p.set_defaults(func=cmd_data)
    for module in (zoo, import_model, sweep, evaluate, explain, stimuli):
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (DatasetError, UserError, ConfigError, CheckpointError, ArchitectureError) as exc:
        print(f"engine {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
