"""Prometheus metrics of the model server, with labelled children cached for the hot path.

* ``loopline_predictions_total{model, version, status}`` - requests by answer status;
* ``loopline_prediction_latency_seconds{model, version}`` - request latency histogram;
* ``loopline_model_failures_total{model, version, kind}`` - a version raised or timed out
  (``kind``: ``error``/``timeout``) and another one answered, or none could;
* ``loopline_shadow_predictions_total{model, version, agreed}`` - mirrored requests;
* ``loopline_shadow_skipped_total{model, version}`` - requests not mirrored because the
  shadow version was still busy with ``SHADOW_BACKLOG`` earlier ones;
* ``loopline_feedback_labels_total{model, outcome}`` - labels sent to ``/feedback``:
  ``matched`` (scored against the prediction of their row), ``unmatched`` (the request was
  answered, but the label names none of its predictions; or no rollout runs), ``pending``
  (passed on to the other workers; each then ends as ``matched``/``unmatched`` where it
  was answered, or after the label horizon as ``expired`` - no worker remembered its
  request - or ``logged`` - stored for the prediction log's live performance instead).

With ``--workers N`` the server sets ``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` sums the
workers' values (prometheus_client's multiprocess mode).

Example:
    >>> m = ServingMetrics()
    >>> m.request("churn", "3", 200, 0.001)
    >>> b'loopline_predictions_total{model="churn",status="200",version="3"} 1.0' in m.render()[0]
    True
"""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServingMetrics:
    """The server's metrics on their own registry (so several apps can live in one process)."""

    def __init__(self, multiprocess: bool = False) -> None:
        self.multiprocess = multiprocess
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "loopline_predictions",
            "Prediction requests by answer status.",
            ["model", "version", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "loopline_prediction_latency_seconds",
            "Prediction request latency.",
            ["model", "version"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.failures = Counter(
            "loopline_model_failures",
            "Model versions that raised or timed out on a request.",
            ["model", "version", "kind"],
            registry=self.registry,
        )
        self.shadow = Counter(
            "loopline_shadow_predictions",
            "Requests mirrored to a shadow version.",
            ["model", "version", "agreed"],
            registry=self.registry,
        )
        self.shadow_skips = Counter(
            "loopline_shadow_skipped",
            "Requests not mirrored to a shadow version that was still busy.",
            ["model", "version"],
            registry=self.registry,
        )
        self.feedback = Counter(
            "loopline_feedback_labels",
            "Labels sent to /feedback, by what became of them.",
            ["model", "outcome"],
            registry=self.registry,
        )
        self._counters: dict[tuple[str, str, int], Any] = {}
        self._histograms: dict[tuple[str, str], Any] = {}

    def request(self, model: str, version: str, status: int, seconds: float) -> None:
        """Count one request and observe its latency.

        Example:
            >>> ServingMetrics().request("churn", "3", 422, 0.0004)
        """
        key = (model, version, status)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = self.requests.labels(model, version, str(status))
        counter.inc()
        hkey = (model, version)
        hist = self._histograms.get(hkey)
        if hist is None:
            hist = self._histograms[hkey] = self.latency.labels(model, version)
        hist.observe(seconds)

    def failure(self, model: str, version: str, kind: str) -> None:
        """Count one failure of a model version.

        Example:
            >>> ServingMetrics().failure("churn", "4", "timeout")
        """
        self.failures.labels(model, version, kind).inc()

    def shadowed(self, model: str, version: str, agreed: bool) -> None:
        """Count one mirrored request.

        Example:
            >>> ServingMetrics().shadowed("churn", "4", agreed=True)
        """
        self.shadow.labels(model, version, "true" if agreed else "false").inc()

    def shadow_skipped(self, model: str, version: str) -> None:
        """Count one request not mirrored to a busy shadow version.

        Example:
            >>> ServingMetrics().shadow_skipped("churn", "4")
        """
        self.shadow_skips.labels(model, version).inc()

    def labels(self, model: str, outcome: str, n: int) -> None:
        """Count ``n`` labels of ``model`` with ``outcome`` (see the module); 0 counts none.

        Example:
            >>> m = ServingMetrics(); m.labels("churn", "expired", 2)
            >>> line = b'loopline_feedback_labels_total{model="churn",outcome="expired"} 2.0'
            >>> line in m.render()[0]
            True
        """
        if n:
            self.feedback.labels(model, outcome).inc(n)

    def render(self) -> tuple[bytes, str]:
        """The text exposition format and its content type (all workers in multiprocess).

        Example:
            >>> ServingMetrics().render()[1].startswith("text/plain")
            True
        """
        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
