"""Self-contained SVG charts for the dashboard, rendered on the server: no JavaScript, no fonts or files to fetch.

Pure functions from numbers to markup. Every label is escaped, so a tenant or model name can never inject markup.
Each mark carries ``data-series``/``data-day``/``data-value`` attributes (what the browser tests read) and a
``<title>`` (the tooltip a person sees on hover).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from html import escape

PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac")
WIDTH, HEIGHT = 720, 260
LEFT, RIGHT, TOP, BOTTOM = 64, 12, 12, 28

Values = Mapping[str, Mapping[date, float]]  # series name -> day (or hour: a datetime) -> value
Format = Callable[[float], str]


def color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def nice_max(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times 10^k at or above ``value``: a round top for the y axis."""
    if value <= 0:
        return 1.0
    magnitude = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0):
        if value <= step * magnitude:
            return step * magnitude
    return 10.0 * magnitude


def _frame(days: Sequence[date], top: float, y_format: Format, label: str, tick: str = "%m-%d") -> list[str]:
    plot_h = HEIGHT - TOP - BOTTOM
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
             f'aria-label="{escape(label)}" class="chart" data-buckets="{len(days)}">']
    for i in range(5):
        value = top * i / 4
        y = TOP + plot_h - plot_h * i / 4
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">'
                     f'{escape(y_format(value))}</text>')
    every = max(1, math.ceil(len(days) / 8))
    for i, day in enumerate(days):
        if i % every == 0:
            parts.append(f'<text x="{_x(i, len(days)):.1f}" y="{HEIGHT - 8}" text-anchor="middle" class="tick">'
                         f'{day.strftime(tick)}</text>')
    return parts


def _x(index: int, count: int) -> float:
    slot = (WIDTH - LEFT - RIGHT) / max(count, 1)
    return LEFT + slot * (index + 0.5)


def _y(value: float, top: float) -> float:
    plot_h = HEIGHT - TOP - BOTTOM
    return TOP + plot_h - plot_h * (value / top)


def _when(day: date) -> str:
    """A bucket as a person reads it: the day, or the hour's start in UTC."""
    return day.strftime("%Y-%m-%d %H:%M UTC") if isinstance(day, datetime) else day.isoformat()


def _mark_attrs(series: str, day: date, value: float, y_format: Format) -> str:
    return (f'data-series="{escape(series)}" data-day="{day.isoformat()}" data-value="{value:g}"><title>'
            f'{escape(series)} {_when(day)}: {escape(y_format(value))}</title>')


def stacked_bars(days: Sequence[date], values: Values, y_format: Format, label: str, tick: str = "%m-%d") -> str:
    """One bar per day (or hour: ``days`` of datetimes, ``tick`` an hour format), stacked by series in the
    mapping's order (first at the bottom). At most 8 x labels, so they never overlap."""
    if not days:
        return empty(label)
    top = nice_max(max(sum(v.get(d, 0.0) for v in values.values()) for d in days))
    parts = _frame(days, top, y_format, label, tick)
    slot = (WIDTH - LEFT - RIGHT) / len(days)
    bar = max(1.0, slot * 0.7)
    for i, day in enumerate(days):
        base = 0.0
        for n, (series, by_day) in enumerate(values.items()):
            value = by_day.get(day, 0.0)
            if value <= 0:
                continue
            y0, y1 = _y(base, top), _y(base + value, top)
            parts.append(f'<rect x="{_x(i, len(days)) - bar / 2:.1f}" y="{y1:.1f}" width="{bar:.1f}" '
                         f'height="{max(y0 - y1, 0.5):.1f}" fill="{color(n)}" class="bar" '
                         f'{_mark_attrs(series, day, value, y_format)}</rect>')
            base += value
    parts.append("</svg>")
    return "".join(parts)


def line_chart(days: Sequence[date], values: Values, y_format: Format, label: str,
               dashed: frozenset[str] = frozenset(), colors: Mapping[str, str] | None = None) -> str:
    """One line per series (gaps where a day has no value), a dot per point; ``dashed`` series are drawn dashed."""
    if not days:
        return empty(label)
    peak = max((v for by_day in values.values() for v in by_day.values()), default=0.0)
    top = nice_max(peak)
    parts = _frame(days, top, y_format, label)
    for n, (series, by_day) in enumerate(values.items()):
        stroke = (colors or {}).get(series, color(n))
        dash = ' stroke-dasharray="6 4"' if series in dashed else ""
        runs: list[list[str]] = [[]]
        for i, day in enumerate(days):
            if day in by_day:
                runs[-1].append(f"{_x(i, len(days)):.1f},{_y(by_day[day], top):.1f}")
            elif runs[-1]:
                runs.append([])
        for run in runs:
            if len(run) > 1:
                parts.append(f'<polyline points="{" ".join(run)}" fill="none" stroke="{stroke}" stroke-width="2"'
                             f'{dash} class="line" data-series="{escape(series)}"/>')
        for i, day in enumerate(days):
            if day in by_day:
                parts.append(f'<circle cx="{_x(i, len(days)):.1f}" cy="{_y(by_day[day], top):.1f}" r="3" '
                             f'fill="{stroke}" class="point" {_mark_attrs(series, day, by_day[day], y_format)}'
                             f'</circle>')
    parts.append("</svg>")
    return "".join(parts)


SHARE_LABEL_WIDTH, SHARE_RIGHT, SHARE_ROW, SHARE_LABEL_CHARS = 150, 24, 22, 22  # room for the "100%" tick


def _exact(value: float) -> str:
    """A whole number in full (a count of tokens), anything else as ``:g`` does."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def share_bars(rows: Sequence[tuple[str, Mapping[str, float]]], y_format: Format, label: str) -> str:
    """One horizontal bar per group, split into its parts (in each mapping's order, the same for every row) as shares
    of the group's total, so every bar spans the width: the figure compares mixes, a table beside it the amounts.
    Marks carry ``data-group``/``data-series``/``data-value`` (the part's amount, not its share). Groups whose parts
    are all zero get no bar."""
    shown = [(group, parts) for group, parts in rows if sum(parts.values()) > 0]
    if not shown:
        return empty(label)
    height = TOP + SHARE_ROW * len(shown) + BOTTOM
    width = WIDTH - SHARE_LABEL_WIDTH - SHARE_RIGHT
    parts_out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" role="img" '
                 f'aria-label="{escape(label)}" class="chart">']
    for i in range(5):
        x = SHARE_LABEL_WIDTH + width * i / 4
        parts_out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{height - BOTTOM}" class="grid"/>')
        parts_out.append(f'<text x="{x:.1f}" y="{height - 8}" text-anchor="middle" class="tick">{25 * i}%</text>')
    for row, (group, parts) in enumerate(shown):
        y = TOP + SHARE_ROW * row
        total = sum(parts.values())
        name = group if len(group) <= SHARE_LABEL_CHARS else group[:SHARE_LABEL_CHARS - 1] + "…"
        parts_out.append(f'<text x="{SHARE_LABEL_WIDTH - 6}" y="{y + SHARE_ROW * 0.65:.1f}" text-anchor="end" '
                         f'class="tick"><title>{escape(group)}</title>{escape(name)}</text>')
        start = 0.0
        for n, (series, value) in enumerate(parts.items()):
            if value <= 0:
                continue
            share = value / total
            parts_out.append(
                f'<rect x="{SHARE_LABEL_WIDTH + width * start:.1f}" y="{y + 3}" width="{max(width * share, 0.5):.1f}" '
                f'height="{SHARE_ROW - 6}" fill="{color(n)}" class="share" data-group="{escape(group)}" '
                f'data-series="{escape(series)}" data-value="{_exact(value)}"><title>{escape(group)} {escape(series)}: '
                f'{escape(y_format(value))} ({100 * share:.1f}%)</title></rect>')
            start += share
    parts_out.append("</svg>")
    return "".join(parts_out)


def legend(names: Sequence[str], colors: Mapping[str, str] | None = None,
           dashed: frozenset[str] = frozenset()) -> str:
    items = []
    for n, name in enumerate(names):
        style = "dashed" if name in dashed else "solid"
        items.append(f'<li><span class="swatch {style}" style="border-color:{(colors or {}).get(name, color(n))}">'
                     f'</span>{escape(name)}</li>')
    return f'<ul class="legend">{"".join(items)}</ul>'


def empty(label: str) -> str:
    return f'<p class="empty">No data for {escape(label.lower())} in this period.</p>'
