"""Live performance: the prediction log joined with the labels that arrived, per window.

For each window (an hour, a day, or N requests in time order) and each model version:
accuracy, precision, recall and AUC (classification) or RMSE and MAE (regression) over the
labelled rows; latency p50/p99 and throughput over the requests; the sums of business
events; and data drift of the window's inputs against a reference, computed with a
:class:`~loopline.monitoring.sketch.DriftSketch` built once from the reference.

AUC is computed from ``_score`` when the server logged one, else from the predicted class
(then it is the balanced accuracy of the hard decision, still comparable across windows).

Example:
    >>> # for w in ll.monitor.performance("flights", window="hour", reference="flights-train@1"):
    >>> #     print(w.start, w.version, w.metrics.get("auc"), w.drifted)
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import numpy as np
import pandas as pd

from loopline.errors import InvalidInput
from loopline.monitoring.alerts import BUSINESS_PREFIX
from loopline.monitoring.business import read_business
from loopline.monitoring.classes import BINARY, THRESHOLD, class_name, positive_class
from loopline.monitoring.label_join import join_labels, last_loggings
from loopline.monitoring.labels import read_labels
from loopline.monitoring.prediction_log import read_predictions
from loopline.monitoring.sketch import DriftSketch
from loopline.monitoring.wire import finite_number

Task = Literal["classification", "regression"]
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


def _numbers(values: pd.Series) -> np.ndarray | None:
    """The values as floats, or None when any non-null one is not a number (or a bool)."""
    kept = values.dropna()
    if kept.dtype == bool or (kept.dtype == object and all(isinstance(v, bool) for v in kept)):
        kept = kept.astype(int)
    numbers = pd.to_numeric(kept, errors="coerce")
    if numbers.isna().any():
        return None
    return numbers.to_numpy(dtype=float)


def infer_task(y: pd.Series, predictions: pd.Series | None = None) -> Task:
    """``classification`` when the labels are a few whole numbers (or not numbers) and the
    predictions, if numbers, are whole too, or, for labels of 0 and 1, probabilities from 0
    to 1 (a binary classifier's, :mod:`.classes`); else ``regression``: a model of counts
    or ratings predicts 4.7 for a label of 5, which is an error to measure, not a wrong class.

    Example:
        >>> infer_task(pd.Series([0.0, 1.0, 1.0]))
        'classification'
        >>> infer_task(pd.Series([4, 5, 5]), pd.Series([4.7, 5.1, 4.9]))
        'regression'
        >>> infer_task(pd.Series([0, 1, 1]), pd.Series([0.2, 0.9, 0.6]))
        'classification'
    """
    values = pd.to_numeric(y, errors="coerce").dropna()
    if values.empty:
        return "classification"
    whole = bool(np.all(np.equal(np.mod(values, 1), 0)))
    if not (whole and values.nunique() <= 20):
        return "regression"
    predicted = None if predictions is None else _numbers(predictions)
    if predicted is not None and not bool(np.all(np.equal(np.mod(predicted, 1), 0))):
        # Labels of 0 and 1 met by numbers from 0 to 1: a binary classifier's probability
        # of class 1 (:mod:`.classes`), not a regressor's estimate.
        if _probabilities(predicted) and set(np.unique(values)) <= {0.0, 1.0}:
            return "classification"
        return "regression"
    return "classification"


def _probabilities(values: np.ndarray) -> bool:
    """Whether every value lies from 0 to 1, and some strictly between (not all classes)."""
    return bool(
        len(values)
        and np.all((values >= 0.0) & (values <= 1.0))
        and np.any((values > 0.0) & (values < 1.0))
    )


def hard_classes(
    y_true: pd.Series, y_pred: pd.Series
) -> tuple[pd.Series, pd.Series, np.ndarray | None]:
    """The class each label and each prediction names (:func:`.classes.class_name`), and
    the predictions as probabilities when they are a binary classifier's (labels of 0 and
    1 met by numbers from 0 to 1: class 1 from :data:`.classes.THRESHOLD` up), else None.

    Example:
        >>> t, p, probs = hard_classes(pd.Series([1, 0]), pd.Series([0.8, 0.6]))
        >>> p.tolist(), probs.tolist()
        (['1', '1'], [0.8, 0.6])
    """
    yt_s = y_true.map(class_name).astype(str)
    yp_s = y_pred.map(class_name).astype(str)
    probs = _numbers(y_pred) if set(yt_s) <= BINARY else None
    if probs is None or len(probs) != len(y_pred) or not _probabilities(probs):
        return yt_s, yp_s, None
    hard = pd.Series(np.where(probs >= THRESHOLD, "1", "0"), index=y_pred.index).astype(str)
    return yt_s, hard, probs


def label_metrics(
    y_true: pd.Series,
    y_pred: pd.Series,
    score: pd.Series | None,
    task: Task,
    positive: Any = None,
    classes: Collection[str] | None = None,
) -> dict[str, float]:
    """Accuracy/precision/recall/AUC or RMSE/MAE of labelled rows.

    ``classes``: every class the model was seen with (as :func:`hard_classes` names them;
    default: those of these rows). Of two (or one), precision, recall and AUC are those of
    the positive class (:func:`.classes.positive_class`), whichever classes these rows
    happen to hold; of more, their macro average. A metric these rows cannot define is
    left out, as AUC is over labels of one class: recall without a label of the positive
    class, precision without a prediction of it (a class's share of a macro average too).

    Example:
        >>> m = label_metrics(pd.Series([1, 0]), pd.Series([1, 1]), None, "classification")
        >>> m["accuracy"]
        0.5
        >>> label_metrics(pd.Series([0, 0]), pd.Series([0, 1]), None, "classification")
        {'accuracy': 0.5, 'precision': 0.0}
    """
    from sklearn import metrics as skm

    if len(y_true) == 0:
        return {}
    if task == "regression":
        # Every row counts: a label or prediction that is not a number makes the metrics
        # NaN here, never a mean over fewer rows; performance() scores only the rows that
        # are (and counts the others in unscored_rows).
        err = finite_values(y_pred) - finite_values(y_true)
        return {
            "rmse": float(math.sqrt(float(np.mean(err**2)))),
            "mae": float(np.mean(np.abs(err))),
        }
    yt_s, yp_s, probs = hard_classes(y_true, y_pred)
    seen = set(yt_s) | set(yp_s) if classes is None else set(classes)
    out = {"accuracy": float(skm.accuracy_score(yt_s, yp_s))}
    if len(seen) > 2:
        # nan: a class these rows never predict (never hold) has no precision (recall),
        # and counts in no average, rather than as 0
        found = {
            "precision": skm.precision_score(yt_s, yp_s, average="macro", zero_division=np.nan),
            "recall": skm.recall_score(yt_s, yp_s, average="macro", zero_division=np.nan),
        }
        return out | _defined(found)
    pos = positive_class(seen, positive)
    if pos is None:
        return out
    if probs is not None and (score is None or not score.notna().all()):
        # AUC ranks by the probability (of class 0's when that is the positive one)
        # unless the server logged a score of its own.
        score = pd.Series(probs if pos != "0" else 1.0 - probs, index=y_pred.index)
    found = {
        "precision": skm.precision_score(yt_s, yp_s, pos_label=pos, zero_division=np.nan),
        "recall": skm.recall_score(yt_s, yp_s, pos_label=pos, zero_division=np.nan),
    }
    truth = (yt_s == pos).astype(int)
    if truth.nunique() == 2:
        ranked = (
            score.astype(float)
            if score is not None and score.notna().all()
            else (yp_s == pos).astype(int)
        )
        found["auc"] = skm.roc_auc_score(truth, ranked)
    return out | _defined(found)


def _defined(values: dict[str, Any]) -> dict[str, float]:
    """The values that are numbers (sklearn's NaN: undefined over these rows), as floats."""
    return {k: float(v) for k, v in values.items() if not math.isnan(float(v))}


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
        from loopline.data.datasets import get, parse_ref

        name, version = parse_ref(reference)
        reference = get(name, "latest" if version is None else version).to_pandas()
    return DriftSketch.from_reference(reference, columns=features)


#: The shortest span a window's rate is measured over, in seconds (see :func:`throughput`).
MIN_RATE_SPAN_S = 1.0


def throughput(stamps: pd.Series) -> float | None:
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


def _scored(labelled: pd.DataFrame, task: Task) -> tuple[pd.DataFrame, int]:
    """The labelled rows that can be scored, and how many cannot: a regressor's row whose
    label or prediction is not a finite number (a text label such as ``"n/a"`` or ``"3"``,
    a prediction of None) - counted, never coerced nor dropped unseen. Any label is a
    class, so a classifier scores every row."""
    if task != "regression" or labelled.empty:
        return labelled, 0
    ok = labelled["label_num"].notna().to_numpy() & np.isfinite(
        finite_values(labelled["_prediction"])
    )
    return labelled[ok], int((~ok).sum())


def finite_values(values: pd.Series) -> np.ndarray:
    """The values as floats: NaN where one is not a finite number (text, None, a bool).

    Example:
        >>> finite_values(pd.Series([1.5, "3", None, True, 2], dtype=object)).tolist()
        [1.5, nan, nan, nan, 2.0]
    """
    if pd.api.types.is_bool_dtype(values.dtype):
        return np.full(len(values), np.nan)
    if pd.api.types.is_numeric_dtype(values.dtype):
        out = values.to_numpy(dtype=float, na_value=np.nan)
        return np.where(np.isfinite(out), out, np.nan)
    found = (finite_number(v) for v in values)
    return np.array([np.nan if f is None else f for f in found], dtype=float)


def _percentile(values: pd.Series, q: float) -> float | None:
    vals = values.dropna().to_numpy(dtype=float)
    return float(np.percentile(vals, q)) if len(vals) else None


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
    positive class (as the gate's thresholds do; see :func:`label_metrics`).

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
    frame = join_labels(frame, read_labels(model))
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
    classes = None
    if task == "classification" and not labelled_all.empty:
        # The classes of every window, from all of them: which class is positive, and
        # whether precision and recall are a binary's or a macro average, must not depend
        # on the classes one window happens to hold.
        yt_all, yp_all, _ = hard_classes(_truth(labelled_all, task), labelled_all["_prediction"])
        classes = set(yt_all) | set(yp_all)
        if len(classes) <= 2:
            positive_class(classes, positive)  # a positive class that is none: refused now
    sketch = reference_sketch(reference, features) if reference is not None else None
    business = read_business(float(frame["_window"].min()))
    if not business.empty:  # an event sent for another model is not this one's
        business = business[business["model"].isna() | (business["model"] == model)]
    keys = ["_window", "_version"] if by_version else ["_window"]
    out: list[WindowMetrics] = []
    span = 86400.0 if window == "day" else 3600.0
    for key, group in frame.groupby(keys, sort=True):
        parts = key if isinstance(key, tuple) else (key,)
        w_start = float(cast(float, parts[0]))
        version = str(parts[1]) if by_version else "*"
        requests = group.drop_duplicates("_request_id")
        w_end = float(group["_ts"].max()) if isinstance(window, int) else w_start + span
        labelled, unscored = _scored(group[group["label"].notna()], task)
        truth = _truth(labelled, task)
        score = labelled["_score"] if "_score" in labelled.columns else None
        w = WindowMetrics(
            start=w_start,
            end=w_end,
            version=version,
            requests=len(requests),
            rows=len(group),
            labelled=len(labelled),
            metrics=label_metrics(truth, labelled["_prediction"], score, task, positive, classes),
            latency_p50_ms=_percentile(requests["_latency_ms"], 50),
            latency_p99_ms=_percentile(requests["_latency_ms"], 99),
            throughput_rps=throughput(requests["_ts"]),
            no_row_labels=int(group["_no_row_label"].sum()),
            out_of_range_labels=int(group["_out_of_range_labels"].sum()),
            unscored_rows=unscored,
            relogged_requests=int(group["_relogged"].sum()),
        )
        if not business.empty:
            mine = business[business["request_id"].isin(set(requests["_request_id"]))]
            if not by_version:
                # An hour (a day) holds what arrived in it, after its last request too; a
                # window of N requests spans its first to its last request.
                ts = business["ts"]
                inside = (
                    ts.between(float(group["_ts"].min()), w_end)
                    if isinstance(window, int)
                    else (ts >= w_start) & (ts < w_end)
                )
                loose = business[business["request_id"].isna() & inside]
                mine = pd.concat([mine, loose])
            w.business = {str(k): float(v) for k, v in mine.groupby("event")["value"].sum().items()}
        if sketch is not None:
            report = (
                sketch.window()
                .update(
                    group.drop(
                        columns=[
                            c
                            for c in group.columns
                            if c.startswith("_") or c in ("label", "label_num")
                        ]
                    )
                )
                .drift()
            )
            reasons = report.trigger_reasons([*report.columns, *report.missing_columns])
            w.drifted = list(reasons)
            w.drift_scores = {
                n: float(c.psi) for n, c in report.columns.items() if c.tested and c.psi is not None
            }
            w.drift_notes = {**reasons, **report.not_tested}
        out.append(w)
    return out
