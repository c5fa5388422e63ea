"""The loop end to end on real data with drift: detect, retrain, gate, canary, promote -
and a worse challenger blocked; the kill switch; the cooldown. All in the audit log."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

import loopline as ll
from loopline.core import audit
from loopline.core.context import Context
from loopline.loop import controller, records
from loopline.loop.demo import Server
from loopline.loop.policy import LoopPolicy
from loopline.monitoring.alerts import list_alerts
from loopline.monitoring.drift_results import read_drift
from loopline.monitoring.prediction_log import PredictionLogger
from loopline.serving.deploy import get_deployment
from tests.loop import scenario


def _actions(ctx: Context) -> list[str]:
    return [e.action for e in audit.events(ctx.engine)]


def test_drift_retrains_gates_canaries_and_promotes(ctx: Context, tmp_path: Path) -> None:
    state = scenario.setup()
    policy = scenario.policy()
    result = controller.run_once([policy])[0]
    assert result.outcome == "deployed", result.message
    assert result.triggers and "temp" in result.triggers[0]  # the warm spring drifted
    d = get_deployment("flights")
    assert (d.stable_version, d.candidate_version, d.traffic) == (state["v1"], 2, 50.0)
    assert controller.run_once([policy])[0].outcome == "rollout"  # no second retrain meanwhile
    server = Server(ctx.settings.metadata_uri, ctx.settings.artifacts_uri, tmp_path / "s.log")
    try:
        with httpx.Client(timeout=30) as client:
            server.wait_ready(client)
            sent = []
            for row, label in scenario.june_requests(state["june"])[:400]:
                r = client.post(
                    f"{server.url}/v1/models/flights/predict", json={"instances": [row]}
                )
                sent.append({"request_id": r.json()["request_id"], "label": label})
                if len(sent) == 20:  # labels a little later, per batch
                    client.post(f"{server.url}/v1/models/flights/feedback", json={"labels": sent})
                    sent = []
                if get_deployment("flights").candidate_version is None:
                    break
            deadline = time.monotonic() + 30
            while get_deployment("flights").candidate_version is not None:
                assert time.monotonic() < deadline, get_deployment("flights").status
                time.sleep(0.2)
    finally:
        server.stop()
    after = controller.run_once([policy])[0]
    assert after.outcome in ("promoted", "rolled_back"), after.message
    d = get_deployment("flights")
    if after.outcome == "promoted":
        assert d.stable_version == 2
    events = records.events("flights")
    assert [e["kind"] for e in events] == ["trigger", "retrain", "gate", "deploy", after.outcome]
    # every step is linked: alert -> pipeline run -> model version -> verdict -> deployment
    deploy = events[3]
    assert deploy["alert_id"] == events[0]["alert_id"] and deploy["run_id"] == events[1]["run_id"]
    assert deploy["model_version"] == 2 and deploy["verdict_id"] is not None
    assert ll.registry.get("flights", 2).run_id == deploy["run_id"]
    actions = _actions(ctx)
    for action in ("alert.raise", "loop.trigger", "loop.retrain", "loop.gate", "loop.deploy"):
        assert action in actions
    assert f"loop.{after.outcome}" in actions
    assert audit.verify(ctx.engine).ok


def test_a_worse_challenger_is_blocked_and_alerted(embedded_ctx: Context) -> None:
    state = scenario.setup(seed=11, per_month=400)
    before = get_deployment("flights")
    policy = scenario.policy("loopline.loop.flights:train_bad")
    result = controller.run_once([policy])[0]
    assert result.outcome == "blocked", result.message
    assert "gate blocked version 2" in result.message
    after = get_deployment("flights")
    assert (after.revision, after.stable_version, after.candidate_version) == (
        before.revision,
        state["v1"],
        None,
    )  # nothing deployed
    assert [a.rule for a in list_alerts("flights")][:2] == ["challenger blocked", "loop trigger"]
    assert [e["kind"] for e in records.events("flights")] == ["trigger", "retrain", "blocked"]
    # the cooldown keeps it from retraining again in a storm
    again = controller.run_once([policy])[0]
    assert again.outcome == "cooldown" and "cooling down" in again.message
    assert "loop.blocked" in _actions(embedded_ctx)


def test_the_kill_switch_stops_the_loop(embedded_ctx: Context) -> None:
    policy = scenario.policy()
    records.pause(reason="maintenance")
    assert controller.run_once([policy])[0].outcome == "paused"
    records.resume()
    records.pause("flights")
    status = controller.status([policy])[0]
    assert status["paused"] and status["deployment"] is None
    records.resume("flights")
    assert controller.run_once([policy])[0].outcome == "idle"  # not deployed yet
    assert [a for a in _actions(embedded_ctx) if a.startswith("loop.")] == [
        "loop.pause",
        "loop.resume",
        "loop.pause",
        "loop.resume",
    ]


@pytest.mark.parametrize("n", [1])
def test_loop_events_survive_as_ordered_links(embedded_ctx: Context, n: int) -> None:
    event_id = records.record(embedded_ctx, "m", "trigger", "why", alert_id=3, details={"a": n})
    [e] = records.events("m")
    assert (e["id"], e["alert_id"], e["details"]) == (event_id, 3, {"message": "why", "a": 1})


def test_drift_without_newer_data_alerts_instead_of_retraining(embedded_ctx: Context) -> None:
    scenario.setup(seed=5, per_month=300)
    # the policy retrains from flights-train, whose newest version v1 was trained on
    policy = scenario.policy(data="flights-train")
    result = controller.run_once([policy])[0]
    assert result.outcome == "no_new_data", result.message
    assert "already trained on flights-train@1" in result.message
    assert len(ll.registry.versions("flights")) == 1  # nothing retrained
    assert list_alerts("flights")[0].rule == "no newer data"


def test_an_alert_rule_pages_once_per_window_not_once_per_pass(
    embedded_ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each pass over the same, unchanged window raised (and posted) the alert again: under
    `loop run --interval 300`, a page every five minutes for one breach."""
    from loopline.monitoring.performance import WindowMetrics

    scenario.setup(seed=7, per_month=300)
    policy = scenario.policy(alerts=[{"metric": "latency_p99_ms", "op": ">", "threshold": 0.5}])
    window = WindowMetrics(0.0, 10.0, "1", 300, 300, 0, {}, latency_p99_ms=9.0)
    monkeypatch.setattr(controller, "watch", lambda *_: (window, []))
    for _ in range(3):
        assert controller.run_once([policy])[0].outcome == "ok"
    raised = [a for a in list_alerts("flights") if a.rule.startswith("latency_p99_ms")]
    assert len(raised) == 1
    newer = WindowMetrics(10.0, 20.0, "1", 300, 300, 0, {}, latency_p99_ms=9.0)
    monkeypatch.setattr(controller, "watch", lambda *_: (newer, []))
    controller.run_once([policy])
    assert len([a for a in list_alerts("flights") if a.rule.startswith("latency_p99_ms")]) == 2


def _churn_model() -> int:
    """A small churn model trained on tenure and spend, registered and deployed."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    train = pd.DataFrame(
        {"tenure": rng.integers(1, 60, 500).astype(float), "spend": rng.normal(50, 10, 500)}
    )
    ll.datasets.register("churn", train.assign(churned=(train["tenure"] < 12).astype(int)))
    with ll.start_run(experiment="churn") as run:
        df = ll.datasets.get("churn").to_pandas()
        features = df[["tenure", "spend"]]
        model = LogisticRegression().fit(features, df["churned"])
        logged = run.log_model(model, "model", input_example=features.head(3))
    version = ll.registry.register(logged, "churn").version
    ll.deploy("churn", version)
    return version


@pytest.mark.parametrize("share", [None, 0.9])
def test_a_feature_logged_all_null_triggers_the_loop_and_says_why(
    embedded_ctx: Context, share: float | None
) -> None:
    # Every prediction logged with spend=NaN gave outcome "ok", "no trigger", and spend
    # dropped out of the window's drift scores without a word. With a share rule (here one
    # feature of two is far below 90%) a broken feature triggers all the same, as
    # DriftReport.trigger(share=...) does.
    version = _churn_model()
    monitor: dict[str, Any] = {"window_requests": 300, "min_rows": 200}
    if share is not None:
        monitor["drift"] = {"share": share}
    policy = LoopPolicy.model_validate(
        {
            "model": "churn",
            "data": "churn",
            "reference": "churn",
            "monitor": monitor,
            "retrain": {"pipeline": "churn_loop:retrain"},
            "gate": {
                "dataset": "churn",
                "thresholds": {"label": "churned", "metrics": {"accuracy": {"lower": 0.5}}},
            },
        }
    )
    rng = np.random.default_rng(4)

    def log(start: int, n: int) -> None:
        with PredictionLogger(start=False) as logger:
            for i in range(start, start + n):
                row = {"tenure": float(rng.integers(1, 60)), "spend": float("nan")}
                logger.log(f"r{i}", "churn", version, [row], [0], 1.0)

    log(0, 100)  # below min_rows: not enough traffic to judge, as an empty drift window
    early = controller.run_once([policy])[0]
    assert (early.outcome, early.message) == ("ok", "not enough traffic yet")
    log(100, 200)
    result = controller.run_once([policy])[0]
    # It triggered; the serving version already trained on the newest data, so no retrain.
    assert result.outcome == "no_new_data", result.message
    assert result.triggers == ["drift in spend (broken: all null in current)"]
    assert result.window is not None
    assert result.window["drifted"] == ["spend"]
    assert result.window["drift_notes"] == {"spend": "broken: all null in current"}
    assert list(result.window["drift_scores"]) == ["tenure"]
    assert read_drift("churn")[0].drifted == ["spend"]
