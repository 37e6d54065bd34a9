"""Charts as server-rendered SVG: no JavaScript, readable without colour (values are printed).

Each function returns ``Markup`` to place straight into a template.
"""

from __future__ import annotations

from markupsafe import Markup, escape

COLOURS = ("#1f5fbf", "#2e7d32", "#b26a00", "#8e24aa")


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def bars(items: list[tuple[str, float | None, int]], title: str) -> Markup:
    """Horizontal bars of rates: (label, rate 0..1 or None, sample size)."""
    row, label_w, bar_w = 26, 150, 300
    height, width = row * len(items) + 10, label_w + bar_w + 140
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" width="{width}"'
        f' height="{height}" viewBox="0 0 {width} {height}"'
        ' xmlns="http://www.w3.org/2000/svg" font-size="13">'
    ]
    for index, (label, value, n) in enumerate(items):
        y = index * row + 5
        width = 0 if value is None else max(1, round(value * bar_w))
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 16}" text-anchor="end">{escape(label)}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{bar_w}" height="18" fill="#eef1f5"/>'
            f'<rect x="{label_w}" y="{y + 3}" width="{width}" height="18" fill="{COLOURS[0]}"/>'
            f'<text x="{label_w + bar_w + 6}" y="{y + 16}">{_percent(value)} (n={n})</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


# About how wide a character of the charts' 12px text is: digits and ASCII about 0.6 em,
# a Chinese character a full em. Used to keep every label inside the picture.
def text_width(text: str, font_size: float = 12) -> float:
    return sum(font_size if ord(char) > 0x2E7F else font_size * 0.6 for char in text)


def label_step(count: int, spacing: float, label: str = "00-00") -> int:
    """Label every n-th of ``count`` positions ``spacing`` apart so that labels do not
    touch: at least 8 px between them."""
    needed = text_width(label) + 8
    return max(1, -(-int(needed) // max(1, int(spacing))))


def trend(weeks: list[str], series: dict[str, list[float | None]], title: str) -> Markup:
    """Weekly lines of rates (0..1) on proper axes: a y axis of percentages with its grid,
    an x axis of the weeks' Mondays (MM-DD; as many as fit without touching); a week without
    a sample leaves a gap. Every label lies inside the picture (``text_width``)."""
    width, height, left, right, bottom, top = 600, 230, 46, 30, 34, 12
    plot_w, plot_h = width - left - right, height - top - bottom
    step = plot_w / max(1, len(weeks) - 1)

    def x(index: int) -> float:
        return left + index * step if len(weeks) > 1 else left + plot_w / 2

    def y(value: float) -> float:
        return top + plot_h * (1 - value)

    legend_rows = -(-len(series) // 3)
    total_h = height + 22 * legend_rows
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" width="{width}"'
        f' height="{total_h}" viewBox="0 0 {width} {total_h}"'
        ' xmlns="http://www.w3.org/2000/svg" font-size="12">'
    ]
    for tick in (0, 0.25, 0.5, 0.75, 1):
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}"'
            f' stroke="{"#9aa3b0" if tick == 0 else "#e3e7ec"}"/>'
            f'<line x1="{left - 4}" x2="{left}" y1="{y(tick):.1f}" y2="{y(tick):.1f}"'
            ' stroke="#9aa3b0"/>'
            f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">'
            f"{int(tick * 100)}%</text>"
        )
    parts.append(f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + plot_h}"'
                 ' stroke="#9aa3b0"/>')
    every = label_step(len(weeks), step)
    for index, week in enumerate(weeks):
        parts.append(f'<line x1="{x(index):.1f}" x2="{x(index):.1f}" y1="{top + plot_h}"'
                     f' y2="{top + plot_h + 4}" stroke="#9aa3b0"/>')
        if index % every == 0:
            parts.append(
                f'<text x="{x(index):.1f}" y="{top + plot_h + 18}" text-anchor="middle">'
                f"{escape(week[5:])}</text>"
            )
    for number, (name, values) in enumerate(series.items()):
        colour = COLOURS[number % len(COLOURS)]
        segments, current = [], []
        for index, value in enumerate(values):
            if value is None:
                if current:
                    segments.append(current)
                current = []
            else:
                current.append(f"{x(index):.1f},{y(value):.1f}")
        if current:
            segments.append(current)
        for points in segments:
            parts.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="2"'
                f' points="{" ".join(points)}"/>'
            )
            for point in points:
                cx, cy = point.split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="3" fill="{colour}"/>')
        legend_x = left + (number % 3) * 180
        legend_y = height + 22 * (number // 3) + 4
        parts.append(
            f'<rect x="{legend_x}" y="{legend_y + 4}" width="16" height="4" fill="{colour}"/>'
            f'<text x="{legend_x + 22}" y="{legend_y + 10}">{escape(name)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def columns(weeks: list[str], series: dict[str, list[int]], title: str) -> Markup:
    """Weekly counts side by side (e.g. accepted and closed)."""
    width, height, left, bottom, top = 640, 220, 44, 40, 10
    plot_w, plot_h = width - left - 10, height - top - bottom
    peak = max([1, *(value for values in series.values() for value in values)])
    group = plot_w / max(1, len(weeks))
    bar = max(2.0, (group - 6) / max(1, len(series)))
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" width="{width}"'
        f' height="{height + 22 * len(series)}" viewBox="0 0 {width} {height + 22 * len(series)}"'
        ' xmlns="http://www.w3.org/2000/svg" font-size="12">'
        f'<text x="{left - 4}" y="{top + 4}" text-anchor="end">{peak}</text>'
        f'<line x1="{left}" x2="{width - 10}" y1="{top + plot_h}" y2="{top + plot_h}"'
        ' stroke="#9aa3b0"/>'
    ]
    for index, week in enumerate(weeks):
        for number, values in enumerate(series.values()):
            value = values[index]
            bar_h = plot_h * value / peak
            parts.append(
                f'<rect x="{left + index * group + 3 + number * bar:.1f}"'
                f' y="{top + plot_h - bar_h:.1f}" width="{bar:.1f}" height="{bar_h:.1f}"'
                f' fill="{COLOURS[number % len(COLOURS)]}"><title>{escape(week)}: {value}</title>'
                "</rect>"
            )
        if index % label_step(len(weeks), group) == 0:
            parts.append(
                f'<text x="{left + (index + 0.5) * group:.1f}" y="{height - bottom + 16}"'
                f' text-anchor="middle">{escape(week[5:])}</text>'
            )
    for number, name in enumerate(series):
        legend_y = height + 22 * number + 6
        parts.append(
            f'<rect x="{left}" y="{legend_y}" width="14" height="10"'
            f' fill="{COLOURS[number % len(COLOURS)]}"/>'
            f'<text x="{left + 20}" y="{legend_y + 9}">{escape(name)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
