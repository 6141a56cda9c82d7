"""Rewrite one capability's section of benchmarks/RESULTS.md, leaving the others as they are."""
from __future__ import annotations

import datetime as dt
import os
import platform
import re
import sys
from dataclasses import dataclass
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")
HEADER = "| measure | value | peer | ratio | target | command | date | machine |\n|---|---|---|---|---|---|---|---|\n"


@dataclass
class Entry:
    measure: str
    value: str
    peer: str = "—"
    ratio: str = "—"
    target: str = "—"


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def write_section(capability: str, entries: list[Entry], command: str | None = None, notes: str = "") -> None:
    """Replace the `## capability` section (or append it) with fresh entries."""
    command = command or "python -m benchmarks " + " ".join(sys.argv[1:])
    today = dt.date.today().isoformat()
    rows = "".join(
        f"| {e.measure} | {e.value} | {e.peer} | {e.ratio} | {e.target} | `{command}` | {today} | {machine()} |\n" for e in entries
    )
    section = f"## {capability}\n\n{HEADER}{rows}" + (f"\n{notes.strip()}\n" if notes else "") + "\n"
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\n"
    pattern = re.compile(rf"^## {re.escape(capability)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(text)
