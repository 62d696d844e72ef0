"""Small inline-SVG charts for the run report: no plotting library, no JavaScript, no files beside the page.

Each function returns an `<svg>` element; hovering a point or bar shows its value (SVG `<title>`).
"""

import math
from collections.abc import Sequence
from html import escape

PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f"]
# Dagster's run statuses, lower case
STATUS_COLORS = {
    "success": "#59a14f",
    "failure": "#e15759",
    "canceled": "#bab0ac",
    "started": "#edc948",
    "queued": "#edc948",
}
WIDTH, HEIGHT = 640, 250
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 34, 44


def short(value: float) -> str:
    """1.2k, 3.4M, 0.25, 12."""
    magnitude = abs(value)
    if magnitude >= 1e6:
        return f"{value / 1e6:.3g}M"
    if magnitude >= 1e3:
        return f"{value / 1e3:.3g}k"
    if magnitude and magnitude < 1:
        return f"{value:.2g}"
    return f"{value:.4g}"


def nice_ticks(high: float, count: int = 5) -> list[float]:
    """0 and round steps up to at least `high`."""
    if high <= 0:
        return [0.0, 1.0]
    raw = high / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    return [i * step for i in range(int(math.ceil(high / step - 1e-9)) + 1)]


def legend_rows(names: Sequence[str], width: int) -> list[list[tuple[str, float]]]:
    """Legend entries laid out left to right from the plot's left edge, wrapped to the width: [(name, x)] per row."""
    rows: list[list[tuple[str, float]]] = [[]]
    x = LEFT
    for name in names:
        item = 16 + 6.2 * len(name) + 12
        if rows[-1] and x + item > width - RIGHT:
            rows.append([])
            x = LEFT
        rows[-1].append((name, x))
        x += item
    return rows if rows[0] else []


class Frame:
    """Plot area geometry (below the title and legend rows) and the y axis from 0 to the top tick."""

    def __init__(
        self, slots: int, high: float, width: int = WIDTH, height: int = HEIGHT, names: Sequence[str] = ()
    ) -> None:
        self.width, self.slots = width, max(slots, 1)
        self.legend = legend_rows(names, width)
        self.top = TOP + 14 * len(self.legend)
        self.height = height + 14 * len(self.legend)
        self.ticks = nice_ticks(high)
        self.top_value = self.ticks[-1]
        self.plot_width = width - LEFT - RIGHT
        self.plot_height = self.height - self.top - BOTTOM

    def x(self, index: float) -> float:
        return LEFT + (index + 0.5) * self.plot_width / self.slots

    def y(self, value: float) -> float:
        return self.top + self.plot_height * (1 - value / self.top_value)

    @property
    def slot_width(self) -> float:
        return self.plot_width / self.slots


def open_svg(frame: Frame, title: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {frame.width} {frame.height}" '
        f'width="{frame.width}" height="{frame.height}" role="img" aria-label="{escape(title)}" '
        'font-family="system-ui, sans-serif" font-size="11">',
        f'<text x="{LEFT}" y="18" font-size="13" font-weight="600" fill="#222">{escape(title)}</text>',
    ]


def y_axis(frame: Frame, unit: str = "") -> list[str]:
    parts = []
    for tick in frame.ticks:
        y = frame.y(tick)
        parts.append(f'<line x1="{LEFT}" x2="{frame.width - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e4e4e4"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#555">{short(tick)}{unit}</text>')
    return parts


def x_labels(frame: Frame, labels: Sequence[str], most: int = 8) -> list[str]:
    if not labels:
        return []
    step = max(1, math.ceil(len(labels) / most))
    shown = list(range(0, len(labels), step))
    if shown[-1] != len(labels) - 1 and len(labels) - 1 - shown[-1] >= step / 2:
        shown.append(len(labels) - 1)
    y = frame.height - BOTTOM + 16
    return [
        f'<text x="{frame.x(i):.1f}" y="{y}" text-anchor="middle" fill="#555">{escape(labels[i])}</text>' for i in shown
    ]


def legend(frame: Frame, colors: dict[str, str]) -> list[str]:
    parts = []
    for row, entries in enumerate(frame.legend):
        y = 26 + 14 * row
        for name, x in entries:
            parts.append(f'<rect x="{x:.0f}" y="{y}" width="10" height="10" rx="2" fill="{colors[name]}"/>')
            parts.append(f'<text x="{x + 14:.0f}" y="{y + 9}" fill="#333">{escape(name)}</text>')
    return parts


def empty(title: str, note: str = "no data yet") -> str:
    frame = Frame(1, 1, height=80)
    return "".join([*open_svg(frame, title), f'<text x="{LEFT}" y="50" fill="#888">{escape(note)}</text></svg>'])


def line_chart(title: str, labels: Sequence[str], series: dict[str, list[float | None]], unit: str = "") -> str:
    """One line per series over the same x labels; None leaves a gap."""
    values = [v for points in series.values() for v in points if v is not None]
    if not values:
        return empty(title)
    frame = Frame(len(labels), max(values), names=list(series))
    colors = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(series)}
    parts = [*open_svg(frame, title), *y_axis(frame, unit), *x_labels(frame, labels), *legend(frame, colors)]
    for name, points in series.items():
        color = colors[name]
        segment: list[str] = []
        for i, value in enumerate([*points, None]):
            if value is None:
                if len(segment) > 1:
                    parts.append(
                        f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{" ".join(segment)}"/>'
                    )
                segment = []
                continue
            x, y = frame.x(i), frame.y(value)
            segment.append(f"{x:.1f},{y:.1f}")
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.6" fill="{color}">'
                f"<title>{escape(name)} · {escape(labels[i])}: {value:,.6g}{unit}</title></circle>"
            )
    return "".join(parts) + "</svg>"


def stacked_bars(
    title: str,
    labels: Sequence[str],
    stacks: dict[str, list[float]],
    colors: dict[str, str] | None = None,
    markers: Sequence[str] | None = None,
    unit: str = "",
) -> str:
    """One bar per label, its segments stacked; `markers` colours a strip under each bar (e.g. run status)."""
    totals = [sum(values[i] for values in stacks.values()) for i in range(len(labels))]
    if not labels or max(totals, default=0) <= 0:
        return empty(title)
    frame = Frame(len(labels), max(totals), names=list(stacks))
    palette = colors or {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(stacks)}
    parts = [*open_svg(frame, title), *y_axis(frame, unit), *x_labels(frame, labels), *legend(frame, palette)]
    bar = max(1.0, frame.slot_width * 0.7)
    for i, label in enumerate(labels):
        base = 0.0
        for name, values in stacks.items():
            value = values[i]
            if value <= 0:
                continue
            y_top, y_base = frame.y(base + value), frame.y(base)
            parts.append(
                f'<rect x="{frame.x(i) - bar / 2:.1f}" y="{y_top:.1f}" width="{bar:.1f}" '
                f'height="{max(y_base - y_top, 0.5):.1f}" fill="{palette[name]}">'
                f"<title>{escape(label)} · {escape(name)}: {value:,.6g}{unit}</title></rect>"
            )
            base += value
        if markers:
            parts.append(
                f'<rect x="{frame.x(i) - bar / 2:.1f}" y="{frame.height - BOTTOM + 2}" width="{bar:.1f}" '
                f'height="4" fill="{STATUS_COLORS.get(markers[i], "#888")}"><title>{escape(markers[i])}</title></rect>'
            )
    return "".join(parts) + "</svg>"


def horizontal_bars(title: str, labels: Sequence[str], values: Sequence[float], color: str = PALETTE[3]) -> str:
    if not labels:
        return empty(title, "nothing quarantined")
    row, label_width = 20, min(360, 16 + 6.4 * max(len(label) for label in labels))
    height = TOP + row * len(labels) + 12
    high = max(values) or 1
    scale = (WIDTH - label_width - 70) / high
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" '
        f'height="{height}" role="img" aria-label="{escape(title)}" font-family="system-ui, sans-serif" '
        f'font-size="11"><text x="8" y="18" font-size="13" font-weight="600" fill="#222">{escape(title)}</text>'
    ]
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = TOP + i * row
        parts.append(f'<text x="{label_width - 6}" y="{y + 13}" text-anchor="end" fill="#333">{escape(label)}</text>')
        parts.append(
            f'<rect x="{label_width}" y="{y + 3}" width="{max(value * scale, 1):.1f}" height="{row - 6}" '
            f'fill="{color}"><title>{escape(label)}: {value:,.0f}</title></rect>'
        )
        parts.append(f'<text x="{label_width + value * scale + 6:.1f}" y="{y + 13}" fill="#333">{value:,.0f}</text>')
    return "".join(parts) + "</svg>"


def histogram(
    title: str, labels: Sequence[str], edges: Sequence[float], series: dict[str, list[float]], unit: str = "%"
) -> str:
    """Overlaid histograms (shares of rows per bin, so series of different sizes compare); a label per bin."""
    values = [v for shares in series.values() for v in shares]
    if not values or not edges:
        return empty(title)
    frame = Frame(len(edges) - 1, max(values), width=310, height=200, names=list(series))
    colors = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(series)}
    parts = [*open_svg(frame, title), *y_axis(frame, unit), *legend(frame, colors)]
    parts += x_labels(frame, labels, most=5)
    for name, shares in series.items():
        color = colors[name]
        for i, share in enumerate(shares):
            if share <= 0:
                continue
            x = frame.x(i) - frame.slot_width / 2
            parts.append(
                f'<rect x="{x:.1f}" y="{frame.y(share):.1f}" width="{frame.slot_width:.1f}" '
                f'height="{frame.y(0) - frame.y(share):.1f}" fill="{color}" fill-opacity="0.45" '
                f'stroke="{color}" stroke-width="0.8"><title>{escape(name)} · [{short(edges[i])}, '
                f"{short(edges[i + 1])}): {share:.3g}{unit}</title></rect>"
            )
    return "".join(parts) + "</svg>"
