"""`python -m benchmarks [--tier quick|full] [--only NAME ...]`."""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from pathlib import Path

import benchmarks


def discover() -> dict[str, object]:
    """Every benchmarks/bench_*.py module with a `run(tier)` function."""
    found = {}
    for info in pkgutil.iter_modules([str(Path(benchmarks.__file__).parent)]):
        if info.name.startswith("bench_"):
            found[info.name.removeprefix("bench_")] = importlib.import_module(f"benchmarks.{info.name}")
    return found


def main(argv: list[str] | None = None) -> int:
    available = discover()
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description="Run benchmarks and rewrite benchmarks/RESULTS.md.")
    parser.add_argument("--tier", choices=["quick", "full"], default="quick", help="quick: ≤ 20 min on 2 cores, without fidelity; full: paper scale")
    parser.add_argument("--only", nargs="+", choices=sorted(available), help="run only these benchmarks")
    args = parser.parse_args(argv)
    # A module with QUICK_TIER = False (the fidelity runs) is left out of a plain quick run, which
    # must fit in 20 minutes; `--only NAME` still runs it at its quick size.
    chosen = args.only or [n for n in sorted(available) if args.tier == "full" or getattr(available[n], "QUICK_TIER", True)]
    for name in chosen:
        print(f"== benchmark {name} ({args.tier})", flush=True)
        available[name].run(args.tier)
    return 0


if __name__ == "__main__":
    sys.exit(main())
