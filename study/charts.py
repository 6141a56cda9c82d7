"""Small inline SVG charts for the dashboard, drawn on the server (no script, no library).

Each chart is a plain <svg role="img"> whose aria-label states its numbers in words, so a screen
reader gets the same facts as the eye. Colours come from classes styled in dashboard.css (no
style attributes: the pages run under a `default-src 'self'` content security policy).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH = 380
ROW = 22  # px per bar or interval row
LABEL = 100  # px of row labels on the left
VALUE = 100  # px of value text on the right


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    extra: float = 0.0  # a second, lighter segment after `value` (e.g. sessions still running)
    text: str = ""  # shown right of the bar; default: the value


@dataclass(frozen=True)
class Interval:
    label: str
    mean: float | None  # None: no answers yet
    low: float | None = None
    high: float | None = None
    text: str = ""


def _svg(height: int, label: str, body: list[str]) -> Markup:
    return Markup(f'<svg class="chart" role="img" aria-label="{escape(label)}" viewBox="0 0 {WIDTH} {height}" '
                  f'width="{WIDTH}" height="{height}">{"".join(body)}</svg>')


def _row_label(y: float, text: str) -> str:
    return f'<text class="label" x="{LABEL - 6}" y="{y}" text-anchor="end">{escape(text)}</text>'


def bars(rows: list[Bar], label: str, scale: float | None = None, target: float | None = None) -> Markup:
    """Horizontal bars on a common scale (default: the largest bar or target); `target` draws a
    dashed line every bar should reach."""
    top = max([scale or 0, target or 0, *(r.value + r.extra for r in rows)]) or 1
    span = WIDTH - LABEL - VALUE
    body = []
    for k, r in enumerate(rows):
        y = k * ROW
        w, x_extra = span * r.value / top, LABEL + span * r.value / top
        body += [_row_label(y + 15, r.label),
                 f'<rect class="bar" x="{LABEL}" y="{y + 4}" width="{w:.1f}" height="{ROW - 8}"/>']
        if r.extra:
            body.append(f'<rect class="bar extra" x="{x_extra:.1f}" y="{y + 4}" width="{span * r.extra / top:.1f}" height="{ROW - 8}"/>')
        body.append(f'<text class="value" x="{LABEL + span + 6}" y="{y + 15}">{escape(r.text or _number(r.value))}</text>')
    height = ROW * len(rows)
    if target:
        x = LABEL + span * target / top
        body.append(f'<line class="target" x1="{x:.1f}" x2="{x:.1f}" y1="0" y2="{height}"/>')
    return _svg(max(height, ROW), label, body)


def intervals(rows: list[Interval], label: str, low: float, high: float) -> Markup:
    """A dot per row at its mean, with a whisker from low to high, on the axis low..high."""
    span = WIDTH - LABEL - VALUE
    at = lambda v: LABEL + span * (min(max(v, low), high) - low) / (high - low)  # noqa: E731
    body = [f'<line class="axis" x1="{LABEL}" x2="{LABEL + span}" y1="{ROW * len(rows)}" y2="{ROW * len(rows)}"/>',
            f'<text class="tick" x="{LABEL}" y="{ROW * len(rows) + 12}" text-anchor="middle">{_number(low)}</text>',
            f'<text class="tick" x="{LABEL + span}" y="{ROW * len(rows) + 12}" text-anchor="middle">{_number(high)}</text>']
    for k, r in enumerate(rows):
        y = k * ROW + ROW / 2
        body.append(_row_label(y + 4, r.label))
        if r.mean is None:
            body.append(f'<text class="value" x="{LABEL + span + 6}" y="{y + 4}">no answers</text>')
            continue
        if r.low is not None and r.high is not None:
            body.append(f'<line class="whisker" x1="{at(r.low):.1f}" x2="{at(r.high):.1f}" y1="{y}" y2="{y}"/>')
        body += [f'<circle class="dot" cx="{at(r.mean):.1f}" cy="{y}" r="4"/>',
                 f'<text class="value" x="{LABEL + span + 6}" y="{y + 4}">{escape(r.text or _number(r.mean))}</text>']
    return _svg(ROW * len(rows) + 16, label, body)


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson interval of a proportion (sensible near 0 and 1, unlike p ± z·se)."""
    p, denominator = successes / n, 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_interval(n: int, mean: float, mean_of_squares: float, z: float = 1.96) -> tuple[float, float]:
    """Normal 95% interval of a mean from its count, mean and mean of squares."""
    if n < 2:
        return mean, mean
    sd = math.sqrt(max(mean_of_squares - mean * mean, 0.0) * n / (n - 1))
    return mean - z * sd / math.sqrt(n), mean + z * sd / math.sqrt(n)


def _number(value: float) -> str:
    return f"{value:g}" if float(value).is_integer() else f"{value:.2f}"
