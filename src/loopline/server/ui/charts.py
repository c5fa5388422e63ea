"""Chart data for the browser: plain JSON that ``static/ui.js`` hands to uPlot.

A chart is ``{"title", "kind", "x_label", "series": [{"label", "x", "y"}], ...}`` with
``kind`` one of ``lines`` (metric histories), ``steps`` (a value held until it changes,
such as canary traffic; ``x`` in epoch seconds) or ``bars`` (two distributions on shared
bins, with ``labels`` naming the bins). Long histories are thinned to at most
:data:`MAX_POINTS` points keeping each bucket's lowest and highest value, so spikes
survive; non-finite values become ``null`` - a metric's +/-inf too, which the store keeps
as +/- the largest float (as MLflow does): drawn, it stretched the axis past what a chart
can scale and the whole chart came out empty.

Example:
    >>> from loopline.tracking.entities import MetricPoint
    >>> pts = [MetricPoint(i, 1000 * i, float(i)) for i in range(5000)]
    >>> len(downsample(pts)) <= MAX_POINTS
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from loopline.server.ui.render import finite
from loopline.tracking.entities import MetricPoint
from loopline.tracking.validation import stored_infinity

#: Points per series sent to the browser.
MAX_POINTS = 1000


def downsample(points: Sequence[MetricPoint], limit: int = MAX_POINTS) -> list[MetricPoint]:
    """At most ``limit`` points: per bucket of consecutive points, its min and its max.

    Example:
        >>> from loopline.tracking.entities import MetricPoint
        >>> downsample([MetricPoint(0, 0, 1.0)])
        [MetricPoint(step=0, timestamp=0, value=1.0)]
    """
    if len(points) <= limit:
        return list(points)
    buckets = max(1, limit // 2)
    size = len(points) / buckets
    out: list[MetricPoint] = []
    for b in range(buckets):
        chunk = points[int(b * size) : int((b + 1) * size)]
        if not chunk:
            continue
        # NaN != NaN; a stored infinity is not drawn either, so it must not hide the
        # bucket's real extremes.
        finite_pts = [p for p in chunk if p.value == p.value and not stored_infinity(p.value)]
        if not finite_pts:
            out.append(chunk[0])
            continue
        lo = min(finite_pts, key=lambda p: p.value)
        hi = max(finite_pts, key=lambda p: p.value)
        out.extend(sorted({lo, hi}, key=lambda p: (p.step, p.timestamp)))
    return out


def metric_chart(
    key: str, histories: Sequence[tuple[str, Sequence[MetricPoint]]]
) -> dict[str, Any]:
    """A line chart of one metric, one series per ``(label, points)``.

    The x axis is the step; when every point has the same step (metrics logged without
    one) it is the seconds since the first point instead.

    Example:
        >>> from loopline.tracking.entities import MetricPoint
        >>> c = metric_chart("loss", [("run-a", [MetricPoint(0, 0, 0.9), MetricPoint(1, 5, 0.5)])])
        >>> c["x_label"], c["series"][0]["y"]
        ('step', [0.9, 0.5])
    """
    steps = {p.step for _, pts in histories for p in pts}
    by_time = len(steps) <= 1 and sum(len(pts) for _, pts in histories) > len(histories)
    start = min((p.timestamp for _, pts in histories for p in pts), default=0)
    series = []
    for label, pts in histories:
        thin = downsample(pts)
        xs = [(p.timestamp - start) / 1000 if by_time else p.step for p in thin]
        ys = [None if stored_infinity(p.value) else p.value for p in thin]
        series.append({"label": label, "x": xs, "y": finite(ys)})
    return {
        "title": key,
        "kind": "lines",
        "x_label": "seconds since the first point" if by_time else "step",
        "series": series,
    }


def bars_chart(
    title: str, labels: Sequence[str], series: Sequence[tuple[str, Sequence[float]]]
) -> dict[str, Any]:
    """Grouped bars: one group per bin (``labels``), one bar per series.

    Example:
        >>> bars_chart("plan", ["a", "b"], [("reference", [0.5, 0.5])])["labels"]
        ['a', 'b']
    """
    return {
        "title": title,
        "kind": "bars",
        "x_label": "",
        "labels": list(labels),
        "series": [
            {"label": name, "x": list(range(len(labels))), "y": finite(list(values))}
            for name, values in series
        ],
    }


def steps_chart(title: str, y_label: str, points: Sequence[tuple[float, float]]) -> dict[str, Any]:
    """A value held until it changes, over time (``points`` are ``(epoch seconds, value)``).

    Example:
        >>> steps_chart("traffic", "%", [(0.0, 10.0), (60.0, 50.0)])["series"][0]["y"]
        [10.0, 50.0]
    """
    return {
        "title": title,
        "kind": "steps",
        "x_time": True,
        "x_label": "time (UTC)",
        "y_label": y_label,
        "series": [
            {"label": y_label, "x": [p[0] for p in points], "y": finite([p[1] for p in points])}
        ],
    }


def time_chart(
    title: str, y_label: str, series: Sequence[tuple[str, Sequence[tuple[float, float | None]]]]
) -> dict[str, Any]:
    """Lines over time, one per ``(label, [(epoch seconds, value), ...])``.

    Example:
        >>> time_chart("p99", "ms", [("v1", [(0.0, 5.0), (60.0, None)])])["series"][0]["y"]
        [5.0, None]
    """
    return {
        "title": title,
        "kind": "lines",
        "x_time": True,
        "x_label": "time (UTC)",
        "y_label": y_label,
        "series": [
            {"label": label, "x": [p[0] for p in pts], "y": finite([p[1] for p in pts])}
            for label, pts in series
        ],
    }
