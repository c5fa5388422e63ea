"""A realistic store for the UI tests, filled through the SDK like a user would.

* datasets ``churn-data`` @1 and @2 (the second drifted: ``tenure`` shifted, ``plan`` mix
  changed) and ``churn-holdout`` @1;
* experiment ``churn``: six runs (three ``logreg``, three ``forest``) with params, tags and a
  30-step ``loss``/``auc`` history, each reading a version of ``churn-data``;
* model ``churn``: v1 and v2 logged with scikit-learn and registered from their runs,
  ``@champion`` -> v1, ``@challenger`` -> v2, v2 gated on ``churn-holdout@1``, deployed as a
  10 % canary of v2 over v1;
* model ``fraud``: v1 deployed, v2 deployed, then rolled back;
* a run and an experiment whose names are HTML (``<script>...``), to check escaping;
* experiment ``edges``: run ``diverged``, whose ``loss`` went to inf and NaN on the way,
  whose ``seen`` metric was logged at steps up to 2**63 - 1 and whose ``huge`` one holds
  finite values up to 1.7e308; run ``repeats``, whose metrics repeat x values (30 points
  in 3 ms without steps, three values per step); and a run whose name, tag and
  param are each one long word (:data:`LONG_NAME`, :data:`LONG_TEXT`), as is an alert's
  message.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

import loopline as ll
from loopline.core.context import Context

FEATURES = ["tenure", "spend", "plan"]
XSS_NAME = "<script>alert('run')</script>"
XSS_EXPERIMENT = "<script>alert('exp')</script>"
XSS_PARAM = "<img src=x onerror=alert(1)>"
#: A value without a space to break it at (a path, a hash, a serialized object).
LONG_TEXT = "s3://bucket/" + "x" * 3000
LONG_NAME = "run-" + "y" * 246  # MAX_RUN_NAME_LENGTH
#: The stage modules the deployment and gate parts of the store need.
SERVING = "loopline.serving.deploy"
DELIVERY = "loopline.delivery.gates"
MONITORING = "loopline.monitoring.api"
LIVE = "loopline.monitoring.performance"
ALERTS = "loopline.monitoring.alerts"


def has_module(name: str) -> bool:
    """Whether a stage module is installed (other engineers' stages may not be yet)."""
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


@dataclass
class Filled:
    """What :func:`fill` made, for the tests to look for."""

    run_ids: dict[str, str] = field(default_factory=dict)
    xss_run_id: str = ""
    diverged_run_id: str = ""
    repeats_run_id: str = ""
    long_run_id: str = ""
    model_versions: dict[str, int] = field(default_factory=dict)


def churn_frame(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    """Customers: tenure (months), monthly spend, plan (0 basic / 1 plus / 2 pro), churned."""
    rng = np.random.default_rng(seed)
    tenure = rng.gamma(2.0 + shift * 3, 6.0, size=n)
    spend = rng.normal(40 + 10 * shift, 12, size=n)
    plan = rng.choice([0, 1, 2], size=n, p=[0.6 - 0.3 * shift, 0.3, 0.1 + 0.3 * shift])
    logit = 1.2 - 0.08 * tenure + 0.02 * spend - 0.4 * plan + rng.normal(0, 0.5, size=n)
    return pd.DataFrame(
        {"tenure": tenure, "spend": spend, "plan": plan, "label": (logit > 0).astype(np.int64)}
    )


def _model(frame: pd.DataFrame, kind: str) -> object:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    if kind == "forest":
        return RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0).fit(
            frame[FEATURES], frame["label"]
        )
    return LogisticRegression(max_iter=500).fit(frame[FEATURES], frame["label"])


def fill(ctx: Context) -> Filled:
    """Fill ``ctx``'s store (the current context) and return what was made."""
    out = Filled()
    ll.datasets.register("churn-data", churn_frame(600, seed=0))
    ll.datasets.register("churn-data", churn_frame(600, seed=1, shift=0.8))
    ll.datasets.register("churn-holdout", churn_frame(300, seed=2))
    grid = [("logreg", 0.1), ("logreg", 0.03), ("logreg", 0.01), ("forest", 0.1),
            ("forest", 0.3), ("forest", 1.0)]  # fmt: skip
    for i, (kind, lr) in enumerate(grid):
        with ll.start_run(experiment="churn", name=f"{kind}-lr{lr}", tags={"team": "risk"}) as run:
            ll.datasets.get("churn-data", 1 + i % 2)
            run.log_params({"model": kind, "lr": lr, "depth": 4 if kind == "forest" else "none"})
            final = 0.70 + 0.03 * i
            for step in range(30):
                decay = math.exp(-lr * step * (1 + i / 5))
                run.log_metrics({"loss": 0.2 + 0.5 * decay, "auc": final - 0.2 * decay}, step=step)
        out.run_ids[run.name or run.id] = run.id
    with ll.start_run(experiment=XSS_EXPERIMENT, name=XSS_NAME) as run:
        run.log_param("note", XSS_PARAM)
        run.set_tag("html", "<b>bold</b>")
        run.log_metric("score", 1.0)
    out.xss_run_id = run.id
    with ll.start_run(experiment="edges", name="diverged") as run:
        for step, loss in enumerate([1.0, 0.5, math.inf, math.nan, 0.25, -math.inf]):
            run.log_metric("loss", loss, step=step)
        for step in (0, 2**40, 2**62, 2**63 - 1):
            run.log_metric("seen", float(step % 7), step=step)
        for step, value in enumerate([1e308, -1.5e308, 1.7e308, 3.0]):  # finite, all of them
            run.log_metric("huge", value, step=step)
    out.diverged_run_id = run.id
    with ll.start_run(experiment="edges", name="repeats") as run:
        # Ten points per millisecond, without steps, a spike among them; and three values
        # at each of five steps: points that share an x value. Each value differs: a point
        # logged again with the same step, time and value is stored once (as in MLflow).
        start = 1_700_000_000_000
        for i in range(30):
            value = 50.0 if i == 10 else 1.0 + i / 100
            run.log_metric("burst", value, timestamp=start + i // 10)
        for step in range(5):
            for k in range(3):
                run.log_metric("per_step", float(10 * step + k), step=step)
    out.repeats_run_id = run.id
    with ll.start_run(experiment="edges", name=LONG_NAME, tags={"data": LONG_TEXT}) as run:
        run.log_param("source", LONG_TEXT)
    out.long_run_id = run.id

    for version_data, kind in ((1, "logreg"), (2, "forest")):
        frame = ll.datasets.get("churn-data", version_data).to_pandas()
        with ll.start_run(experiment="churn", name=f"train-{kind}") as run:
            ll.datasets.get("churn-data", version_data)
            run.log_params({"model": kind})
            run.log_model(_model(frame, kind), "model", input_example=frame[FEATURES].head(5))
        out.run_ids[f"train-{kind}"] = run.id
        out.model_versions[kind] = ll.registry.register(run, "churn").version
    ll.registry.set_alias("churn", "champion", out.model_versions["logreg"], reason="first model")
    ll.registry.set_alias("churn", "challenger", out.model_versions["forest"], reason="candidate")
    for kind in ("logreg", "forest"):  # deployable: their files are in the artifact store
        ll.registry.register(out.run_ids[f"train-{kind}"], "fraud")
    if has_module(DELIVERY):
        ll.gates.evaluate(
            "churn",
            out.model_versions["forest"],
            "churn-holdout@1",
            {"label": "label", "metrics": {"auc": {"lower": 0.5}}},
        )
    if has_module(SERVING):
        from loopline.serving.deploy import deploy, rollback

        deploy("churn", out.model_versions["logreg"])
        deploy("churn", out.model_versions["forest"], strategy="canary", steps=[10, 50, 100])
        deploy("fraud", 1)
        deploy("fraud", 2, reason="new features")
        rollback("fraud", reason="p99 latency regression")
    if has_module(LIVE) and has_module(ALERTS):
        _serve_traffic(ctx)
    return out


def _serve_traffic(ctx: Context) -> None:
    """What the model servers would log for ``churn``: 400 answered requests (v1 and the
    10 % canary v2), their labels arriving later, and an alert on live accuracy."""
    from loopline.monitoring.alerts import raise_alert
    from loopline.monitoring.labels import log_labels
    from loopline.monitoring.prediction_log import PredictionLogger

    rng = np.random.default_rng(7)
    frame = churn_frame(400, seed=3)
    ids, truth = [], []
    with PredictionLogger(ctx, start=False) as logger:
        for i, row in enumerate(frame.itertuples(index=False)):
            version = 2 if i % 10 == 0 else 1
            right = rng.random() < (0.9 if version == 1 else 0.8)
            predicted = int(row.label) if right else 1 - int(row.label)
            inputs = [{"tenure": row.tenure, "spend": row.spend, "plan": int(row.plan)}]
            request_id = f"req-{i}"
            logger.log(request_id, "churn", version, inputs, [predicted], rng.gamma(2.0, 2.0))
            ids.append(request_id)
            truth.append(int(row.label))
        logger.flush()
    log_labels(ids, truth, model="churn")
    raise_alert(
        "churn", "accuracy < 0.9", "live accuracy 0.88 over 400 labelled requests",
        details={"value": 0.88}, severity="warning", ctx=ctx,
    )  # fmt: skip
    raise_alert("churn", "payload", LONG_TEXT, severity="info", ctx=ctx)
