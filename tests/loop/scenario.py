"""A small closed-loop scenario on the real NYC flights data, shared by the loop tests.

Champion: trained on Jan-Feb. Traffic: May flights (warmer, more delays) logged through
the prediction log with the champion's answers, labels delivered late and shuffled. The
newest data version covers Jan-May.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

import loopline as ll
from loopline.loop import flights
from loopline.loop.demo import gate_thresholds
from loopline.loop.policy import LoopPolicy
from loopline.monitoring.prediction_log import PredictionLogger

MODEL = "flights"


def policy(pipeline: str = "loopline.loop.flights:train", **extra: Any) -> LoopPolicy:
    data = {
        "model": MODEL,
        "data": "flights",
        "reference": "flights-train",
        "monitor": {"window_requests": 400, "min_rows": 200, "min_labels": 100},
        "retrain": {"pipeline": pipeline},
        "gate": {"dataset": "flights-holdout", "thresholds": gate_thresholds()},
        "rollout": {
            "strategy": "canary",
            "options": {
                "steps": [50, 100],
                "window_requests": 40,
                "min_requests": 20,
                "min_labels": 10,
                "max_accuracy_drop": 0.15,
                "shift_test": "ks",
                "max_ks": 0.6,
                "max_p99_ratio": 3.0,
                "p99_slack_ms": 100.0,
            },
        },
        "cooldown_seconds": 3600,
        **extra,
    }
    return LoopPolicy.model_validate(data)


def setup(seed: int = 7, per_month: int = 500) -> dict[str, Any]:
    """Champion v1 deployed; May traffic logged and labelled; data v2 registered."""
    raw = flights.load_flights(range(1, 7), per_month=per_month, seed=seed)
    ll.datasets.register("flights", raw[raw["month"] <= 2].reset_index(drop=True))
    flights.register_weather_view(flights.load_weather())
    run = flights.train(ll.datasets.get("flights"), n_trials=1)
    mv = ll.registry.register(run, MODEL)
    ll.gates.evaluate(MODEL, mv.version, ll.datasets.get("flights-holdout").ref, gate_thresholds())
    ll.deploy(MODEL, mv.version)
    may = flights.build_features(raw[raw["month"] == 5].reset_index(drop=True))
    model = ll.registry.load(f"models:/{MODEL}/{mv.version}")
    cols = list(flights.FEATURES)
    preds = model.predict(may[cols])
    rows = may[cols].to_dict("records")
    with PredictionLogger(start=False) as logger:
        for i, row in enumerate(rows):
            logger.log(f"may-{i}", MODEL, mv.version, [row], [int(preds[i])], 2.0)
    order = np.random.default_rng(seed).permutation(len(rows))
    ids = [f"may-{i}" for i in order]
    truth = may[flights.LABEL].to_numpy()[order].tolist()
    half = len(ids) // 2
    ll.monitor.log_labels(ids[half:], truth[half:])  # the later half arrives first
    ll.monitor.log_labels(ids[:half], truth[:half])
    ll.datasets.register("flights", raw[raw["month"] <= 5].reset_index(drop=True))
    june = flights.build_features(raw[raw["month"] == 6].reset_index(drop=True))
    return {"v1": mv.version, "june": june}


def june_requests(june: pd.DataFrame) -> list[tuple[dict[str, Any], int]]:
    cols = list(flights.FEATURES)
    return list(zip(june[cols].to_dict("records"), june[flights.LABEL].tolist(), strict=True))
