"""Inline SVG charts for the report: a startup timeline and a per-worker bar chart.

Pure functions of record data; they return `markupsafe.Markup` so the template can embed them, and every
piece of text that reaches the SVG goes through `escape()` first (pids and labels come from records,
which come from other machines).

* timeline(timings, stopped_label=...) - launch, each worker ready, first response, all workers, load done,
  stop sent, stopped, on one time axis (seconds since launch)
* worker_bars(per_worker, ...) - requests per worker pid, with the even share marked
"""

import math
from typing import Any, List, Mapping, Optional, Sequence, Tuple

from markupsafe import Markup, escape

__all__ = ["line_plot", "number", "timeline", "worker_bars"]

#: (timings key, label, css class) of the master-level milestones, in the order they normally happen.
MILESTONES: Tuple[Tuple[str, str, str], ...] = (
    ("ready_event", "ready event", "m-ready"),
    ("first_response", "first response", "m-first"),
    ("all_workers", "all workers", "m-all"),
    ("load_done", "load done", "m-load"),
    ("stop_sent", "stop sent", "m-stop"),
    ("stopped", "stopped", "m-stopped"),
)

_CHAR_W = 5.6  # approximate width of one character at the chart font size (10px, sans-serif)


def number(value: Any) -> Optional[float]:
    """A finite float from a JSON value, or None (strings, NaN, bools and garbage are not numbers)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _fmt_s(seconds: float) -> str:
    if seconds >= 10:
        return f"{seconds:.1f}s"
    if seconds >= 1:
        return f"{seconds:.2f}s"
    return f"{seconds * 1000:.0f}ms"


def _nice_step(span: float, target: int = 6) -> float:
    raw = span / max(target, 1)
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    for mult in (1, 2, 2.5, 5, 10):
        if raw <= mult * mag:
            return mult * mag
    return 10 * mag


def _place_labels(items: Sequence[Tuple[float, str]], width: float) -> List[int]:
    """Greedy row assignment so that labels at nearby x positions do not overlap."""
    rows_end: List[float] = []
    out: List[int] = []
    for x, text in items:
        w = len(text) * _CHAR_W + 6
        left = min(max(x - w / 2, 0.0), max(width - w, 0.0))
        for i, end in enumerate(rows_end):
            if left >= end:
                rows_end[i] = left + w
                out.append(i)
                break
        else:
            rows_end.append(left + w)
            out.append(len(rows_end) - 1)
    return out


def timeline(timings: Mapping[str, Any], width: int = 460) -> Markup:
    """The startup timeline as an inline SVG, or an empty Markup when there is nothing to draw.

    Top band: milestone labels (placed in rows so they never overlap), one dashed line each across
    the chart. Below: one lane per worker pid, a dot at its ready time and a bar while it was serving
    (until `stopped`, else `stop_sent`, else the end of the axis)."""
    marks: List[Tuple[float, str, str]] = [(0.0, "launch", "m-launch")]
    for key, label, css in MILESTONES:
        t = number(timings.get(key))
        if t is not None and t >= 0:
            marks.append((t, label, css))
    workers: List[Tuple[str, float]] = []
    raw_ready = timings.get("worker_ready") or {}
    if isinstance(raw_ready, Mapping):
        for pid, t_raw in raw_ready.items():
            t = number(t_raw)
            if t is not None and t >= 0:
                workers.append((str(pid), t))
    workers.sort(key=lambda pw: (pw[1], pw[0]))
    if len(marks) == 1 and not workers:
        return Markup("")
    end = max([m[0] for m in marks] + [w[1] for w in workers] + [0.001])
    end_serving = number(timings.get("stopped")) or number(timings.get("stop_sent")) or end
    step = _nice_step(end)
    axis_end = math.ceil(end / step) * step if step > 0 else end
    left, right = 92.0, 14.0
    plot_w = width - left - right

    def x_of(t: float) -> float:
        return left + plot_w * (t / axis_end if axis_end > 0 else 0.0)

    marks.sort(key=lambda m: m[0])
    rows = _place_labels([(x_of(t) - left, label) for t, label, _ in marks], plot_w)
    n_rows = max(rows) + 1 if rows else 1
    label_h = 13
    top = 6 + n_rows * label_h + 4
    lane_h = 14
    lanes_h = max(len(workers), 1) * lane_h
    axis_y = top + lanes_h + 6
    height = axis_y + 22
    parts: List[str] = [
        f'<svg class="chart timeline" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="startup timeline">',
        "<title>startup timeline (seconds since launch)</title>",
    ]
    for i, (pid, t) in enumerate(workers):
        y = top + i * lane_h + lane_h / 2
        x = x_of(t)
        x_end = max(x_of(min(end_serving, axis_end)), x)
        parts.append(
            f'<text class="lane" x="{left - 6:.1f}" y="{y + 3.5:.1f}" text-anchor="end">'
            f"worker {escape(pid)}</text>"
        )
        parts.append(
            f'<line class="wait" x1="{left:.1f}" y1="{y:.1f}" x2="{x:.1f}" y2="{y:.1f}"/>'
            f'<rect class="serving" x="{x:.1f}" y="{y - 3:.1f}" width="{x_end - x:.1f}" height="6" rx="2"/>'
            f'<circle class="ready" cx="{x:.1f}" cy="{y:.1f}" r="3.5"><title>worker {escape(pid)} '
            f"ready at {escape(_fmt_s(t))}</title></circle>"
        )
    if not workers:
        parts.append(
            f'<text class="lane muted" x="{left - 6:.1f}" y="{top + lane_h / 2 + 3.5:.1f}" '
            f'text-anchor="end">no worker ready</text>'
        )
    for (t, label, css), row in zip(marks, rows):
        x = x_of(t)
        ly = 6 + row * label_h + 9
        parts.append(
            f'<line class="mark {css}" x1="{x:.1f}" y1="{ly + 3:.1f}" x2="{x:.1f}" y2="{axis_y:.1f}"/>'
            f'<text class="mlabel {css}" x="{x:.1f}" y="{ly:.1f}" text-anchor="middle">{escape(label)}'
            f"<title>{escape(label)} at {escape(_fmt_s(t))}</title></text>"
        )
    parts.append(
        f'<line class="axis" x1="{left:.1f}" y1="{axis_y:.1f}" x2="{left + plot_w:.1f}" y2="{axis_y:.1f}"/>'
    )
    tick = 0.0
    while step > 0 and tick <= axis_end + step / 1000:
        x = x_of(tick)
        parts.append(
            f'<line class="tick" x1="{x:.1f}" y1="{axis_y:.1f}" x2="{x:.1f}" y2="{axis_y + 4:.1f}"/>'
            f'<text class="ticklabel" x="{x:.1f}" y="{axis_y + 15:.1f}" text-anchor="middle">'
            f"{escape(_fmt_s(tick) if tick else '0')}</text>"
        )
        tick += step
    parts.append("</svg>")
    return Markup("".join(parts))


def worker_bars(
    per_worker: Mapping[str, Any], width: int = 380, title: str = "requests per worker"
) -> Markup:
    """Requests per worker pid as horizontal bars with counts and shares; dashed line: the even share."""
    rows: List[Tuple[str, float]] = []
    for pid, n_raw in (per_worker or {}).items():
        n = number(n_raw)
        if n is not None and n >= 0:
            rows.append((str(pid), n))
    if not rows:
        return Markup("")
    rows.sort(key=lambda r: (-r[1], r[0]))
    total = sum(n for _, n in rows) or 1.0
    top_n = max(n for _, n in rows) or 1.0
    left, right = 92.0, 96.0
    plot_w = width - left - right
    bar_h, gap = 13, 4
    height = len(rows) * (bar_h + gap) + 10
    parts: List[str] = [
        f'<svg class="chart bars" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    for i, (pid, n) in enumerate(rows):
        y = 4 + i * (bar_h + gap)
        w = plot_w * n / top_n
        share = 100.0 * n / total
        parts.append(
            f'<text class="lane" x="{left - 6:.1f}" y="{y + bar_h - 3:.1f}" text-anchor="end">'
            f"pid {escape(pid)}</text>"
            f'<rect class="bar" x="{left:.1f}" y="{y:.1f}" width="{max(w, 1.0):.1f}" height="{bar_h}" rx="2">'
            f"<title>pid {escape(pid)}: {n:.0f} requests ({share:.1f}%)</title></rect>"
            f'<text class="value" x="{left + max(w, 1.0) + 5:.1f}" y="{y + bar_h - 3:.1f}">'
            f"{n:.0f} · {share:.1f}%</text>"
        )
    even_x = left + plot_w * (total / len(rows)) / top_n
    parts.append(
        f'<line class="even" x1="{even_x:.1f}" y1="1" x2="{even_x:.1f}" y2="{height - 3}">'
        f"<title>even share: {total / len(rows):.1f} requests each</title></line>"
    )
    parts.append("</svg>")
    return Markup("".join(parts))


#: series colours of line plots (fixed; never taken from a record)
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")


def line_plot(
    series: Sequence[Tuple[str, Sequence[Tuple[Any, Any]]]],
    *,
    title: str,
    x_label: str = "workers",
    y_label: str = "seconds",
    width: int = 460,
    y_format: str = "s",
) -> Markup:
    """Lines of (x, y) points, one per labelled series, x as ordered categories (1, 2, 4, 8 workers sit
    evenly), y linear from 0; a legend under the plot. Empty Markup when no series has a point.
    `y_format`: "s" (seconds, shown as ms below 1 s) or "ms"; `y_label` goes into the SVG's accessible
    label (the title should name the quantity)."""
    clean: List[Tuple[str, List[Tuple[float, float]]]] = []
    for label, points in series:
        pts = []
        for x_raw, y_raw in points:
            x, y = number(x_raw), number(y_raw)
            if x is not None and y is not None and y >= 0:
                pts.append((x, y))
        if pts:
            clean.append((str(label), sorted(pts)))
    if not clean:
        return Markup("")
    xs = sorted({x for _, pts in clean for x, _ in pts})
    y_max = max(y for _, pts in clean for _, y in pts) or 1.0
    step = _nice_step(y_max, 4)
    y_top = math.ceil(y_max / step) * step if step > 0 else y_max
    left, right, top, plot_h = 52.0, 14.0, 22.0, 150.0
    plot_w = width - left - right
    legend_h = 15
    axis_y = top + plot_h
    height = int(axis_y + 34 + legend_h * len(clean))

    def fmt_y(v: float) -> str:
        if y_format == "ms":
            return f"{v:.0f}ms" if v >= 10 else f"{v:.1f}ms"
        return _fmt_s(v) if v else "0"

    def x_of(x: float) -> float:
        if len(xs) == 1:
            return left + plot_w / 2
        return left + plot_w * xs.index(x) / (len(xs) - 1)

    def y_of(y: float) -> float:
        return axis_y - plot_h * (y / y_top if y_top > 0 else 0.0)

    parts: List[str] = [
        f'<svg class="chart lines" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)} ({escape(y_label)})">',
        f"<title>{escape(title)}</title>",
        f'<text class="ptitle" x="{left:.1f}" y="13">{escape(title)}</text>',
    ]
    tick = 0.0
    while step > 0 and tick <= y_top + step / 1000:
        y = y_of(tick)
        parts.append(
            f'<line class="gridline" x1="{left:.1f}" y1="{y:.1f}" x2="{left + plot_w:.1f}" y2="{y:.1f}"/>'
            f'<text class="ticklabel" x="{left - 5:.1f}" y="{y + 3.5:.1f}" text-anchor="end">'
            f"{escape(fmt_y(tick))}</text>"
        )
        tick += step
    for x in xs:
        px = x_of(x)
        parts.append(
            f'<line class="tick" x1="{px:.1f}" y1="{axis_y:.1f}" x2="{px:.1f}" y2="{axis_y + 4:.1f}"/>'
            f'<text class="ticklabel" x="{px:.1f}" y="{axis_y + 15:.1f}" text-anchor="middle">'
            f"{escape(f'{x:g}')}</text>"
        )
    parts.append(
        f'<line class="axis" x1="{left:.1f}" y1="{axis_y:.1f}" x2="{left + plot_w:.1f}" y2="{axis_y:.1f}"/>'
        f'<text class="axislabel" x="{left + plot_w:.1f}" y="{axis_y + 27:.1f}" text-anchor="end">'
        f"{escape(x_label)}</text>"
    )
    for i, (label, pts) in enumerate(clean):
        colour = PALETTE[i % len(PALETTE)]
        dash = "" if i < len(PALETTE) else ' stroke-dasharray="4 3"'
        coords = " ".join(f"{x_of(x):.1f},{y_of(y):.1f}" for x, y in pts)
        parts.append(f'<polyline class="series" fill="none" stroke="{colour}"{dash} points="{coords}"/>')
        for x, y in pts:
            parts.append(
                f'<circle class="pt" cx="{x_of(x):.1f}" cy="{y_of(y):.1f}" r="3" fill="{colour}">'
                f"<title>{escape(label)}: {escape(f'{x:g}')} {escape(x_label)} -> "
                f"{escape(fmt_y(y))}</title></circle>"
            )
        ly = axis_y + 34 + i * legend_h
        parts.append(
            f'<line x1="{left:.1f}" y1="{ly - 4:.1f}" x2="{left + 18:.1f}" y2="{ly - 4:.1f}" '
            f'stroke="{colour}" stroke-width="2"{dash}/>'
            f'<text class="legend" x="{left + 24:.1f}" y="{ly:.1f}">{escape(label)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
