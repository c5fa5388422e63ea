"""Live performance: the prediction log joined with the labels that arrived, per window.

For each window (an hour, a day, or N requests in time order) and each model version:
accuracy, precision, recall and AUC (classification) or RMSE and MAE (regression) over the
labelled rows; latency p50/p99 and throughput over the requests; the sums of business
events; and data drift of the window's inputs against a reference, computed with a
:class:`~loopline.monitoring.sketch.DriftSketch` built once from the reference.

AUC is computed from ``_score`` when the server logged one, else from the predicted class
(then it is the balanced accuracy of the hard decision, still comparable across windows).

The log is read once (the newest ``last`` rows only, and the labels of their requests
only), and each row's class names, numbers and counts are worked out once as arrays; a
window is then a set of row positions, scored with NumPy (:mod:`.scoring`). A page of
20 windows of 1,000 requests of two versions took 1.1 s, mostly in per-window pandas and
scikit-learn calls.

Example:
    >>> # for w in ll.monitor.performance("flights", window="hour", reference="flights-train@1"):
    >>> #     print(w.start, w.version, w.metrics.get("auc"), w.drifted)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, cast

import numpy as np
import pandas as pd

from loopline.errors import InvalidInput
from loopline.monitoring.alerts import BUSINESS_PREFIX
from loopline.monitoring.business import read_business
from loopline.monitoring.classes import positive_class
from loopline.monitoring.label_join import ISSUE_COLUMNS, join_labels, last_loggings
from loopline.monitoring.label_reads import read_labels
from loopline.monitoring.log_reads import read_predictions
from loopline.monitoring.scoring import (
    Task,
    class_metrics,
    class_names,
    error_metrics,
    finite_values,
    hard_names,
    infer_task,
    numbers_of,
)
from loopline.monitoring.sketch import DriftSketch

Window = Literal["hour", "day"] | int


@dataclass
class WindowMetrics:
    """The live metrics of one model version over one window.

    ``requests`` answered, the ``rows`` they carried (one prediction each) and how many of
    those rows are ``labelled``: compared with a label for the row, or for the request as
    a whole when it had one row or the label was sent for every row (:mod:`.label_join`).
    Labels that fit no row are counted, not compared: ``no_row_labels`` (requests of
    several rows labelled as a whole) and ``out_of_range_labels`` (a row the request does
    not have); so are the rows that met a label but cannot be scored, ``unscored_rows``
    (a regressor's row whose label or prediction is not a finite number: ``"n/a"``,
    ``"3"``, None). A request id logged more than once counts once, by its last logging;
    ``relogged_requests`` says how many such requests the window has (:mod:`.label_join`).
    ``throughput_rps`` is None when the window cannot measure a rate (:func:`throughput`).

    Drift (with a reference): ``drifted`` lists the features that trigger - their values
    drifted, their share of missing values rose, or they are missing or broken (all null,
    another type) in the window; ``drift_scores`` the PSI of each tested feature;
    ``drift_notes`` says why for each drifted feature and each one without a verdict
    (skipped on purpose, broken or missing), so that none silently drops out.
    """

    start: float
    end: float
    version: str
    requests: int
    rows: int
    labelled: int
    metrics: dict[str, float] = field(default_factory=dict)
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    throughput_rps: float | None = None
    business: dict[str, float] = field(default_factory=dict)
    drifted: list[str] = field(default_factory=list)
    drift_scores: dict[str, float] = field(default_factory=dict)
    drift_notes: dict[str, str] = field(default_factory=dict)
    no_row_labels: int = 0
    out_of_range_labels: int = 0
    unscored_rows: int = 0
    relogged_requests: int = 0

    def value(self, name: str) -> float | None:
        """A metric by name: a live metric, ``latency_p99_ms``, ``drift_share``,
        ``business.<event>`` (the event's sum), ...

        Example:
            >>> WindowMetrics(0, 1, "1", 10, 10, 0, {"auc": 0.7}).value("auc")
            0.7
        """
        if name in self.metrics:
            return self.metrics[name]
        if name.startswith(BUSINESS_PREFIX):
            return self.business.get(name.removeprefix(BUSINESS_PREFIX))
        if name in self.business:
            return self.business[name]
        if name == "drift_share":
            # over the tested, missing and broken columns: those two count as drifted
            total = len(self.drift_scores.keys() | set(self.drifted))
            return len(self.drifted) / total if total else None
        if name == "drifted_features":
            return float(len(self.drifted))
        found = getattr(self, name, None)
        return float(found) if isinstance(found, int | float) else None

    def to_dict(self) -> dict[str, Any]:
        """The window as plain data.

        Example:
            >>> WindowMetrics(0, 1, "1", 10, 10, 0).to_dict()["requests"]
            10
        """
        return {
            "start": self.start,
            "end": self.end,
            "version": self.version,
            "requests": self.requests,
            "rows": self.rows,
            "labelled": self.labelled,
            "metrics": self.metrics,
            "latency_p50_ms": self.latency_p50_ms,
            "latency_p99_ms": self.latency_p99_ms,
            "throughput_rps": self.throughput_rps,
            "business": self.business,
            "drifted": self.drifted,
            "drift_scores": self.drift_scores,
            "drift_notes": self.drift_notes,
            "no_row_labels": self.no_row_labels,
            "out_of_range_labels": self.out_of_range_labels,
            "unscored_rows": self.unscored_rows,
            "relogged_requests": self.relogged_requests,
        }


def _check_window(window: Window) -> None:
    if window in ("hour", "day"):
        return
    if isinstance(window, int) and not isinstance(window, bool) and window >= 1:
        return
    raise InvalidInput(
        "The 'window' parameter of performance must be 'hour', 'day' or a number of "
        f"requests >= 1. Got {window!r} instead.",
        field="window",
    )


def assign_windows(frame: pd.DataFrame, window: Window) -> pd.Series:
    """The window start of each row: the hour/day, or the first timestamp of each run of
    ``window`` requests (in time order).

    Example:
        >>> f = pd.DataFrame({"_ts": [0.0, 10.0, 4000.0], "_request_id": ["a", "b", "c"]})
        >>> assign_windows(f, "hour").tolist()
        [0.0, 0.0, 3600.0]
    """
    _check_window(window)
    ts = frame["_ts"].astype(float)
    if window in ("hour", "day"):
        span = 3600.0 if window == "hour" else 86400.0
        return pd.Series(np.floor(ts.to_numpy() / span) * span, index=frame.index)
    assert isinstance(window, int)
    first = frame.groupby("_request_id", sort=False)["_ts"].min().sort_values(kind="stable")
    ordinal = pd.Series(np.arange(len(first)) // window, index=first.index)
    starts = first.groupby(ordinal).transform("min")
    return frame["_request_id"].map(pd.Series(starts.values, index=first.index)).astype(float)


def reference_sketch(reference: Any, features: list[str] | None) -> DriftSketch:
    """A drift sketch of the reference: a DriftSketch (kept), a DataFrame, a file or a
    dataset reference ``"name@version"``.

    Example:
        >>> reference_sketch(pd.DataFrame({"x": [1.0, 2.0, 3.0]}), None).columns
        ['x']
    """
    if isinstance(reference, DriftSketch):
        return reference
    if isinstance(reference, str) and "@" in reference and not reference.endswith(".parquet"):
        from loopline.data.dataset_reads import get
        from loopline.data.dataset_refs import parse_ref

        name, version = parse_ref(reference)
        reference = get(name, "latest" if version is None else version).to_pandas()
    return DriftSketch.from_reference(reference, columns=features)


#: The shortest span a window's rate is measured over, in seconds (see :func:`throughput`).
MIN_RATE_SPAN_S = 1.0


def throughput(stamps: pd.Series | np.ndarray) -> float | None:
    """Requests per second of a window, from its requests' timestamps: their number over
    the span from the first to the last, a second at least; None when the window cannot
    measure a rate - fewer than two requests, or all logged at one instant.

    Why the floor: a timestamp is taken when an answer is queued, by each server worker's
    own clock, so a span under a second is more the clocks' and the queue's jitter than
    the traffic's - five requests logged 40 microseconds apart are not 100,000 requests per
    second. Windows of an hour, a day and N requests all measure alike.

    Example:
        >>> throughput(pd.Series([0.0, 5.0, 10.0])), throughput(pd.Series([0.0, 0.001]))
        (0.3, 2.0)
        >>> throughput(pd.Series([7.0])), throughput(pd.Series([7.0, 7.0])) is None
        (None, True)
    """
    if len(stamps) < 2:
        return None
    span = float(stamps.max()) - float(stamps.min())
    if not span > 0:
        return None
    return len(stamps) / max(span, MIN_RATE_SPAN_S)


def _truth(labelled: pd.DataFrame, task: Task) -> pd.Series:
    """The labels of joined rows as compared: a label sent as a number or a bool by its
    number (``label_num``: stored as text, True was 'True' and never met a prediction of
    1), a text label as its text."""
    if task == "regression":
        return labelled["label_num"]
    number = labelled["label_num"]
    return number.astype(object).where(number.notna(), labelled["label"])


def _scorable(labelled: pd.DataFrame, task: Task) -> np.ndarray:
    """Which labelled rows can be scored: not a regressor's row whose label or prediction
    is not a finite number (a text label such as ``"n/a"`` or ``"3"``, a prediction of
    None) - those are counted, never coerced nor dropped unseen. Any label is a class, so
    a classifier scores every row."""
    if task != "regression" or labelled.empty:
        return np.ones(len(labelled), dtype=bool)
    numbers = labelled["label_num"].notna().to_numpy(dtype=bool)
    ok: np.ndarray = numbers & np.isfinite(finite_values(labelled["_prediction"]))
    return ok


def _percentiles(values: np.ndarray) -> tuple[float | None, float | None]:
    """The median and the 99th percentile of the values that are not NaN (in one call:
    NumPy's own cost is most of it on a window's values)."""
    vals = values[~np.isnan(values)]
    if not len(vals):
        return None, None
    p50, p99 = np.percentile(vals, [50, 99])
    return float(p50), float(p99)


def performance(
    model: str,
    *,
    window: Window = "hour",
    start: float | pd.Timestamp | str | None = None,
    end: float | pd.Timestamp | str | None = None,
    last: int | None = None,
    task: Task | None = None,
    reference: Any = None,
    features: list[str] | None = None,
    by_version: bool = True,
    positive: Any = None,
) -> list[WindowMetrics]:
    """Live metrics of ``model`` per window and version, from the prediction log and the
    labels and business events that arrived; drift per window when ``reference`` is given
    (only ``features`` tested when given). ``positive`` names a binary classifier's
    positive class (as the gate's thresholds do; see :func:`.scoring.label_metrics`).

    Example:
        >>> # ll.monitor.performance("flights", window=500, reference="flights-train@1")
    """
    _check_window(window)
    frame = read_predictions(model, start=start, end=end, last=last)
    if frame.empty:
        return []
    frame = last_loggings(frame)  # a request id logged twice: its last answer, once
    frame["_window"] = assign_windows(frame, window)
    # Each row meets the label sent for it (or for its request of one row, or for every
    # row of its request); the labels that fit no row are counted per window.
    frame = join_labels(frame, read_labels(model, request_ids=frame["_request_id"]))
    labelled_all = frame[frame["label"].notna()]
    if task is None:
        use = (
            labelled_all["label_num"]
            if labelled_all["label_num"].notna().all()
            else labelled_all["label"]
        )
        task = (
            infer_task(use, labelled_all["_prediction"])
            if not labelled_all.empty
            else "classification"
        )
    labels = _Labelled.of(frame, task)
    classes = None
    if task == "classification" and not labelled_all.empty:
        # The classes of every window, from all of them: which class is positive, and
        # whether precision and recall are a binary's or a macro average, must not depend
        # on the classes one window happens to hold.
        predicted = labels.prediction if labels.numbers is None else labels.numbers
        yt_all, yp_all, _ = hard_names(labels.truth_names, labels.predicted_names, predicted)
        classes = set(yt_all) | set(yp_all)
        if len(classes) <= 2:
            positive_class(classes, positive)  # a positive class that is none: refused now
    sketch = reference_sketch(reference, features) if reference is not None else None
    # an event sent for another model is not this one's
    business = read_business(float(frame["_window"].min()), model=model)
    keys = ["_window", "_version"] if by_version else ["_window"]
    groups = _Groups.of(frame, keys)
    ts = frame["_ts"].to_numpy(dtype=float)
    latency = frame["_latency_ms"].to_numpy(dtype=float, na_value=np.nan)
    counts = {c: frame[c].to_numpy(dtype=np.int64) for c in (*ISSUE_COLUMNS, "_relogged")}
    out: list[WindowMetrics] = []
    span = 86400.0 if window == "day" else 3600.0
    for key, rows in zip(groups.keys, groups.rows, strict=True):
        parts = key if isinstance(key, tuple) else (key,)
        w_start = float(cast(float, parts[0]))
        version = str(parts[1]) if by_version else "*"
        requests = rows[groups.first[rows]]  # each request's first row
        w_end = float(ts[rows].max()) if isinstance(window, int) else w_start + span
        mine = labels.at[rows]
        mine = mine[mine >= 0]  # the window's labelled rows, as rows of labelled_all
        scored = mine[labels.scorable[mine]]
        p50, p99 = _percentiles(latency[requests])
        w = WindowMetrics(
            start=w_start,
            end=w_end,
            version=version,
            requests=len(requests),
            rows=len(rows),
            labelled=len(scored),
            metrics=labels.metrics(scored, task, positive, classes),
            latency_p50_ms=p50,
            latency_p99_ms=p99,
            throughput_rps=throughput(ts[requests]),
            no_row_labels=int(counts["_no_row_label"][rows].sum()),
            out_of_range_labels=int(counts["_out_of_range_labels"][rows].sum()),
            unscored_rows=len(mine) - len(scored),
            relogged_requests=int(counts["_relogged"][rows].sum()),
        )
        if sketch is not None:
            _add_drift(w, sketch, frame.iloc[rows])
        out.append(w)
    if not business.empty:
        _add_business(out, business, groups, ts, isinstance(window, int), by_version)
    return out


def _add_business(
    windows: list[WindowMetrics],
    business: pd.DataFrame,
    groups: _Groups,
    ts: np.ndarray,
    by_count: bool,
    by_version: bool,
) -> None:
    """The sums of the business events of each window (in one groupby, each window's in
    the order it holds them): those of its requests, and over all versions
    (``by_version=False``) those without a request that arrived in it - an hour (a day)
    holds what arrived in it, after its last request too; a window of N requests spans
    its first to its last request."""
    events = groups.rows_of(business["request_id"])
    loose = np.flatnonzero(business["request_id"].isna().to_numpy())
    arrived = business["ts"].to_numpy(dtype=float)[loose]
    taken, of = [], []
    for g, (w, rows) in enumerate(zip(windows, groups.rows, strict=True)):
        mine = events.get(g, _NONE)
        if not by_version:
            inside = (
                (arrived >= float(ts[rows].min())) & (arrived <= w.end)
                if by_count
                else (arrived >= w.start) & (arrived < w.end)
            )
            mine = np.concatenate([mine, loose[inside]])
        taken.append(mine)
        of.append(np.full(len(mine), g))
    picked = business.iloc[np.concatenate(taken)].assign(_g=np.concatenate(of))
    sums = picked.groupby(["_g", "event"], sort=True)["value"].sum()
    for key, value in sums.items():
        g, event = cast(tuple[int, str], key)
        windows[g].business[str(event)] = float(value)


_NONE = np.zeros(0, dtype=np.int64)


def _add_drift(w: WindowMetrics, sketch: DriftSketch, group: pd.DataFrame) -> None:
    """The drift of a window's inputs (its rows of the log) against the reference."""
    inputs = group.drop(
        columns=[c for c in group.columns if c.startswith("_") or c in ("label", "label_num")]
    )
    report = sketch.window().update(inputs).drift()
    reasons = report.trigger_reasons([*report.columns, *report.missing_columns])
    w.drifted = list(reasons)
    w.drift_scores = {
        n: float(c.psi) for n, c in report.columns.items() if c.tested and c.psi is not None
    }
    w.drift_notes = {**reasons, **report.not_tested}


@dataclass
class _Groups:
    """The windows (and versions) of the joined log: each one's key and rows (positions,
    in log order), and ``first``: whether a row is its request's first in its window."""

    keys: list[Any]
    rows: list[np.ndarray]
    first: np.ndarray
    ids: pd.Index
    pairs: np.ndarray

    @classmethod
    def of(cls, frame: pd.DataFrame, keys: list[str]) -> _Groups:
        grouped = frame.groupby(keys, sort=True)
        of_row = grouped.ngroup().to_numpy(dtype=np.int64)
        order = np.argsort(of_row, kind="stable")
        bounds = np.searchsorted(of_row[order], np.arange(grouped.ngroups + 1))
        rows = [order[bounds[g] : bounds[g + 1]] for g in range(grouped.ngroups)]
        # Each (request, window) as one number, (request, window) order: its first row is
        # the request's first in the window.
        codes, ids = pd.factorize(frame["_request_id"].to_numpy(dtype=object))
        pairs, at = np.unique(codes * grouped.ngroups + of_row, return_index=True)
        first = np.zeros(len(frame), dtype=bool)
        first[at] = True
        keys_of = list(grouped.size().index)
        return cls(keys_of, rows, first, pd.Index(ids), pairs)

    def rows_of(self, request_ids: pd.Series) -> dict[int, np.ndarray]:
        """Per window, the positions of the ``request_ids`` (business events) that name
        one of its requests, in their order (a request in two windows: in both)."""
        found = self.ids.get_indexer(pd.Index(request_ids.to_numpy(dtype=object)))
        at = np.flatnonzero(found >= 0)
        if not len(at):
            return {}
        n = len(self.rows)
        request, window = self.pairs // n, self.pairs % n
        lo = np.searchsorted(request, found[at], "left")
        many = np.searchsorted(request, found[at], "right") - lo  # 1, unless relogged
        events = np.repeat(at, many)
        # the windows of each event's request: lo, lo + 1, ... for each
        pair = np.repeat(lo - np.cumsum(many) + many, many) + np.arange(len(events))
        of = window[pair]
        order = np.argsort(of, kind="stable")  # by window, each in the events' order
        events, of = events[order], of[order]
        starts = np.flatnonzero(np.r_[True, of[1:] != of[:-1]])
        parts = np.split(events, starts[1:])
        return {int(of[i]): part for i, part in zip(starts, parts, strict=True)}


@dataclass
class _Labelled:
    """The labelled rows of the joined log, read once for every window: the labels as
    compared and the predictions; a classifier's class each names, a regressor's numbers;
    whether each row can be scored; and ``at``: each log row's position here (-1: none)."""

    prediction: pd.Series
    numbers: np.ndarray | None
    score: np.ndarray | None
    truth_names: np.ndarray
    predicted_names: np.ndarray
    truth_values: np.ndarray
    predicted_values: np.ndarray
    scorable: np.ndarray
    at: np.ndarray

    @classmethod
    def of(cls, frame: pd.DataFrame, task: Task) -> _Labelled:
        has = frame["label"].notna().to_numpy()
        labelled = frame[has]
        truth, prediction = _truth(labelled, task), labelled["_prediction"]
        none = np.empty(0, dtype=object)
        classify = task == "classification"
        score = labelled["_score"] if "_score" in labelled.columns else None
        return cls(
            prediction=prediction,
            numbers=numbers_of(prediction),
            score=None if score is None else score.to_numpy(dtype=float, na_value=np.nan),
            truth_names=class_names(truth) if classify else none,
            predicted_names=class_names(prediction) if classify else none,
            truth_values=none if classify else finite_values(truth),
            predicted_values=none if classify else finite_values(prediction),
            scorable=_scorable(labelled, task),
            at=np.where(has, np.cumsum(has) - 1, -1),
        )

    def metrics(
        self, rows: np.ndarray, task: Task, positive: Any, classes: set[str] | None
    ) -> dict[str, float]:
        """:func:`.scoring.label_metrics` of these rows (positions here)."""
        if len(rows) == 0:
            return {}
        if task == "regression":
            return error_metrics(self.truth_values[rows], self.predicted_values[rows])
        predicted = self.prediction.iloc[rows] if self.numbers is None else self.numbers[rows]
        named = self.truth_names[rows], self.predicted_names[rows]
        yt_s, yp_s, probs = hard_names(*named, predicted)
        score = None if self.score is None else self.score[rows]
        return class_metrics(yt_s, yp_s, probs, score, positive, classes)
