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

from loopline.errors import InvalidInput
from loopline.monitoring.alerts import Alert, AlertRule, check_rules, raise_alert
from loopline.monitoring.business import log_business, read_business
from loopline.monitoring.drift import drift
from loopline.monitoring.label_reads import read_labels
from loopline.monitoring.labels import LabelReport, log_labels
from loopline.monitoring.log_reads import read_predictions
from loopline.monitoring.performance import WindowMetrics, performance
from loopline.monitoring.prediction_log import PredictionLogger, get_logger
from loopline.monitoring.report import ColumnDrift, DriftReport, Histogram
from loopline.monitoring.sketch import DriftSketch
from loopline.monitoring.wire import check_request_id, finite_number


def log_prediction(
    request_id: str,
    model: str,
    version: str | int,
    inputs: list[dict[str, object]],
    outputs: list[object],
    latency_ms: float,
) -> None:
    """Queue one answered request in the process's prediction logger (no I/O here).

    One output per input row; ``latency_ms`` a finite number >= 0; ``model`` a valid model
    name (no ``..``); ``request_id`` a text of 1-200 characters. Anything else is
    :class:`~loopline.errors.InvalidInput` naming the argument, before it is queued.

    Example:
        >>> # ll.monitor.log_prediction("r-1", "flights", 3, [{"temp": 41.0}], [1], 0.8)
    """
    _check_prediction(request_id, model, inputs, outputs, latency_ms)
    get_logger().log(request_id, model, version, inputs, outputs, latency_ms)


def _check_prediction(
    request_id: object, model: object, inputs: object, outputs: object, latency_ms: object
) -> None:
    # The model server's own logging (PredictionLogger.log_request) skips these checks: it
    # is the hot path, and its rows and outputs come from the model. A caller of the SDK
    # gets them, or a row would be logged without its prediction, or a prediction dropped.
    from loopline.training.registry_checks import check_name

    try:
        check_request_id(request_id)
    except ValueError as exc:
        raise InvalidInput(
            f"request_id {request_id!r}: {exc}",
            field="request_id",
            hint="pass the id the request was answered with",
        ) from None
    check_name(model, "model")  # type: ignore[arg-type]
    for name, value in (("inputs", inputs), ("outputs", outputs)):
        if not isinstance(value, list) or not value:
            raise InvalidInput(
                f"{name} is {type(value).__name__} {value!r:.80}, not a non-empty list",
                field=name,
                hint="pass a list with one entry per input row",
            )
    assert isinstance(inputs, list) and isinstance(outputs, list)
    if len(inputs) != len(outputs):
        raise InvalidInput(
            f"got {len(inputs)} input rows and {len(outputs)} outputs",
            field="outputs",
            hint="pass one output per input row, in the same order",
        )
    took = finite_number(latency_ms)
    if took is None or took < 0:
        raise InvalidInput(
            f"latency_ms is {latency_ms!r}",
            field="latency_ms",
            hint="pass the time the model took to answer, in milliseconds (a number >= 0)",
        )


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
