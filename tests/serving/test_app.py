"""The model server app in-process: how it sets the interpreter up for the request path."""

from __future__ import annotations

import asyncio
import gc
import gzip
import sys
import threading
import time
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from loopline.core.context import Context
from loopline.serving.app import GC_THRESHOLDS, ModelServer
from loopline.serving.canary import WindowStats
from loopline.serving.deploy import deploy, get_deployment, history, live_window
from loopline.serving.predict_endpoint import SHADOW_BACKLOG
from loopline.serving.serve_settings import ServeSettings
from loopline.serving.server_base import error_body
from tests.serving.helpers import corrupt, good_model, register, row, toy_data, weak_model


async def _post(
    app: ModelServer,
    path: str,
    payload: Any,
    headers: list[tuple[bytes, bytes]] | None = None,
    *,
    as_json: bool = True,
) -> tuple[int, dict[str, Any]]:
    """One POST through the ASGI callable, as uvicorn would make it (bytes are sent as is),
    with ``Content-Type: application/json`` unless ``headers`` name one or not ``as_json``."""
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    headers = list(headers or [])
    if as_json and not any(k == b"content-type" for k, _ in headers):
        headers.append((b"content-type", b"application/json"))
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": [(b"content-length", str(len(body)).encode()), *(headers or [])],
    }
    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    answer = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, orjson.loads(answer)


def test_startup_shortens_the_switch_interval_and_shutdown_restores_it(
    embedded_ctx: Context,
) -> None:
    data = toy_data()
    version = register(good_model(data), "churn", data)
    deploy("churn", version)
    before = (sys.getswitchinterval(), gc.get_threshold())
    server = ModelServer(embedded_ctx, ServeSettings(switch_interval_ms=0.25))
    try:
        server.startup()
        assert sys.getswitchinterval() == pytest.approx(0.00025)
        assert gc.get_threshold() == GC_THRESHOLDS
        status, answer = asyncio.run(
            _post(server, "/v1/models/churn/predict", {"instances": [row()]})
        )
        assert status == 200, answer
        assert answer["model_version"] == str(version) and len(answer["predictions"]) == 1
        status, error = asyncio.run(
            _post(server, "/v1/models/churn/predict", {"instances": [{"a": 1.0}]})
        )
        assert status == 422 and error["error"]["field"] == "b"
    finally:
        server.shutdown()
        gc.unfreeze()  # startup froze this test process's objects; give them back
    assert (sys.getswitchinterval(), gc.get_threshold()) == before
    assert server._predlog is not None and server._predlog.written_rows == 1


@pytest.mark.parametrize("value", ["0", "-1", "500"], ids=["zero", "negative", "too-long"])
def test_a_bad_switch_interval_is_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("LOOPLINE_SERVE_SWITCH_INTERVAL_MS", value)
    with pytest.raises(ValidationError, match="switch_interval_ms"):
        ServeSettings()


def _served(ctx: Context) -> ModelServer:
    """A server with its routes loaded, without the startup's interpreter tuning."""
    server = ModelServer(ctx, ServeSettings(log_predictions=False))
    server.control.refresh()
    return server


def _good_then_weak(ctx: Context, strategy: str, **policy: Any) -> tuple[ModelServer, int, int]:
    """``churn`` version 1 (good) served and version 2 (weak) deployed beside it with
    ``strategy``; the server's routes loaded. Returns the server and both versions."""
    data = toy_data()
    v1 = register(good_model(data), "churn", data)
    v2 = register(weak_model(data), "churn", data)
    deploy("churn", v1)
    deploy("churn", v2, strategy=strategy, **policy)
    return _served(ctx), v1, v2


INVALID = [
    {"instances": [{**row(), "a": "oops"}]},
    {"instances": [{"a": 0.1, "b": 0.2}]},
    {"instances": [[0.1, 0.2]]},
    {"instances": [{**row(), "b": None}]},
]


def test_a_canary_that_gets_only_bad_requests_stays_in_place(embedded_ctx: Context) -> None:
    server, v1, v2 = _good_then_weak(
        embedded_ctx, "canary", steps=[50, 100], window_requests=20, min_requests=5
    )
    for i in range(80):  # keyless: half of them pick the candidate
        status, answer = asyncio.run(
            _post(server, "/v1/models/churn/predict", INVALID[i % len(INVALID)])
        )
        assert status == 422, answer
    server.control.refresh()  # flushes the counters and judges the step
    d = get_deployment("churn")
    assert (d.stable_version, d.candidate_version) == (v1, v2)
    assert [e.action for e in history("churn")] == ["deploy.direct", "deploy.canary"]
    window = live_window("churn")
    assert window is not None
    assert window["candidate"]["errors"] == window["stable"]["errors"] == 0
    assert window["candidate"]["requests"] == window["stable"]["requests"] == 0
    assert "loopline_model_failures_total{" not in server.metrics.render()[0].decode()


def test_ab_counters_leave_out_bad_requests(embedded_ctx: Context) -> None:
    server, v1, v2 = _good_then_weak(embedded_ctx, "ab", split=50)
    sides = set()
    for i in range(40):
        bad = {**INVALID[i % len(INVALID)], "key": f"user-{i}"}
        assert asyncio.run(_post(server, "/v1/models/churn/predict", bad))[0] == 422
        good = {"instances": [row()], "key": f"user-{i}"}
        status, answer = asyncio.run(_post(server, "/v1/models/churn/predict", good))
        assert status == 200, answer
        sides.add(answer["model_version"])
    assert sides == {str(v1), str(v2)}
    stats = server.control.routes["churn"].stats
    assert stats is not None and stats.fallbacks == 0
    assert stats.candidate.errors == stats.stable.errors == 0
    assert stats.candidate.requests + stats.stable.requests == 40  # the good ones only


def test_labels_for_the_rows_of_a_batch_request_count_towards_live_accuracy(
    embedded_ctx: Context,
) -> None:
    server, _, v2 = _good_then_weak(embedded_ctx, "ab", split=50)
    rows = [dict(r) for r in toy_data()[["a", "b", "bucket"]].head(6).to_dict("records")]
    status, answer = asyncio.run(
        _post(server, "/v1/models/churn/predict", {"instances": rows, "key": "u1"})
    )
    assert status == 200, answer
    preds, rid = answer["predictions"], answer["request_id"]
    # Row 3's label is the opposite of its prediction: only the row it names can tell.
    labels = [
        {"request_id": rid, "row": i, "label": p if i != 3 else 1 - p} for i, p in enumerate(preds)
    ]
    whole = {"request_id": rid, "label": preds[0]}  # names no row of six
    status, fed = asyncio.run(
        _post(server, "/v1/models/churn/feedback", {"labels": [whole, *labels]})
    )
    assert status == 200 and fed == {"matched": 6, "unmatched": 1, "pending": 0}, fed
    stats = server.control.routes["churn"].stats
    assert stats is not None
    role = stats.candidate if answer["model_version"] == str(v2) else stats.stable
    assert (role.labels, role.correct) == (6, 5)
    for bad in (-1, "2", 1.5, True):
        status, error = asyncio.run(
            _post(server, "/v1/models/churn/feedback", {"labels": [{**labels[0], "row": bad}]})
        )
        assert status == 422 and error["error"]["field"] == "labels[0].row", error


def test_a_canary_that_refuses_what_the_stable_version_takes_is_rolled_back(
    embedded_ctx: Context,
) -> None:
    from sklearn.linear_model import LogisticRegression

    import loopline as ll

    data = toy_data()
    v1 = register(good_model(data), "churn", data)
    with ll.start_run(experiment="exp-narrow") as run:  # a signature without 'bucket'
        narrow = data[["a", "b"]]
        run.log_model(
            LogisticRegression().fit(narrow, data["label"]), "model", input_example=narrow
        )
    v2 = int(ll.registry.register(run, "churn").version)
    deploy("churn", v1)
    deploy("churn", v2, strategy="canary", steps=[50, 100], window_requests=20, min_requests=5)
    server = _served(embedded_ctx)
    for _ in range(40):
        status, answer = asyncio.run(
            _post(server, "/v1/models/churn/predict", {"instances": [row()]})
        )
        assert status == 200 and answer["model_version"] == str(v1), answer
    stats = server.control.routes["churn"].stats
    assert stats is not None and stats.candidate.errors >= 1
    server.control.refresh()
    d = get_deployment("churn")
    assert (d.stable_version, d.candidate_version) == (v1, None)
    assert history("churn")[-1].action == "canary.rollback"


def _plans(data: Any) -> Any:
    """``data`` with a text column ``plan`` ("free"/"pro", from ``bucket``'s parity)."""
    return data.assign(plan=["pro" if b % 2 else "free" for b in data["bucket"]])


def _takes_text(data: Any) -> Any:
    """A pipeline that reads ``plan`` as text (one-hot) and ``a``, ``b`` as numbers."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    encode = ColumnTransformer(
        [("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"])], remainder="passthrough"
    )
    X = _plans(data)[["a", "b", "plan"]]
    return Pipeline([("encode", encode), ("clf", LogisticRegression())]).fit(X, data["label"])


def _reads_numbers(data: Any) -> Any:
    """A model fitted on ``a``, ``b`` and ``plan`` coded as a number: text there makes it raise."""
    from sklearn.linear_model import LogisticRegression

    X = data[["a", "b"]].assign(plan=(data["bucket"] % 2).astype(float))
    return LogisticRegression().fit(X, data["label"])


def test_a_model_without_a_signature_given_text_is_a_422_naming_the_column(
    embedded_ctx: Context,
) -> None:
    """A model logged without an input example raised on text in a column it reads as
    numbers (scikit-learn: ValueError, could not convert string to float), and the client
    got a 500 MODEL_ERROR for its own mistake. It is a 422 naming the column, its first
    row and the model's message; numbers that make the model raise stay its failure."""
    import lightgbm as lgb
    from sklearn.linear_model import LogisticRegression

    from tests.serving.helpers import FEATURES, picky_model, register_without_example

    data = toy_data()
    X = data[FEATURES]
    deploy("sk", register_without_example(LogisticRegression().fit(X, data["label"]), "sk"))
    booster = lgb.LGBMRegressor(n_estimators=5, min_child_samples=5, verbose=-1)
    deploy("gbm", register_without_example(booster.fit(X, data["a"]), "gbm"))
    bare = LogisticRegression().fit(X.to_numpy(), data["label"])
    deploy("bare", register_without_example(bare, "bare"))
    deploy("picky", register_without_example(picky_model(data), "picky"))
    server = _served(embedded_ctx)
    cases: list[tuple[str, Any, str, list[str]]] = [
        (
            "sk",
            {"instances": [{**row(), "a": "abc"}]},
            "a",
            ["could not convert string to float: 'abc'", "column 'a' (a string, 'abc', row 0)"],
        ),
        (
            "sk",
            {"dataframe_split": {"columns": FEATURES, "data": [[0.5, 0.5, 1], [0.5, "x", 1]]}},
            "b",
            ["column 'b' (a string, 'x', row 1)"],
        ),
        (
            "sk",
            {"instances": [{**row(), "a": {"v": 1}}]},
            "a",
            ["TypeError", "column 'a' (an object"],
        ),
        (
            "gbm",
            {"inputs": {**{k: [v] for k, v in row().items()}, "bucket": ["two"]}},
            "bucket",
            ["bad pandas dtypes", "column 'bucket' (a string, 'two', row 0)"],
        ),
        (
            "bare",
            {"instances": [[0.5, 0.5, 1], [0.5, "x", 1]]},
            "instances[1][1]",
            ["column 1 (by position) (a string, 'x', row 1)"],
        ),
    ]
    for name, body, field, words in cases:
        status, answer = asyncio.run(_post(server, f"/v1/models/{name}/predict", body))
        assert status == 422, (name, answer)
        error = answer["error"]
        assert error["code"] == "INVALID_INPUT" and error["field"] == field, error
        for w in words:
            assert w in error["message"], (w, error)
        assert "input example" in error["hint"] and "send numbers in column" in error["hint"]
    for name in ("sk", "gbm", "picky"):
        status, answer = asyncio.run(
            _post(server, f"/v1/models/{name}/predict", {"instances": [row()]})
        )
        assert status == 200, answer
    # Numbers alone that make the model raise (a bucket it never saw) are its failure.
    status, answer = asyncio.run(
        _post(server, "/v1/models/picky/predict", {"instances": [row(bucket=9)]})
    )
    assert status == 500 and answer["error"]["code"] == "MODEL_ERROR", answer
    assert "unknown categories" in answer["error"]["message"]
    failures = [
        line
        for line in server.metrics.render()[0].decode().splitlines()
        if line.startswith("loopline_model_failures_total{")
    ]
    assert failures == ['loopline_model_failures_total{kind="error",model="picky",version="1"} 1.0']


def test_a_canary_without_a_signature_that_raises_on_text_the_stable_takes_is_rolled_back(
    embedded_ctx: Context,
) -> None:
    """A model's own raise on text is a 422, but a candidate that raises on what the stable
    version takes did fail: the stable version answers, the error counts against the
    candidate, and the canary is rolled back (the accounting does not follow the status)."""
    import loopline as ll
    from tests.serving.helpers import register_without_example

    data = toy_data()
    v1 = register_without_example(_takes_text(data), "churn")
    v2 = register_without_example(_reads_numbers(data), "churn")
    deploy("churn", v1)
    deploy("churn", v2, strategy="canary", steps=[50, 100], window_requests=20, min_requests=5)
    server = _served(embedded_ctx)
    for i in range(40):
        body = {"instances": [{"a": 0.5, "b": -0.5, "plan": "pro" if i % 2 else "free"}]}
        status, answer = asyncio.run(_post(server, "/v1/models/churn/predict", body))
        assert status == 200 and answer["model_version"] == str(v1), answer
    stats = server.control.routes["churn"].stats
    assert stats is not None and stats.candidate.errors >= 1
    assert stats.candidate.errors == stats.candidate.requests  # every candidate call raised
    assert stats.stable.errors == 0
    metrics = server.metrics.render()[0].decode()
    assert f'loopline_model_failures_total{{kind="error",model="churn",version="{v2}"}}' in metrics
    server.control.refresh()
    d = get_deployment("churn")
    assert (d.stable_version, d.candidate_version) == (v1, None)
    event = history("churn")[-1]
    assert event.action == "canary.rollback" and "error" in (event.reason or "")
    assert ll.registry.get("churn", "champion").version == v1


def test_the_fallback_answers_when_the_stable_model_raises_on_text_it_takes(
    embedded_ctx: Context,
) -> None:
    """The fallback judges what the stable model raised on: when it takes the text, it
    answers and the stable version's failure is counted; when no version takes it, the
    client gets the 422 naming the column and no version failed."""
    from tests.serving.helpers import register_without_example

    data = toy_data()
    v1 = register_without_example(_takes_text(data), "churn")
    v2 = register_without_example(_reads_numbers(data), "churn")
    deploy("churn", v2, fallback=v1)
    deploy("numbers", register_without_example(_reads_numbers(data), "numbers"))
    server = _served(embedded_ctx)
    text = {"instances": [{"a": 0.5, "b": -0.5, "plan": "pro"}]}
    status, answer = asyncio.run(_post(server, "/v1/models/churn/predict", text))
    assert status == 200 and answer["model_version"] == str(v1), answer
    coded = {"instances": [{"a": 0.5, "b": -0.5, "plan": 1.0}]}
    status, answer = asyncio.run(_post(server, "/v1/models/churn/predict", coded))
    assert status == 200 and answer["model_version"] == str(v2), answer
    status, answer = asyncio.run(_post(server, "/v1/models/numbers/predict", text))
    assert status == 422 and answer["error"]["field"] == "plan", answer
    failures = [
        line
        for line in server.metrics.render()[0].decode().splitlines()
        if line.startswith("loopline_model_failures_total{")
    ]
    assert failures == [
        f'loopline_model_failures_total{{kind="error",model="churn",version="{v2}"}} 1.0'
    ]


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        (b'{"instances": [{"a": Infinity, "b": 0.5, "bucket": 1}]}', "a", "is inf in row 0"),
        (b'{"instances": [{"a": 0.5, "b": -Infinity, "bucket": 1}]}', "b", "is -inf"),
        (b'{"instances": [{"a": 0.5, "b": 1e400, "bucket": 1}]}', "b", "is inf"),
        (b'{"instances": [[0.5, 0.5, 1], [0.5, Infinity, 1]]}', "b", "is inf in row 1"),
        (b'{"instances": [{"a": 0.5, "b": 0.5, "bucket": 1e30}]}', "bucket", "out of range"),
        (
            b'{"instances": [{"a": 0.5, "b": 0.5, "bucket": 1180591620717411303424}]}',
            "bucket",
            "out of range",
        ),
        (b'{"instances": [{"a": 0.5, "b": 0.5, "bucket": -1e19}]}', "bucket", "out of range"),
        (
            b'{"instances": [[0.5, 0.5, 1], [0.5, 0.5, -9223372036854775809]]}',
            "bucket",
            "out of range in row 1: -9.223372036854776e+18",
        ),
        (b'{"instances": [[0.5, 0.5, 9007199254740993.0]]}', "bucket", "below 2**53"),
    ],
    ids=[
        "inf",
        "minus-inf",
        "1e400",
        "inf-second-row",
        "1e30-int",
        "2**70-int",
        "-1e19-int",
        "below-int64-min",
        "float-past-2**53",
    ],
)
def test_values_beyond_a_column_are_422_naming_it_and_count_against_no_version(
    embedded_ctx: Context, body: bytes, field: str, words: str
) -> None:
    data = toy_data()
    deploy("churn", register(good_model(data), "churn", data))
    server = _served(embedded_ctx)
    status, answer = asyncio.run(_post(server, "/v1/models/churn/predict", body))
    assert status == 422, answer
    assert answer["error"]["field"] == field and words in answer["error"]["message"], answer
    assert "loopline_model_failures_total{" not in server.metrics.render()[0].decode()


def test_feedback_for_a_model_not_served_here_is_404(embedded_ctx: Context) -> None:
    data = toy_data()
    deploy("churn", register(good_model(data), "churn", data))
    server = _served(embedded_ctx)
    label = {"request_id": "r-1", "label": 1}
    status, answer = asyncio.run(_post(server, "/v1/models/nosuch/feedback", label))
    assert status == 404, answer
    assert answer["error"]["field"] == "name" and "churn" in answer["error"]["hint"]
    status, answer = asyncio.run(_post(server, "/v1/models/churn/feedback", label))
    assert status == 200 and answer == {"matched": 0, "unmatched": 1, "pending": 0}


def test_a_request_id_labels_could_never_name_is_refused(embedded_ctx: Context) -> None:
    """An empty or 300-character X-Request-ID was answered and logged, and then no label
    could ever reach that prediction (labels take 1 to 200 characters)."""
    data = toy_data()
    deploy("churn", register(good_model(data), "churn", data))
    server = _served(embedded_ctx)
    body = {"instances": [row()]}
    for rid in (b"", b"b" * 201):
        status, answer = asyncio.run(
            _post(server, "/v1/models/churn/predict", body, [(b"x-request-id", rid)])
        )
        assert status == 422, answer
        assert answer["error"]["field"] == "X-Request-ID"
    status, answer = asyncio.run(
        _post(server, "/v1/models/churn/predict", body, [(b"x-request-id", b"b" * 200)])
    )
    assert status == 200 and answer["request_id"] == "b" * 200


def test_a_slow_shadow_never_holds_the_answers_and_a_busy_one_is_skipped(
    embedded_ctx: Context,
) -> None:
    server, v1, v2 = _good_then_weak(embedded_ctx, "shadow")
    route = server.control.routes["churn"]
    assert route.shadow is not None and route.stats is not None
    stats = route.stats
    release = threading.Event()
    real = route.shadow.predict

    def held(rows: Any) -> Any:  # the shadow version takes as long as the test says
        release.wait(3)
        return real(rows)

    route.shadow.predict = held
    sent = SHADOW_BACKLOG + 2

    async def scenario() -> tuple[list[tuple[int, dict[str, Any]]], float, int]:
        start = time.perf_counter()
        answers = [
            await _post(server, "/v1/models/churn/predict", {"instances": [row()]})
            for _ in range(sent)
        ]
        took = time.perf_counter() - start
        compared_while_held = stats.compared
        release.set()
        deadline = time.monotonic() + 30
        while stats.compared < SHADOW_BACKLOG and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return answers, took, compared_while_held

    answers, took, compared_while_held = asyncio.run(scenario())
    # Inline, each answer waited for the shadow (the event loop was blocked): 3 s each.
    assert took < 2.5
    assert {(status, a["model_version"]) for status, a in answers} == {(200, str(v1))}
    assert compared_while_held == 0
    assert stats.compared == stats.candidate.requests == SHADOW_BACKLOG
    metrics = server.metrics.render()[0].decode()
    assert f'loopline_shadow_skipped_total{{model="churn",version="{v2}"}} 2.0' in metrics


def test_a_shadow_that_differs_on_a_later_row_of_a_request_disagrees(
    embedded_ctx: Context,
) -> None:
    """Only the first row was compared: a request of several rows that the shadow answered
    otherwise after the first counted as agreeing."""
    import numpy as np

    import loopline as ll

    server, v1, v2 = _good_then_weak(embedded_ctx, "shadow")
    stats = server.control.routes["churn"].stats
    assert stats is not None
    good, weak = (ll.registry.load(f"models:/churn/{v}") for v in (v1, v2))
    rows = [row(a=float(a), b=0.0) for a in np.linspace(-3, 3, 61)]
    same = good.predict(rows) == weak.predict(rows)
    agree, differ = rows[int(np.argmax(same))], rows[int(np.argmin(same))]
    assert same.any() and not same.all()

    async def scenario() -> list[tuple[int, dict[str, Any]]]:
        answers = [
            await _post(server, "/v1/models/churn/predict", {"instances": body})
            for body in ([agree, differ], [agree, agree])
        ]
        deadline = time.monotonic() + 30
        while stats.compared < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return answers

    answers = asyncio.run(scenario())
    assert {(status, a["model_version"]) for status, a in answers} == {(200, str(v1))}
    assert (stats.compared, stats.agreed) == (2, 1)
    [seen] = stats.disagreements
    assert seen["row"] == 1 and seen["request_id"] == answers[0][1]["request_id"]
    assert seen["served"] == answers[0][1]["predictions"][1] != seen["shadow"]
    metrics = server.metrics.render()[0].decode()
    for agreed in ("true", "false"):
        labels = f'agreed="{agreed}",model="churn",version="{v2}"'
        assert f"loopline_shadow_predictions_total{{{labels}}} 1.0" in metrics, metrics


def test_a_model_trained_on_a_categorical_column_takes_its_categories_as_json(
    embedded_ctx: Context,
) -> None:
    """A LightGBM model fitted on a pandas categorical could not be logged with an example
    (the signature read the column as text), so it could not be served at all."""
    import lightgbm as lgb
    import pandas as pd

    from loopline.serving.openapi import describe

    data = toy_data()
    data["bucket"] = pd.Categorical(data["bucket"].map("b{}".format))
    model = lgb.LGBMClassifier(n_estimators=8, min_child_samples=5, verbose=-1)
    model.fit(data[["a", "b", "bucket"]], data["label"])
    deploy("churn", register(model, "churn", data))
    server = _served(embedded_ctx)
    rows = data[["a", "b", "bucket"]].head(6).astype({"bucket": str})
    expected = model.predict(data[["a", "b", "bucket"]].head(6)).tolist()
    records = rows.to_dict("records")
    split = {"columns": list(rows), "data": rows.to_numpy().tolist()}
    for body in (
        {"instances": records},
        {"instances": [list(r.values()) for r in records]},
        {"dataframe_split": split},
    ):
        status, answer = asyncio.run(_post(server, "/v1/models/churn/predict", body))
        assert status == 200, answer
        assert answer["predictions"] == expected, body
    status, answer = asyncio.run(
        _post(server, "/v1/models/churn/predict", {"instances": [{**records[0], "bucket": 1}]})
    )
    assert status == 422 and answer["error"]["field"] == "bucket", answer
    assert "'b0', 'b1', 'b2', 'b3'" in answer["error"]["message"]
    schema = describe(server.control.routes)["paths"]["/v1/models/churn/predict"]
    assert "'enum': ['b0', 'b1', 'b2', 'b3']" in str(schema)


@pytest.mark.parametrize("setting", [None, 0, 2], ids=["default", "library-default", "two"])
def test_predictions_use_the_native_threads_set_for_the_server(
    embedded_ctx: Context, monkeypatch: pytest.MonkeyPatch, setting: int | None
) -> None:
    """What each library is told: scikit-learn's gradient boosting asks OpenMP how wide a
    team to start, LightGBM takes ``num_threads`` on each call (0 is its default)."""
    import lightgbm as lgb
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.ensemble._hist_gradient_boosting import gradient_boosting
    from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

    asked: dict[str, list[int]] = {"sklearn": [], "lightgbm": []}

    def openmp_teams(n_threads: int | None = None, **kw: Any) -> int:
        asked["sklearn"].append(n := _openmp_effective_n_threads(n_threads, **kw))
        return n

    real_predict = lgb.Booster.predict

    def lgb_predict(self: Any, data: Any, *args: Any, **kwargs: Any) -> Any:
        asked["lightgbm"].append(kwargs["num_threads"])
        return real_predict(self, data, *args, **kwargs)

    monkeypatch.setattr(gradient_boosting, "_openmp_effective_n_threads", openmp_teams)
    monkeypatch.setattr(lgb.Booster, "predict", lgb_predict)
    data = toy_data()
    X, y = data[["a", "b", "bucket"]], data["label"]
    deploy("hgb", register(HistGradientBoostingClassifier(max_iter=5).fit(X, y), "hgb", data))
    deploy("lgbm", register(lgb.LGBMClassifier(n_estimators=5, verbose=-1).fit(X, y), "lgbm", data))
    full = _openmp_effective_n_threads()
    settings = ServeSettings(log_predictions=False)
    if setting is not None:
        settings.native_threads = setting
    server = ModelServer(embedded_ctx, settings)
    server.control.refresh()
    asked["sklearn"].clear()
    asked["lightgbm"].clear()
    for name in ("hgb", "lgbm"):
        status, answer = asyncio.run(
            _post(server, f"/v1/models/{name}/predict", {"instances": [row()]})
        )
        assert status == 200, answer
    expected = {None: 1, 0: full, 2: min(2, full)}[setting]
    assert asked["sklearn"] and set(asked["sklearn"]) == {expected}
    assert asked["lightgbm"] == [1 if setting is None else setting]
    assert _openmp_effective_n_threads() == full  # the request thread got its count back


@pytest.mark.parametrize("value", ["-1", "many", "5000"])
def test_a_bad_native_thread_count_is_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("LOOPLINE_SERVE_NATIVE_THREADS", value)
    with pytest.raises(ValidationError, match="native_threads"):
        ServeSettings()


def test_an_error_body_can_hold_any_message() -> None:
    """A message echoing a lone surrogate made orjson raise, and the client got a 500."""
    body = orjson.loads(error_body("X", "column '\udfff'", field="\ud800", hint="h\udbff"))
    assert body == {
        "error": {
            "code": "X",
            "message": "column '\\udfff'",
            "field": "\\ud800",
            "hint": "h\\udbff",
        }
    }


def test_feedback_live_accuracy_cannot_use_is_a_422_and_scores_nothing(
    embedded_ctx: Context,
) -> None:
    """Found by a fuzzing audit: a label of null, {}, [], NaN or 100,000 characters for a
    real request was matched and scored, and 200,000 labels in one request were taken."""
    server, _, _ = _good_then_weak(embedded_ctx, "ab", split=50)
    status, answer = asyncio.run(_post(server, "/v1/models/churn/predict", {"instances": [row()]}))
    assert status == 200, answer
    rid = answer["request_id"]
    feedback = "/v1/models/churn/feedback"
    bodies: list[tuple[Any, str]] = [
        *(
            ({"request_id": rid, "label": label}, "label")
            for label in (None, {}, {"a": 1}, [], [[[]]], "x" * 100_000)
        ),
        (b'{"request_id": "%s", "label": NaN}' % rid.encode(), "label"),
        *(({"request_id": bad, "label": 1}, "request_id") for bad in (None, [], {}, True, 1.5)),
        ({"labels": [{"request_id": rid, "label": 1}] * 200_000}, "labels"),
    ]
    for body, field in bodies:
        status, error = asyncio.run(_post(server, feedback, body))
        assert status == 422 and error["error"]["field"] == field, (body, error)
    stats = server.control.routes["churn"].stats
    assert stats is not None and stats.stable.labels == stats.candidate.labels == 0
    status, fed = asyncio.run(_post(server, feedback, {"request_id": rid, "label": 1}))
    assert status == 200 and fed == {"matched": 1, "unmatched": 0, "pending": 0}


async def _get(app: Any, path: str) -> tuple[int, dict[str, Any]]:
    """One GET through an ASGI callable (the server, or the server behind a gate)."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "http", "method": "GET", "path": path, "headers": []}, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    answer = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, orjson.loads(answer)


@pytest.mark.parametrize(
    "content_type",
    [b"text/plain", b"application/x-www-form-urlencoded", b"multipart/form-data; boundary=x", None],
    ids=["text", "form", "multipart", "none"],
)
def test_a_body_not_sent_as_json_is_a_415_and_moves_nothing(
    embedded_ctx: Context, content_type: bytes | None
) -> None:
    """CSRF: a page on another site can make a browser post a form or a text/plain body
    without a preflight; the server read it as JSON, so such a page could post labels that
    move a canary's live accuracy. Now only a body typed as JSON is read."""
    server, _, _ = _good_then_weak(embedded_ctx, "ab", split=50)
    status, answer = asyncio.run(_post(server, "/v1/models/churn/predict", {"instances": [row()]}))
    assert status == 200, answer
    rid = answer["request_id"]
    headers = [] if content_type is None else [(b"content-type", content_type)]
    for path, body in (
        ("/v1/models/churn/predict", {"instances": [row()]}),
        ("/v1/models/churn/feedback", {"request_id": rid, "label": 1}),
    ):
        status, error = asyncio.run(_post(server, path, body, headers, as_json=False))
        assert status == 415, (path, error)
        assert error["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
        assert error["error"]["field"] == "Content-Type"
        assert "application/json" in error["error"]["message"]
    stats = server.control.routes["churn"].stats
    assert stats is not None and stats.stable.labels == stats.candidate.labels == 0
    assert 'status="415"' in server.metrics.render()[0].decode()
    status, fed = asyncio.run(
        _post(server, "/v1/models/churn/feedback", {"request_id": rid, "label": 1})
    )
    assert status == 200 and fed == {"matched": 1, "unmatched": 0, "pending": 0}


def test_json_with_parameters_or_a_json_suffix_is_taken_and_an_encoding_is_415(
    embedded_ctx: Context,
) -> None:
    data = toy_data()
    deploy("churn", register(good_model(data), "churn", data))
    server = _served(embedded_ctx)
    predict, body = "/v1/models/churn/predict", {"instances": [row()]}
    for typed in (b"application/json; charset=utf-8", b"Application/JSON", b"application/x+json"):
        status, answer = asyncio.run(_post(server, predict, body, [(b"content-type", typed)]))
        assert status == 200, (typed, answer)
    status, answer = asyncio.run(_post(server, predict, body, [(b"content-encoding", b"identity")]))
    assert status == 200, answer
    zipped = gzip.compress(orjson.dumps(body))
    for path in (predict, "/v1/models/churn/feedback"):
        status, error = asyncio.run(_post(server, path, zipped, [(b"content-encoding", b"gzip")]))
        assert status == 415, error  # it said "not valid UTF-8"
        assert error["error"]["field"] == "Content-Encoding"
        assert "'gzip' is not supported" in error["error"]["message"]


@pytest.mark.parametrize(
    ("path", "body", "key"),
    [
        ("predict", b'{"instances": [{"a": 0.5, "a": -3.0, "b": 0.5, "bucket": 1}]}', "a"),
        (
            "predict",
            b'{"instances": [{"a": 0.5, "b": 0.5, "bucket": 1}], "instances": []}',
            "instances",
        ),
        ("predict", b'{"instances": [{"a": NaN, "b": 0.5, "bucket": 1, "b": 1}]}', "b"),
        (
            "predict",
            b'{"instances": [{"a": 0.5, "b": 0.5, "bucket": 1}], "key": "a:b", "key": "c"}',
            "key",
        ),
        ("feedback", b'{"request_id": "r", "label": 1, "label": 0}', "label"),
    ],
    ids=["in-a-row", "top-level", "fallback-parser", "colon-in-a-string", "feedback"],
)
def test_a_key_given_twice_is_a_422_naming_it(
    embedded_ctx: Context, path: str, body: bytes, key: str
) -> None:
    """Was 200 with the last value: which one the client meant is a guess."""
    data = toy_data()
    deploy("churn", register(good_model(data), "churn", data))
    server = _served(embedded_ctx)
    status, error = asyncio.run(_post(server, f"/v1/models/churn/{path}", body))
    assert status == 422, error
    assert error["error"]["field"] == key and "twice" in error["error"]["message"]


def test_health_says_only_the_status_and_the_details_are_under_v1_models(
    embedded_ctx: Context,
) -> None:
    """/health is open to probes (no token, any Host): it listed every model, version,
    traffic share, input column and load error."""
    from loopline.core.auth import TokenCache
    from loopline.serving.auth import ServingAuthGate

    data = toy_data()
    deploy("churn", register(good_model(data), "churn", data))
    server = _served(embedded_ctx)
    assert asyncio.run(_get(server, "/health")) == (503, {"status": "starting"})
    server.ready = True
    gate = ServingAuthGate(server, TokenCache(embedded_ctx.engine))
    assert asyncio.run(_get(gate, "/health")) == (200, {"status": "ok"})
    assert asyncio.run(_get(gate, "/v1/models"))[0] == 401
    status, listed = asyncio.run(_get(server, "/v1/models"))
    assert status == 200 and listed["churn"]["inputs"] == ["a", "b", "bucket"]
    assert listed["churn"]["load_error"] is None


def test_a_deployed_version_that_failed_to_load_is_a_503_naming_the_error(
    embedded_ctx: Context,
) -> None:
    """A fresh server that could not load the deployed version answered its clients 404
    "model 'churn' is not served here ... deploy one" - it is deployed."""
    data = toy_data()
    version = register(good_model(data), "churn", data)
    deploy("churn", version)
    corrupt(embedded_ctx, "churn", version)  # after the deploy, which checks the files
    server = _served(embedded_ctx)
    server.ready = True
    assert asyncio.run(_get(server, "/health")) == (503, {"status": "unavailable"})
    for status, answer in (
        asyncio.run(_post(server, "/v1/models/churn/predict", {"instances": [row()]})),
        asyncio.run(_post(server, "/v1/models/churn/feedback", {"request_id": "r", "label": 1})),
        asyncio.run(_get(server, "/v1/models/churn")),
    ):
        assert status == 503, answer
        error = answer["error"]
        assert error["code"] == "MODEL_UNAVAILABLE" and "deploy one" not in error["hint"]
        assert "could not load it" in error["message"] and "is corrupted" in error["message"]
    status, listed = asyncio.run(_get(server, "/v1/models"))
    assert status == 200 and listed["churn"]["phase"] == "unavailable"
    assert f"models:/churn/{version} is corrupted" in listed["churn"]["load_error"]
    assert asyncio.run(_get(server, "/v1/models/nosuch"))[0] == 404


def test_a_slow_candidate_never_makes_the_stable_versions_answers_time_out(
    embedded_ctx: Context,
) -> None:
    """A candidate past the deployment's timeout_ms went on running (a thread cannot be
    stopped) and held the interpreter, so the stable version answering for it, and the
    stable's own next requests, missed the same timeout_ms: 504 'version 1 did not answer
    within 0.008 s' for 3 of 80 requests (21 of 60 at 2 ms) though it answers in 0.13 ms."""
    server, v1, v2 = _good_then_weak(embedded_ctx, "ab", split=50, timeout_ms=15)
    route = server.control.routes["churn"]
    assert route.candidate is not None and route.stats is not None
    real = route.candidate.predict

    def greedy(rows: Any) -> Any:  # pure Python for 0.3 s: holds the GIL but for switches
        end = time.perf_counter() + 0.3
        while time.perf_counter() < end:
            pass
        return real(rows)

    route.candidate.predict = greedy
    keys = [f"user-{i}" for i in range(200)]
    sides = [route.pick(k)[1] for k in keys]
    to_candidate = [k for k, c in zip(keys, sides, strict=True) if c][:3]
    to_stable = [k for k, c in zip(keys, sides, strict=True) if not c][:3]

    async def scenario() -> list[tuple[int, dict[str, Any]]]:
        answers = []
        for cand, stable in zip(to_candidate, to_stable, strict=True):
            # The candidate times out (the stable answers for it), then the stable's own
            # request arrives while the abandoned call still runs.
            for key in (cand, stable):
                body = {"instances": [row()], "key": key}
                answers.append(await _post(server, "/v1/models/churn/predict", body))
        return answers

    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.01)  # a thread keeps the GIL for 10 ms when another asks for it
    try:
        answers = asyncio.run(scenario())
    finally:
        sys.setswitchinterval(interval)
        if server._runner is not None:
            server._runner.close()
    assert [status for status, _ in answers] == [200] * 6, answers
    assert {a["model_version"] for _, a in answers} == {str(v1)}
    stats = route.stats
    assert (stats.candidate.errors, stats.stable.errors, stats.fallbacks) == (3, 0, 3)
    metrics = server.metrics.render()[0].decode()
    assert f'kind="timeout",model="churn",version="{v2}"}} 3.0' in metrics
    failures = [line for line in metrics.splitlines() if line.startswith("loopline_model_fail")]
    assert not [line for line in failures if f'version="{v1}"' in line], failures


def test_a_label_for_another_workers_answer_is_passed_on_and_scored_there(
    embedded_ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A label reaching a worker that did not answer its request was answered 'unmatched'
    and lost; now it is 'pending' here and scored by the worker that answered."""
    from sqlalchemy.exc import OperationalError

    from loopline.serving.feedback import Relay

    answering, _, _ = _good_then_weak(embedded_ctx, "ab", split=50)
    other = _served(embedded_ctx)
    other._relay = Relay("another-worker")  # in one process both would be host-pid
    feedback = "/v1/models/churn/feedback"

    async def scenario() -> None:
        answering._relay.start(embedded_ctx.engine)
        status, answer = await _post(answering, "/v1/models/churn/predict", {"instances": [row()]})
        assert status == 200, answer
        label = {"request_id": answer["request_id"], "label": answer["predictions"][0]}
        for _ in range(2):  # the second time, the row was labelled before: scored once
            status, fed = await _post(other, feedback, label)
            assert status == 200 and fed == {"matched": 0, "unmatched": 0, "pending": 1}, fed
        assert await answering.take_labels() == 1
        assert await answering.take_labels() == 0
        stats = answering.control.routes["churn"].stats
        assert stats is not None and stats.stable.labels + stats.candidate.labels == 1
        assert stats.stable.correct + stats.candidate.correct == 1

        # The store cannot take the labels to pass on: a 503, and none of the request's
        # labels is scored, so that sending them again counts each once.
        status, mine = await _post(other, "/v1/models/churn/predict", {"instances": [row()]})
        both = {"labels": [{"request_id": mine["request_id"], "label": 1}, label]}

        def down(*args: Any) -> None:
            raise OperationalError("INSERT", {}, Exception("database is locked"))

        monkeypatch.setattr(other._relay, "send", down)
        status, error = await _post(other, feedback, both)
        assert status == 503 and error["error"]["code"] == "BACKEND_UNAVAILABLE", error
        assert "send the labels again" in error["error"]["hint"]
        monkeypatch.undo()
        status, fed = await _post(other, feedback, both)
        assert fed == {"matched": 1, "unmatched": 0, "pending": 1}, fed

    asyncio.run(scenario())


def test_a_label_no_worker_can_score_expires_counted_and_removed(embedded_ctx: Context) -> None:
    """A label for a request no worker remembered stayed 'pending' for ever: kept in the
    table (not even pruned once no rollout ran), and counted nowhere."""
    import sqlalchemy as sa

    from loopline.serving.deploy import rollback
    from loopline.serving.feedback import Relay
    from loopline.serving.tables import feedback_labels

    _good_then_weak(embedded_ctx, "ab", split=50)
    settings = ServeSettings(log_predictions=False, label_horizon_s=0.4)
    answering, other = ModelServer(embedded_ctx, settings), ModelServer(embedded_ctx, settings)
    other._relay = Relay("another-worker", horizon=0.4)  # in one process both are host-pid
    for server in (answering, other):
        server.control.refresh()
        server._relay.start(embedded_ctx.engine)
    feedback = "/v1/models/churn/feedback"

    def table() -> list[str]:
        with embedded_ctx.engine.connect() as conn:
            return list(conn.execute(sa.select(feedback_labels.c.request_id)).scalars())

    def counted(server: ModelServer, outcome: str) -> float:
        metrics = server.metrics.render()[0].decode()
        line = f'loopline_feedback_labels_total{{model="churn",outcome="{outcome}"}} '
        found = [x for x in metrics.splitlines() if x.startswith(line)]
        return float(found[0].removeprefix(line)) if found else 0.0

    async def scenario() -> None:
        status, answer = await _post(answering, "/v1/models/churn/predict", {"instances": [row()]})
        assert status == 200, answer
        labels = {
            "labels": [
                {"request_id": answer["request_id"], "label": answer["predictions"][0]},
                {"request_id": "never-made", "label": 1},
            ]
        }
        status, fed = await _post(other, feedback, labels)
        assert fed == {"matched": 0, "unmatched": 0, "pending": 2}, fed
        assert counted(other, "pending") == 2
        assert await answering.take_labels() == 1  # scored where it was answered, deleted
        assert counted(answering, "matched") == 1 and table() == ["never-made"]
        await asyncio.sleep(0.45)
        assert await other.take_labels() == 0
        assert await answering.take_labels() == 0  # expired once, by one of the two
        assert counted(other, "expired") + counted(answering, "expired") == 1
        assert counted(answering, "matched") == 1  # the scored label never expires
        assert table() == []
        stats = [s.control.routes["churn"].stats for s in (answering, other)]
        assert sum(s.expired_labels for s in stats if s is not None) == 1
        windows = [s.to_dict() for s in stats if s is not None]
        assert WindowStats.merge(windows).summary()["expired_labels"] == 1

        # Once the rollout ended no worker read the table any more: its labels stayed.
        status, fed = await _post(other, feedback, {"request_id": "gone-too", "label": 0})
        assert fed["pending"] == 1 and table() == ["gone-too"]
        rollback("churn", reason="done")
        for server in (answering, other):
            server.control.refresh()
            assert server.control.routes["churn"].stats is None
        await asyncio.sleep(0.45)
        assert await answering.take_labels() + await other.take_labels() == 0
        assert table() == []
        assert counted(other, "expired") + counted(answering, "expired") == 2

    asyncio.run(scenario())
