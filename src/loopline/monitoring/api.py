"""``ll.monitor``: the public face of the monitoring stage.

A thin facade: each name is implemented in its own module and handed on here. Drift
(:mod:`.drift`, :mod:`.sketch`); the prediction log (:mod:`.prediction_log`); labels that
arrive later (:mod:`.labels`); business events (:mod:`.business`); live performance per
window (:mod:`.performance`); alerts (:mod:`.alerts`).

Example:
    >>> import loopline as ll
    >>> # report = ll.monitor.drift("churn@1", "predictions.parquet")
    >>> # report.trigger(columns=model_features)
    >>> # ll.monitor.log_labels(["r-1"], [1]); ll.monitor.performance("churn", window="hour")
"""

from __future__ import annotations

from loopline.monitoring.alerts import Alert, AlertRule, check_rules, raise_alert
from loopline.monitoring.business import log_business, read_business
from loopline.monitoring.drift import drift
from loopline.monitoring.labels import LabelReport, log_labels, read_labels
from loopline.monitoring.performance import WindowMetrics, performance
from loopline.monitoring.prediction_log import PredictionLogger, get_logger, read_predictions
from loopline.monitoring.report import ColumnDrift, DriftReport, Histogram
from loopline.monitoring.sketch import DriftSketch


def log_prediction(
    request_id: str,
    model: str,
    version: str | int,
    inputs: list[dict[str, object]],
    outputs: list[object],
    latency_ms: float,
) -> None:
    """Queue one answered request in the process's prediction logger (no I/O here).

    Example:
        >>> # ll.monitor.log_prediction("r-1", "flights", 3, [{"temp": 41.0}], [1], 0.8)
    """
    get_logger().log(request_id, model, version, inputs, outputs, latency_ms)


__all__ = [
    "Alert",
    "AlertRule",
    "ColumnDrift",
    "DriftReport",
    "DriftSketch",
    "Histogram",
    "LabelReport",
    "PredictionLogger",
    "WindowMetrics",
    "check_rules",
    "drift",
    "get_logger",
    "log_business",
    "log_labels",
    "log_prediction",
    "performance",
    "raise_alert",
    "read_business",
    "read_labels",
    "read_predictions",
]
