"""Live performance per window equals a straightforward computation over the whole log.

``performance`` reads only the newest rows it needs and the labels of their requests, and
scores every window from arrays read once; the reference here reads the whole log and
every label, cuts the newest rows with pandas, and scores each window with pandas and
scikit-learn, one group at a time.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, precision_score, recall_score, roc_auc_score

import loopline as ll
from loopline.core.context import Context
from loopline.monitoring.classes import class_name
from loopline.monitoring.label_join import join_labels, last_loggings
from loopline.monitoring.performance import assign_windows, throughput
from loopline.monitoring.prediction_log import PredictionLogger

CLASSES = ["bird", "cat", "dog"]


def _fill(ctx: Context, kind: str, rng: np.random.Generator) -> None:
    """600 requests of two versions in 5 files; every 10th request has 3 rows, 2 ids are
    logged twice; labels for most rows (by row, for the whole request, past the last row,
    relabelled), business events for requests and without one."""

    def output(i: int) -> Any:
        if kind == "binary":
            p = float(rng.random())
            return {"prediction": int(p >= 0.5), "score": round(p, 2)}
        if kind == "multiclass":
            return str(rng.choice(CLASSES))
        return float(rng.normal(10, 2))

    with PredictionLogger(ctx, start=False) as logger:
        for i in range(600):
            n = 3 if i % 10 == 0 else 1
            latency = float(rng.gamma(2.0, 2.0))
            outs = [output(i) for _ in range(n)]
            version = "2" if i % 7 == 0 else "1"
            logger.log(f"r{i:04d}", "m", version, [{"x": 1.0}] * n, outs, latency)
            if i in (130, 415):  # a client retried: logged again, later
                logger.log(f"r{i - 3:04d}", "m", "1", [{"x": 2.0}], [output(i)], latency)
            if i % 120 == 119:
                logger.flush()  # one file each
    ids, labels, rows = [], [], []
    for i in range(600):
        for row in range(3 if i % 10 == 0 else 1):
            if rng.random() < 0.75 and i != 20:  # r0020's rows: only a label for all
                ids.append(f"r{i:04d}")
                rows.append(row if i % 10 == 0 else None)
                if kind == "regression":
                    labels.append("n/a" if rng.random() < 0.03 else float(rng.normal(10, 2)))
                elif kind == "binary":
                    labels.append(int(rng.integers(0, 2)))
                else:
                    labels.append(str(rng.choice(CLASSES)))
    # a label that is no number ("n/a", counted unscored) is refused for a numeric model
    owner = None if kind == "regression" else "m"
    ll.monitor.log_labels(ids, labels, model=owner, rows=rows)
    # relabelled (the newest wins), a row past the last, a label for the whole of 3 rows
    ll.monitor.log_labels(["r0001", "r0002"], labels[:2], model=owner)
    ll.monitor.log_labels(["r0010", "r0020"], labels[:2], model=owner, rows=[5, None])
    for i in range(0, 600, 9):
        ll.monitor.log_business("cost", float(i % 5), request_id=f"r{i:04d}", model="m")
    ll.monitor.log_business("refund", 3.0, model="m")


def _expected(window: Any, last: int | None, by_version: bool, kind: str) -> list[dict[str, Any]]:
    frame = ll.monitor.read_predictions("m")  # the whole log
    if last is not None:
        frame = frame.tail(last).reset_index(drop=True)
    frame = last_loggings(frame)
    frame["_window"] = assign_windows(frame, window)
    frame = join_labels(frame, ll.monitor.read_labels("m"))  # every label
    business = ll.monitor.read_business()
    keys = ["_window", "_version"] if by_version else ["_window"]
    out = []
    for key, g in frame.groupby(keys, sort=True):
        parts = key if isinstance(key, tuple) else (key,)
        req = g.drop_duplicates("_request_id")
        lab = g[g["label"].notna()]
        unscored = 0
        if kind == "regression":
            ok = lab["label_num"].notna() & pd.to_numeric(lab["_prediction"]).notna()
            unscored = int((~ok).sum())
            lab = lab[ok]
        w_end = float(g["_ts"].max()) if isinstance(window, int) else float(parts[0]) + 3600
        events = business[business["request_id"].isin(set(req["_request_id"]))]
        if not by_version:
            inside = business["ts"].between(float(g["_ts"].min()), w_end)
            events = pd.concat([events, business[business["request_id"].isna() & inside]])
        out.append(
            {
                "start": float(parts[0]),
                "end": w_end,
                "version": str(parts[1]) if by_version else "*",
                "requests": len(req),
                "rows": len(g),
                "labelled": len(lab),
                "metrics": _metrics(lab, kind),
                "latency_p50_ms": float(np.percentile(req["_latency_ms"], 50)),
                "latency_p99_ms": float(np.percentile(req["_latency_ms"], 99)),
                "throughput_rps": throughput(req["_ts"]),
                "business": {e: float(v.sum()) for e, v in events.groupby("event")["value"]},
                "no_row_labels": int(g["_no_row_label"].sum()),
                "out_of_range_labels": int(g["_out_of_range_labels"].sum()),
                "unscored_rows": unscored,
                "relogged_requests": int(g["_relogged"].sum()),
            }
        )
    return out


def _metrics(lab: pd.DataFrame, kind: str) -> dict[str, float]:
    if lab.empty:
        return {}
    if kind == "regression":
        err = lab["_prediction"].astype(float) - lab["label_num"]
        return {"rmse": math.sqrt(float(np.mean(err**2))), "mae": float(np.mean(np.abs(err)))}
    truth = np.array([class_name(v) for v in lab["label"]])
    pred = np.array([class_name(v) for v in lab["_prediction"]])
    if kind == "multiclass":
        found = {
            "precision": precision_score(truth, pred, average="macro", zero_division=np.nan),
            "recall": recall_score(truth, pred, average="macro", zero_division=np.nan),
        }
    else:
        found = {
            "precision": precision_score(truth, pred, pos_label="1", zero_division=np.nan),
            "recall": recall_score(truth, pred, pos_label="1", zero_division=np.nan),
        }
        if len(set(truth)) == 2:
            found["auc"] = roc_auc_score(truth == "1", lab["_score"])
    defined = {k: float(v) for k, v in found.items() if not math.isnan(float(v))}
    return {"accuracy": float(accuracy_score(truth, pred))} | defined


@pytest.mark.parametrize("kind", ["binary", "multiclass", "regression"])
def test_windows_equal_a_straightforward_computation(embedded_ctx: Context, kind: str) -> None:
    _fill(embedded_ctx, kind, np.random.default_rng(7))
    cases = [(100, None, True), (100, 250, True), (64, 333, False), ("hour", 500, True)]
    for window, last, by_version in cases:
        got = [
            w.to_dict()
            for w in ll.monitor.performance("m", window=window, last=last, by_version=by_version)
        ]
        want = _expected(window, last, by_version, kind)
        assert len(got) == len(want) > 0, (window, last)
        for g, w in zip(got, want, strict=True):
            metrics = g.pop("metrics")
            for name in ("drifted", "drift_scores", "drift_notes"):
                assert not g.pop(name)
            wanted_metrics = w.pop("metrics")
            assert g == w, (window, last, by_version)
            assert metrics.keys() == wanted_metrics.keys()
            for name, value in metrics.items():  # AUC: equal up to float rounding
                assert value == pytest.approx(wanted_metrics[name], rel=1e-12), name
    # the cases hold what they are meant to test
    windows = ll.monitor.performance("m", window=100)
    assert sum(w.relogged_requests for w in windows) == 2
    assert sum(w.out_of_range_labels for w in windows) == 1
    assert sum(w.no_row_labels for w in windows) == 1
    assert any(w.business for w in windows)
    if kind == "regression":
        assert sum(w.unscored_rows for w in windows) > 0


@pytest.mark.parametrize("last", [1, 119, 120, 121, 333, 599, 666, 5000])
def test_the_newest_rows_are_the_tail_of_the_whole_log(embedded_ctx: Context, last: int) -> None:
    # 666 rows in 6 files, the last of 66 rows; the newest ``last`` read from the files
    # that hold them are the whole log's tail, with the same columns
    with PredictionLogger(embedded_ctx, start=False) as logger:
        for i in range(666):
            row = {"x": float(i)} if i < 300 else {"x": float(i), "new": "b"}
            logger.log(f"r{i}", "m", "1", [row], [i % 2], 1.0)
            if i % 120 == 119:
                logger.flush()
    whole = ll.monitor.read_predictions("m")
    got = ll.monitor.read_predictions("m", last=last)
    pd.testing.assert_frame_equal(got, whole.tail(last).reset_index(drop=True))
    start, end = float(whole["_ts"].iloc[100]), float(whole["_ts"].iloc[500])
    between = ll.monitor.read_predictions("m", start=start, end=end)
    got = ll.monitor.read_predictions("m", start=start, end=end, last=last)
    pd.testing.assert_frame_equal(got, between.tail(last).reset_index(drop=True))


def test_the_labels_of_some_requests_are_those_of_all_labels(embedded_ctx: Context) -> None:
    with PredictionLogger(embedded_ctx, start=False) as logger:
        for i in range(50):
            logger.log(f"r{i}", "m", "1", [{"x": 1.0}, {"x": 2.0}], [0, 1], 1.0)
    ll.monitor.log_labels([f"r{i}" for i in range(50)], [i % 2 for i in range(50)], rows="all")
    ll.monitor.log_labels(["r3", "r3", "r40"], [1, 0, 1], model="m", rows=[0, 1, None])
    ll.monitor.log_labels(["r3", "r7"], ["x", "y"], model="other")
    ll.monitor.log_labels(["r3"], [0], model="m", rows=[0])  # newer: wins
    wanted = ["r3", "r40", "r7", "r3", "nope"]
    every = ll.monitor.read_labels("m")
    some = ll.monitor.read_labels("m", request_ids=wanted)
    expected = every[every["request_id"].isin(wanted)]
    key = ["request_id", "row"]
    pd.testing.assert_frame_equal(
        some.sort_values(key).reset_index(drop=True),
        expected.sort_values(key).reset_index(drop=True),
    )
    assert some.set_index(key).loc[("r3", 0), "label"] == "0"
    assert ll.monitor.read_labels("m", request_ids=[]).empty


@pytest.mark.parametrize("seed", range(20), ids=lambda s: f"seed{s}")
def test_each_window_finds_the_events_of_its_requests_and_its_first_rows(seed: int) -> None:
    # A request id may be in two windows (logged twice at one instant by two versions):
    # an event for it counts in both, as the per-window isin did.
    from loopline.monitoring.performance import _Groups

    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    ids = [f"r{i}" for i in range(15)]
    frame = pd.DataFrame(
        {
            "_window": rng.integers(0, 4, n).astype(float),
            "_version": rng.choice(["1", "2"], n),
            "_request_id": rng.choice(ids, n),
        }
    )
    groups = _Groups.of(frame, ["_window", "_version"])
    events = pd.Series(rng.choice([*ids, "other", None], int(rng.integers(0, 30))), dtype=object)
    got = {g: at.tolist() for g, at in groups.rows_of(events).items()}
    want = {}
    for g, rows in enumerate(groups.rows):
        mine = set(frame["_request_id"].iloc[rows])
        found = [i for i, rid in enumerate(events) if rid in mine]
        if found:
            want[g] = found
    assert got == want
    first = ~frame.duplicated(["_window", "_version", "_request_id"]).to_numpy()
    assert groups.first.tolist() == first.tolist()
