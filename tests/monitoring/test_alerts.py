"""Alerts: rules per window, a webhook on a local HTTP server (with retries), the audit log."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from loopline.core import audit
from loopline.core.context import Context
from loopline.errors import InvalidInput
from loopline.monitoring.alerts import AlertRule, check_rules, list_alerts, raise_alert
from loopline.monitoring.performance import WindowMetrics


class Hook:
    """A webhook receiver on 127.0.0.1 that fails the first ``fail`` requests with a 503."""

    def __init__(self, fail: int = 0) -> None:
        self.received: list[dict[str, Any]] = []
        self.fail = fail
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                if hook.fail > 0:
                    hook.fail -= 1
                    self.send_response(503)
                else:
                    hook.received.append(json.loads(body))
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook(fail=2)
    yield h
    h.close()


def test_rules_fire_per_window() -> None:
    good = WindowMetrics(0, 1, "1", 100, 100, 100, {"auc": 0.8}, latency_p99_ms=12.0)
    bad = WindowMetrics(1, 2, "1", 100, 100, 100, {"auc": 0.55}, latency_p99_ms=80.0)
    bad.drifted, bad.drift_scores = ["temp"], {"temp": 0.9, "dist": 0.01}
    rules = [
        AlertRule(metric="auc", op="<", threshold=0.6),
        AlertRule(metric="latency_p99_ms", op=">", threshold=50),
        AlertRule(metric="drift_share", op=">", threshold=0.3),
        AlertRule(metric="rmse", op=">", threshold=1),  # absent: never fires
    ]
    breaches = check_rules(rules, [good, bad])
    assert [(b.rule.label, b.window.start, b.value) for b in breaches] == [
        ("auc < 0.6", 1, 0.55),
        ("latency_p99_ms > 50", 1, 80.0),
        ("drift_share > 0.3", 1, 0.5),
    ]


def test_an_alert_is_stored_audited_and_posted_with_retries(ctx: Context, hook: Hook) -> None:
    alert = raise_alert(
        "flights", "auc < 0.6", "live AUC 0.55", details={"auc": 0.55}, webhook=hook.url
    )
    assert alert.delivered  # two 503s, then a 200
    assert hook.received == [alert.to_dict()]
    assert hook.received[0]["details"] == {"auc": 0.55}
    stored = list_alerts("flights")
    assert [(a.id, a.delivered) for a in stored] == [(alert.id, True)]
    raised = [e for e in audit.events(ctx.engine) if e.action == "alert.raise"]
    assert raised[-1].after["alert_id"] == alert.id and raised[-1].reason == "live AUC 0.55"


def test_an_unreachable_webhook_is_recorded_as_undelivered(ctx: Context) -> None:
    alert = raise_alert(
        "flights", "p99", "slow", webhook="http://127.0.0.1:9/none", timeout=0.5, retries=1
    )
    assert not alert.delivered
    assert not list_alerts("flights")[0].delivered


def test_the_grafana_dashboard_reads_only_metrics_the_server_exports() -> None:
    import re
    from pathlib import Path

    from loopline.serving.prom import ServingMetrics

    path = Path(__file__).parents[2] / "deploy" / "grafana" / "loopline.json"
    dashboard = json.loads(path.read_text())
    m = ServingMetrics()
    m.request("flights", "1", 200, 0.01)
    m.failure("flights", "1", "error")
    m.shadowed("flights", "2", True)
    exported = set(re.findall(r"^(loopline_\w+?)(?:\{| )", m.render()[0].decode(), re.M))
    used = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"loopline_\w+", target["expr"])
    }
    assert used and used <= exported, used - exported
    assert {"loopline_predictions_total", "loopline_prediction_latency_seconds_bucket"} <= used


@pytest.mark.parametrize(
    ("rule", "field", "words"),
    [
        ({"metric": "acuracy", "threshold": 0.9}, "metric", "unknown metric 'acuracy'"),
        ({"metric": "refund", "threshold": 1}, "metric", "business.<event>"),
        ({"metric": "business.", "threshold": 1}, "metric", "unknown metric"),
        ({"metric": "auc", "threshold": float("nan")}, "threshold", "'auc' is nan"),
        ({"metric": "auc", "threshold": float("inf")}, "threshold", "finite"),
    ],
    ids=["typo", "bare-business-event", "empty-business-event", "nan", "inf"],
)
def test_a_rule_that_could_never_fire_is_refused(
    rule: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(InvalidInput, match=re.escape(words)) as err:
        AlertRule(**rule)
    assert err.value.field == field
    assert "accuracy, precision" in str(err.value) or field == "threshold"


def test_a_rule_on_a_business_event_reads_its_sum() -> None:
    w = WindowMetrics(0, 1, "1", 10, 10, 0, business={"refund": 30.0})
    [breach] = check_rules([AlertRule(metric="business.refund", op=">", threshold=20)], [w])
    assert breach.value == 30.0


@pytest.mark.parametrize(
    "url", ["hooks.example.com/loopline", "ftp://hooks.example.com/x", "http:/x", "http://"]
)
def test_a_webhook_that_is_not_an_http_url_is_refused_before_the_alert(
    ctx: Context, url: str
) -> None:
    with pytest.raises(InvalidInput, match="is not an http") as err:
        raise_alert("flights", "p99", "slow", webhook=url)
    assert err.value.field == "webhook"
    assert list_alerts("flights") == []


@pytest.mark.parametrize(
    ("rule", "field", "words"),
    [
        ({"metric": "auc", "threshold": "0.9"}, "threshold", "valid number"),
        ({"metric": "auc", "threshold": True}, "threshold", "valid number"),
        ({"metric": "business.refund\x00", "threshold": 1}, "metric", "control character"),
        ({"metric": "business.re\x1b[2Jfund", "threshold": 1}, "metric", "'\\x1b'"),
        ({"metric": "auc", "threshold": 0.6, "severity": "urgent"}, "severity", "'info'"),
        ({"metric": "auc", "threshold": 0.6, "name": "auc\x00"}, "name", "control character"),
    ],
    ids=["text-threshold", "bool-threshold", "nul-metric", "escape-metric", "severity", "name"],
)
def test_a_rule_with_a_bad_field_is_refused_naming_it(
    rule: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(InvalidInput, match=re.escape(words)) as err:
        AlertRule(**rule)
    assert err.value.field == field


def test_a_rules_threshold_is_any_real_number() -> None:
    import numpy as np

    assert AlertRule(metric="requests", op=">", threshold=50).threshold == 50.0
    assert AlertRule(metric="auc", threshold=np.float64(0.6)).threshold == 0.6


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"severity": "urgent"}, "severity"),
        ({"webhook": "not a url"}, "webhook"),
        ({"webhook": "file:///etc/passwd"}, "webhook"),
        ({"webhook": "https://"}, "webhook"),
        ({"webhook": "http://h:99999/x"}, "webhook"),
        ({"webhook": ""}, "webhook"),
        ({"webhook": "http://127.0.0.1:9/x", "retries": -1}, "retries"),
        ({"webhook": "http://127.0.0.1:9/x", "retries": True}, "retries"),
        ({"webhook": "http://127.0.0.1:9/x", "retries": 1.0}, "retries"),
        ({"webhook": "http://127.0.0.1:9/x", "retries": 11}, "retries"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": float("nan")}, "timeout"),
        ({"timeout": "5"}, "timeout"),
        ({"model": "a/../b"}, "model"),
        ({"model": ""}, "model"),
        ({"rule": ""}, "rule"),
        ({"rule": "r" * 201}, "rule"),
        ({"rule": "auc\x1b[31m"}, "rule"),
        ({"message": None}, "message"),
        ({"message": "a\x00b"}, "message"),
        ({"details": [1]}, "details"),
        ({"details": {"x": object()}}, "details"),
    ],
    ids=[
        "severity",
        "webhook-words",
        "webhook-file",
        "webhook-no-host",
        "webhook-bad-port",
        "webhook-empty",
        "retries-negative",
        "retries-bool",
        "retries-float",
        "retries-many",
        "timeout-zero",
        "timeout-nan",
        "timeout-text",
        "model-dots",
        "model-empty",
        "rule-empty",
        "rule-long",
        "rule-escape",
        "message-none",
        "message-nul",
        "details-list",
        "details-unwritable",
    ],
)
def test_a_bad_alert_is_refused_naming_the_argument_before_anything_is_stored(
    ctx: Context, kwargs: dict[str, Any], field: str
) -> None:
    # severity 'urgent' was stored, a webhook that is no http(s) URL was tried with
    # retries (1.5 s), and retries=-1 never posted at all.
    call: dict[str, Any] = {"model": "m1", "rule": "r", "message": "m", **kwargs}
    with pytest.raises(InvalidInput) as err:
        raise_alert(call.pop("model"), call.pop("rule"), call.pop("message"), **call)
    assert err.value.field == field, err.value
    assert list_alerts() == []
    assert not [e for e in audit.events(ctx.engine) if e.action == "alert.raise"]


def test_an_alert_for_a_model_not_registered_is_stored(ctx: Context) -> None:
    # A model served elsewhere logs its predictions here by name, unregistered: its alerts
    # are stored too, and an alert may come before any prediction.
    alert = raise_alert("served-elsewhere", "r", "line 1\nline 2", severity="info", retries=0)
    assert [(a.id, a.model, a.severity) for a in list_alerts()] == [
        (alert.id, "served-elsewhere", "info")
    ]
