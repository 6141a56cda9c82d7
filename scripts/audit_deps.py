"""Dependency audit that runs offline: every pin in constraints.txt (and the pip that setup
installs) against the advisories vendored in security/advisories.json (OSV format).

    python scripts/audit_deps.py                      # exit 1 and list the matches, if any
    python scripts/audit_deps.py --refresh all.zip    # rebuild the vendored file from OSV's dump

The online auditors (pip-audit, safety) cannot reach their databases from the build machines,
so the advisories travel with the repository; README ("Dependency audit") says how to refresh
them on a machine that can download OSV's PyPI dump.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import zipfile
from pathlib import Path

from packaging.version import InvalidVersion, Version

REPO = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;#]+)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(constraints: Path, makefile: Path | None = None) -> dict[str, str]:
    """name -> pinned version, from constraints.txt and the Makefile's PIP_VERSION."""
    found = {canonical(m[1]): m[2] for line in constraints.read_text().splitlines() if (m := PIN.match(line.strip()))}
    if makefile is not None and makefile.exists():
        pip = re.search(r"^PIP_VERSION\s*:?=\s*(\S+)", makefile.read_text(), re.M)
        if pip:
            found["pip"] = pip[1]
    return found


def _in_range(version: Version, events: list[dict[str, str]]) -> bool:
    """OSV ECOSYSTEM range: affected from each `introduced` up to (not including) the next `fixed`."""
    affected = False
    for event in sorted(events, key=lambda e: Version(next(iter(e.values())))):
        if "introduced" in event and version >= Version(event["introduced"]):
            affected = True
        elif "fixed" in event and version >= Version(event["fixed"]):
            affected = False
        elif "last_affected" in event and version > Version(event["last_affected"]):
            affected = False
    return affected


def matches(pinned: dict[str, str], advisories: list[dict]) -> list[str]:
    """One line per (advisory, pinned package) it affects."""
    hits = []
    for advisory in advisories:
        for affected in advisory.get("affected", []):
            package = affected.get("package", {})
            name = canonical(package.get("name", ""))
            if package.get("ecosystem") != "PyPI" or name not in pinned:
                continue
            try:
                version = Version(pinned[name])
            except InvalidVersion:
                continue
            listed = pinned[name] in affected.get("versions", [])
            ranged = any(_in_range(version, r.get("events", [])) for r in affected.get("ranges", [])
                         if r.get("type") in ("ECOSYSTEM", "SEMVER"))
            if listed or ranged:
                hits.append(f"{name}=={pinned[name]}: {advisory['id']} {advisory.get('summary', '')}".rstrip())
    return hits


def refresh(dump: Path, pinned: dict[str, str], out: Path) -> int:
    """Keep the advisories of OSV's PyPI dump (all.zip) that name a pinned package."""
    kept = []
    with zipfile.ZipFile(dump) as archive:
        for member in archive.namelist():
            advisory = json.loads(archive.read(member))
            if any(canonical(a.get("package", {}).get("name", "")) in pinned for a in advisory.get("affected", [])):
                kept.append(advisory)
    out.write_text(json.dumps({"source": f"OSV PyPI dump {dump.name}", "advisories": kept}, indent=1) + "\n")
    return len(kept)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--constraints", type=Path, default=REPO / "constraints.txt")
    parser.add_argument("--advisories", type=Path, default=REPO / "security" / "advisories.json")
    parser.add_argument("--refresh", type=Path, metavar="ALL_ZIP", help="OSV's PyPI dump to rebuild --advisories from")
    args = parser.parse_args(argv)
    pinned = pins(args.constraints, REPO / "Makefile")
    if args.refresh:
        print(f"kept {refresh(args.refresh, pinned, args.advisories)} advisories in {args.advisories}")
        return 0
    try:
        advisories = json.loads(args.advisories.read_text())["advisories"]
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: cannot read advisories from {args.advisories}: {exc}", file=sys.stderr)
        return 2
    hits = matches(pinned, advisories)
    for hit in hits:
        print(hit)
    print(f"{len(pinned)} pinned packages, {len(advisories)} advisories: "
          + (f"{len(hits)} match(es)" if hits else "no known advisory applies"))
    return 1 if hits else 0


if __name__ == "__main__":
    sys.exit(main())
