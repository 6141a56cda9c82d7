"""One self-contained HTML report: tables inline, figures embedded as base64 PNG, no external assets."""
from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

from analysis.tables import Table

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
table{border-collapse:collapse;font-size:0.86em;margin:0.4em 0}th,td{padding:3px 8px;text-align:left;vertical-align:top}
thead th{border-bottom:1px solid #444}tbody tr:nth-child(even){background:#f6f6f6}
figure{margin:1.2em 0}figcaption{font-weight:600;margin-bottom:0.3em}.note{font-size:0.85em;color:#444;max-width:60em}
.warnings{background:#fff4e5;border-left:4px solid #e69500;padding:0.5em 1em}img{max-width:min(100%,900px)}
code{background:#f2f2f2;padding:0 3px}.findings li{margin:0.15em 0}#s0 img{max-width:min(100%,1000px)}
"""


@dataclass
class Section:
    heading: str
    intro: str = ""
    tables: list[Table] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)   # PNG paths
    findings: list[str] = field(default_factory=list)   # a bulleted list after the intro


def _figure(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<figure><img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}"></figure>'


def render(title: str, summary: str, warnings: list[str], sections: list[Section]) -> str:
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>",
             f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1><p>{html.escape(summary)}</p>"]
    for i, s in enumerate(sections):
        parts.append(f'<section id="s{i}"><h2>{html.escape(s.heading)}</h2>')
        if s.intro:
            parts.append("".join(f"<p>{html.escape(p)}</p>" for p in s.intro.split("\n\n")))
        if s.findings:
            parts.append('<ul class="findings">' + "".join(f"<li>{html.escape(f)}</li>" for f in s.findings) + "</ul>")
        parts += [t.html() for t in s.tables] + [_figure(f) for f in s.figures]
        parts.append("</section>")
        if i == 0:  # the answer first, then what to be careful about, then the detail
            if warnings:
                items = "".join(f"<li>{html.escape(w)}</li>" for w in warnings)
                parts.append(f'<div class="warnings"><strong>Warnings</strong><ul>{items}</ul></div>')
            parts.append("<nav><ol>" + "".join(f'<li><a href="#s{j}">{html.escape(t.heading)}</a></li>' for j, t in enumerate(sections))
                         + "</ol></nav>")
    return "".join(parts) + "</body></html>\n"
