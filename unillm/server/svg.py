"""Server-side SVG charts: no JavaScript, no CDN, one string each.

Values come in as Decimal (money) or int; positions are computed in float (a
pixel needs no exactness) while every printed amount uses the exact value.
Each mark carries a ``<title>`` (hover text) and ``data-value`` attribute, so a
test or a screen reader can find the numbers behind the shapes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from decimal import Decimal
from html import escape
from typing import Any

INK, MUTED, GRID = "#1f2430", "#6b7280", "#e8eaef"
ACCENT, ACCENT_SOFT = "#3b5bdb", "#dbe4ff"
GOOD, WARN, BAD = "#0ca678", "#f08c00", "#e03131"
SERIES = ("#3b5bdb", "#0ca678", "#f08c00", "#ae3ec9", "#1098ad", "#e8590c", "#5c7cfa", "#74b816")
FONT = "font-family='Inter, system-ui, -apple-system, Segoe UI, sans-serif'"

Fmt = Callable[[Any], str]


def usd(value: Decimal | int | None) -> str:
    """Exact money text: ``$1,234.50``, ``$0.000375`` (never rounded, at least cents)."""
    if value is None:
        return "—"
    d = Decimal(value)
    sign = "-" if d < 0 else ""
    text = f"{abs(d):,f}"
    whole, _, frac = text.partition(".")
    frac = frac.rstrip("0")
    frac = frac.ljust(2, "0")
    return f"{sign}${whole}.{frac}"


def usd_short(value: Decimal | float) -> str:
    """Axis-tick money: three significant figures (ticks are not amounts anyone paid)."""
    v = float(value)
    if v == 0:
        return "$0"
    if abs(v) >= 1000:
        return f"${v / 1000:,.3g}k"
    if abs(v) >= 1:
        return f"${v:,.2f}"
    if abs(v) >= 0.01:
        whole, _, frac = f"{v:.3f}".partition(".")
        return f"${whole}.{frac.rstrip('0').ljust(2, '0')}"  # $0.50, $0.125: as many places as needed
    return f"${v:.2g}"


def _nice_max(v: float) -> float:
    """A round number >= v for the top of an axis (1, 2, 2.5 or 5 times a power of ten)."""
    if v <= 0:
        return 1.0
    exp: float = 10 ** math.floor(math.log10(v))
    for step in (1, 2, 2.5, 5, 10):
        if v <= step * exp * (1 + 1e-9):
            return step * exp
    return 10 * exp


def _svg(width: int, height: int, body: str, label: str, fixed: bool = False) -> str:
    size = f"width='{width}' height='{height}'" if fixed else "width='100%'"
    return (f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {width} {height}' "
            f"{size} role='img' aria-label='{escape(label, True)}' {FONT}>{body}</svg>")


def _ticks(peak: float) -> int:
    """How many intervals split [0, peak] into round steps."""
    mantissa = peak / 10 ** math.floor(math.log10(peak))
    return 4 if round(mantissa, 6) in (2.0, 8.0) else 5


def time_chart(points: Sequence[tuple[str, Decimal]], *, width: int = 1140, height: int = 250,
               label: str = "spend over time", fmt: Fmt = usd, tick: Fmt = usd_short) -> str:
    """Columns over time; one ``<rect class='bar'>`` per point."""
    left, right, top, bottom = 72, 8, 12, 28
    w, h = width - left - right, height - top - bottom
    if not points:
        return _svg(width, height, f"<text x='{width / 2}' y='{height / 2}' text-anchor='middle' "
                    f"fill='{MUTED}' font-size='13'>No calls in this range</text>", label)
    peak = _nice_max(max(float(v) for _, v in points))
    parts = []
    n = _ticks(peak)
    for i in range(n + 1):
        y = top + h - h * i / n
        parts.append(f"<line x1='{left}' x2='{width - right}' y1='{y:.1f}' y2='{y:.1f}' stroke='{GRID}'/>")
        parts.append(f"<text x='{left - 10}' y='{y + 4:.1f}' text-anchor='end' font-size='11' "
                     f"fill='{MUTED}'>{escape(tick(peak * i / n))}</text>")
    slot = w / len(points)
    bar_w = max(min(slot * 0.62, 36), 2)
    every = max(1, round(len(points) / 8))
    for i, (name, value) in enumerate(points):
        bh = h * float(value) / peak
        x = left + slot * i + (slot - bar_w) / 2
        y = top + h - bh
        parts.append(f"<rect class='bar' x='{x:.1f}' y='{y:.1f}' width='{bar_w:.1f}' "
                     f"height='{max(bh, 0.0):.1f}' rx='2' fill='{ACCENT}' data-value='{escape(str(value))}'>"
                     f"<title>{escape(name)}: {escape(fmt(value))}</title></rect>")
        if i % every == 0:
            parts.append(f"<text x='{x + bar_w / 2:.1f}' y='{height - 10}' text-anchor='middle' "
                         f"font-size='11' fill='{MUTED}'>{escape(_short_time(name))}</text>")
    return _svg(width, height, "".join(parts), label)


def _short_time(label: str) -> str:
    """``2025-01-31`` -> ``Jan 31``; ``2025-01-31T14`` -> ``14:00`` (``Jan 31`` at midnight)."""
    months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    if len(label) >= 13 and label[10] == "T" and label[11:13] != "00":
        return f"{label[11:13]}:00"
    if len(label) >= 10 and label[4] == "-":
        return f"{months[int(label[5:7]) - 1]} {int(label[8:10])}"
    return label


def bar_list(rows: Sequence[tuple[str, Decimal, str]], *, width: int = 545, label: str = "",
             fmt: Fmt = usd, limit: int = 8) -> str:
    """Horizontal bars, biggest first: ``(name, value, note)`` rows; the rest summed as 'other'."""
    rows = list(rows)
    if len(rows) > limit:
        rest = rows[limit - 1:]
        other: Any = sum((r[1] for r in rest), Decimal(0))
        rows = rows[:limit - 1] + [(f"{len(rest)} others", other, "")]
    row_h, bar_h = 34, 8
    height = max(row_h * len(rows), 40)
    if not rows:
        return _svg(width, 40, f"<text x='0' y='20' fill='{MUTED}' font-size='13'>Nothing yet</text>", label)
    peak = max(float(r[1]) for r in rows) or 1.0
    parts = []
    for i, (name, value, note) in enumerate(rows):
        y = i * row_h
        frac = float(value) / peak
        color = SERIES[i % len(SERIES)]
        amount, note_full = fmt(value), note
        shown, note = _fit(name, note, width - _VALUE_CHAR * len(amount) - _GAP)
        note_span = f"<tspan fill='{MUTED}' font-size='11.5'>  · {escape(note)}</tspan>" if note else ""
        parts.append(f"<text class='label' x='0' y='{y + 13}' font-size='12.5' fill='{INK}'>{escape(shown)}"
                     f"{note_span}<title>{escape(name)}{escape(' · ' + note_full if note_full else '')}</title></text>")
        parts.append(f"<text class='value' x='{width}' y='{y + 13}' font-size='12.5' text-anchor='end' "
                     f"fill='{INK}' font-weight='600' style='font-variant-numeric: tabular-nums'>"
                     f"{escape(amount)}</text>")
        parts.append(f"<rect x='0' y='{y + 19}' width='{width}' height='{bar_h}' rx='4' fill='{GRID}'/>")
        parts.append(f"<rect class='bar' x='0' y='{y + 19}' width='{max(width * frac, 2):.1f}' "
                     f"height='{bar_h}' rx='4' fill='{color}' data-value='{escape(str(value))}'>"
                     f"<title>{escape(name)}: {escape(fmt(value))}</title></rect>")
    return _svg(width, height, "".join(parts), label)


# generous per-character widths (px) of the bar labels, so that a label never runs into its amount
_NAME_CHAR, _NOTE_CHAR, _VALUE_CHAR, _GAP = 7.0, 6.4, 7.8, 12


def _fit(name: str, note: str, room: float) -> tuple[str, str]:
    """The label and note that fit in ``room`` px: the whole name first, then the note; a name
    too long even alone is clipped (the whole name stays in the hover title)."""
    name_w = _NAME_CHAR * len(name)
    if note and name_w + _NOTE_CHAR * (len(note) + 3) <= room:
        return name, note
    return _clip(name, max(int(room / _NAME_CHAR), 4)), ""


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n - 1] + "…"


def ring(fraction: Decimal | float, *, size: int = 120, label: str = "", color: str = GOOD,
         caption: str = "") -> str:
    """A donut showing a fraction (cache hit rate), the percentage in the middle."""
    f = min(max(float(fraction), 0.0), 1.0)
    r, c = size / 2 - 10, size / 2
    circ = 2 * 3.141592653589793 * r
    body = (f"<circle cx='{c}' cy='{c}' r='{r:.1f}' fill='none' stroke='{GRID}' stroke-width='12'/>"
            + (f"<circle class='arc' cx='{c}' cy='{c}' r='{r:.1f}' fill='none' stroke='{color}' "
               f"stroke-width='12' stroke-linecap='round' stroke-dasharray='{circ * f:.2f} {circ:.2f}' "
               f"transform='rotate(-90 {c} {c})' data-value='{f:.4f}'/>" if f > 0 else "") +
            f"<text x='{c}' y='{c + 6}' text-anchor='middle' font-size='20' font-weight='650' "
            f"fill='{INK}'>{f * 100:.1f}%</text>")
    if caption:
        body += (f"<text x='{c}' y='{c + 22}' text-anchor='middle' font-size='10.5' "
                 f"fill='{MUTED}'>{escape(caption)}</text>")
    return _svg(size, size, body, label, fixed=True)


def gauge(spent: Decimal, limit: Decimal, *, width: int = 300, label: str = "") -> str:
    """A budget as a bar: spent / limit, coloured by how close to the limit it is."""
    f = float(spent / limit) if limit else (1.0 if spent else 0.0)
    color = GOOD if f < 0.5 else WARN if f < 0.8 else BAD
    fill = min(f, 1.0) * width
    body = (f"<rect x='0' y='4' width='{width}' height='12' rx='6' fill='{GRID}'/>"
            f"<rect class='bar' x='0' y='4' width='{max(fill, 3):.1f}' height='12' rx='6' fill='{color}' "
            f"data-value='{escape(str(spent))}'><title>{escape(usd(spent))} of {escape(usd(limit))}"
            f"</title></rect>")
    return _svg(width, 20, body, label)
