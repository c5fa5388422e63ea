"""``/api/v1/monitor``: labels, business events and stored drift over HTTP, and the remote
SDK (``ll.monitor`` with ``LOOPLINE_URI=http://...``) through the same routes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import loopline as ll
from loopline.core.context import Context
from loopline.monitoring.drift_results import store_drift
from loopline.monitoring.performance import WindowMetrics
from loopline.monitoring.prediction_log import PredictionLogger
from loopline.monitoring.wire import MAX_LABELS
from tests.server.conftest import start_server, stop_server


@pytest.fixture
def served(migrated_db_uri: str, tmp_path: Path) -> Iterator[tuple[Context, str]]:
    """An embedded context and a server on the same store."""
    artifacts = str(tmp_path / "server-artifacts")
    ctx = ll.init(uri=migrated_db_uri, artifacts=artifacts)
    proc, url = start_server(migrated_db_uri, artifacts)
    try:
        yield ctx, url
    finally:
        stop_server(proc)
        ctx.close()


def _log(ctx: Context, n: int, model: str = "m") -> list[str]:
    ids = [f"feed0000-{i:x}" for i in range(n)]
    with PredictionLogger(ctx, start=False) as logger:
        for i, rid in enumerate(ids):
            logger.log(rid, model, "1", [{"x": float(i)}], [i % 2], 1.0)
    return ids


def _error(r: httpx.Response, status: int) -> dict[str, str]:
    assert r.status_code == status, r.text
    error: dict[str, str] = r.json()["error"]
    return error


def test_labels_report_matched_and_unknown_ids(served: tuple[Context, str]) -> None:
    ctx, url = served
    ids = _log(ctx, 40)
    body = {"request_ids": [*ids[5:25], "ghost-1", ids[5]], "labels": [1] * 20 + [0, 0]}
    r = httpx.post(f"{url}/api/v1/monitor/labels", json={**body, "model": "m"})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "received": 22,
        "matched": 21,
        "unmatched": 1,
        "unmatched_ids": ["ghost-1"],
        "duplicates": 1,
        "no_row": 0,
        "no_row_ids": [],
        "out_of_range": 0,
        "out_of_range_rows": [],
        "warnings": [],
    }
    labels = ll.monitor.read_labels().set_index("request_id")
    assert labels.loc[ids[5], "label_num"] == 0.0  # the last label of a repeated id wins
    assert "ghost-1" in labels.index  # stored, not dropped
    # A request labelled row by row is one id in the answer; its labels are all counted.
    rows = {"request_ids": ["ghost-2", "ghost-2", ids[0], "ghost-2"], "rows": [0, 1, 0, 2]}
    r = httpx.post(f"{url}/api/v1/monitor/labels", json={**rows, "labels": [1, 0, 1, 1]})
    assert r.status_code == 200, r.text
    assert (r.json()["unmatched"], r.json()["unmatched_ids"]) == (3, ["ghost-2"])


BAD_LABELS = [
    ({"request_ids": ["a", "b"], "labels": [1]}, "labels", "2 request ids and 1 labels"),
    ({"request_ids": [], "labels": []}, "request_ids", "at least 1"),
    (
        {"request_ids": ["r"] * (MAX_LABELS + 1), "labels": [1] * (MAX_LABELS + 1)},
        "request_ids",
        f"at most {MAX_LABELS}",
    ),
    ({"request_ids": ["a"], "labels": [{"x": 1}]}, "labels.0", "a label is a number"),
    ({"request_ids": ["a"], "labels": [1], "extra": 1}, "extra", "not permitted"),
    ({"request_ids": [""], "labels": [1]}, "request_ids.0", "at least 1 character"),
    (
        {"request_ids": ["feed0000-0", "feed0000-1"], "labels": [1, "late"], "model": "m"},
        "labels[1]",
        "predicts numbers",
    ),
]


def test_bad_labels_are_422_naming_the_field(served: tuple[Context, str]) -> None:
    ctx, url = served
    _log(ctx, 3)  # model "m" predicts numbers
    for body, field, words in BAD_LABELS:
        error = _error(httpx.post(f"{url}/api/v1/monitor/labels", json=body), 422)
        assert error["field"] == field and words in error["message"], (body, error)
    assert ll.monitor.read_labels().empty  # nothing stored from a rejected request


def test_business_events_are_stored_with_their_model(served: tuple[Context, str]) -> None:
    _, url = served
    body = {"event": "refund", "value": 12.5, "request_id": "r-1", "model": "m"}
    r = httpx.post(f"{url}/api/v1/monitor/business", json=body)
    assert r.status_code == 201 and r.json() == body
    stored = ll.monitor.read_business()
    assert stored[["event", "value", "request_id", "model"]].values.tolist() == [
        ["refund", 12.5, "r-1", "m"]
    ]
    bad = _error(httpx.post(f"{url}/api/v1/monitor/business", json={"event": "x"}), 422)
    assert bad["field"] == "value"
    bad = _error(
        httpx.post(f"{url}/api/v1/monitor/business", json={"event": "x", "value": "a lot"}), 422
    )
    assert bad["field"] == "value"


#: (body, field, what the message says): a business event the server refuses.
BAD_BUSINESS = [
    ({"event": "e\u0000", "value": 1.0}, "event", "NUL"),
    ({"event": "e\u001b[2J", "value": 1.0}, "event", "control character"),
    ({"event": "e", "value": True}, "value", "valid number"),
    ({"event": "e", "value": "12.5"}, "value", "valid number"),
    ({"event": "e", "value": 1, "model": "\u0001"}, "model", "control character"),
    ({"event": "e", "value": 1, "model": "m\u0000"}, "model", "NUL"),
    ({"event": "e", "value": 1, "request_id": "r\u0000"}, "request_id", "NUL"),
]


def test_a_business_event_that_is_not_a_number_or_has_control_characters_is_refused(
    served: tuple[Context, str],
) -> None:
    # true was echoed back as 1.0 and names with NUL or ESC were stored (201).
    _, url = served
    for body, field, words in BAD_BUSINESS:
        error = _error(httpx.post(f"{url}/api/v1/monitor/business", json=body), 422)
        assert error["field"] == field and words in error["message"], (body, error)
    assert ll.monitor.read_business().empty


def test_labels_for_a_model_name_with_control_characters_are_refused(
    served: tuple[Context, str],
) -> None:
    _, url = served
    for model in ("m\u0000", "m\u001b[31m"):
        body = {"request_ids": ["r"], "labels": [1], "model": model}
        error = _error(httpx.post(f"{url}/api/v1/monitor/labels", json=body), 422)
        assert error["field"] == "model" and "model contains" in error["message"], error
    assert ll.monitor.read_labels().empty
    # true/false stay labels: a classifier may predict booleans (check_label's rule).
    ok = httpx.post(f"{url}/api/v1/monitor/labels", json={"request_ids": ["r"], "labels": [True]})
    assert ok.status_code == 200, ok.text


def test_stored_drift_results_newest_first(served: tuple[Context, str]) -> None:
    ctx, url = served
    for i, drifted in enumerate([["temp"], []]):
        window = WindowMetrics(
            float(i), float(i + 1), "3", 10, 400, 0, drifted=drifted, drift_scores={"temp": 0.2}
        )
        store_drift("flights", window, "flights-train@1", ctx)
    r = httpx.get(f"{url}/api/v1/monitor/drift", params={"model": "flights", "limit": 5})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["drifted"] for x in results] == [[], ["temp"]]
    assert results[1]["scores"] == {"temp": 0.2} and results[1]["reference"] == "flights-train@1"
    assert httpx.get(f"{url}/api/v1/monitor/drift", params={"model": "none"}).json() == {
        "model": "none",
        "results": [],
    }
    assert _error(httpx.get(f"{url}/api/v1/monitor/drift"), 422)["field"] == "model"
    bad = httpx.get(f"{url}/api/v1/monitor/drift", params={"model": "flights", "limit": 0})
    assert _error(bad, 422)["field"] == "limit"


def test_the_remote_sdk_goes_through_the_routes(served: tuple[Context, str]) -> None:
    ctx, url = served
    ids = _log(ctx, 50)
    n = MAX_LABELS + 5  # more than one request's worth: the SDK splits them
    many = [ids[i % 50] if i < 50 else f"late-{i}" for i in range(n)]
    remote = ll.init(uri=url)
    try:
        assert remote.is_remote
        report = ll.monitor.log_labels(many, [1] * n, model="m")
        assert (report.received, report.matched, report.unmatched) == (n, 50, n - 50)
        assert (
            report.unmatched_ids[:2] == ["late-50", "late-51"] and len(report.unmatched_ids) == 20
        )
        # An unknown id in both of the SDK's requests is still listed once.
        split = ["ghost-both"] * (MAX_LABELS + 1)
        twice = ll.monitor.log_labels(split, [1] * len(split), rows=list(range(len(split))))
        assert (twice.unmatched, twice.unmatched_ids) == (MAX_LABELS + 1, ["ghost-both"])
        ll.monitor.log_business("refund", 3.0, request_id=ids[0], model="m")
        with pytest.raises(ll.InvalidInput, match="predicts numbers") as err:
            ll.monitor.log_labels(ids[:1], ["late"], model="m")
        assert err.value.field == "labels[0]"
        tail = [*many[: MAX_LABELS + 1], ids[1]]  # the bad label is in the second request
        with pytest.raises(ll.InvalidInput, match=f"label {MAX_LABELS + 1} is 'late'") as err:
            ll.monitor.log_labels(tail, [1] * (MAX_LABELS + 1) + ["late"], model="m")
        assert err.value.field == f"labels[{MAX_LABELS + 1}]"
        with pytest.raises(ll.InvalidInput, match="2 request ids and 1 labels"):
            ll.monitor.log_labels(["a", "b"], [1])
    finally:
        remote.close()
    embedded = ll.init(uri=ctx.settings.metadata_uri, artifacts=ctx.settings.artifacts_uri)
    try:
        assert set(ll.monitor.read_labels()["request_id"]) >= {ids[0], "late-50"}
        assert ll.monitor.read_business()["event"].tolist() == ["refund"]
    finally:
        embedded.close()


def _batch(ctx: Context) -> None:
    """Request b-1 of 3 rows (predictions 1, 0, 1) and s-1 of one row (prediction 1)."""
    with PredictionLogger(ctx, start=False) as logger:
        logger.log("b-1", "m", "1", [{"x": 1.0}, {"x": 2.0}, {"x": 3.0}], [1, 0, 1], 1.0)
        logger.log("s-1", "m", "1", [{"x": 4.0}], [1], 1.0)


def test_labels_name_the_rows_of_a_batch_request(served: tuple[Context, str]) -> None:
    ctx, url = served
    _batch(ctx)
    post = f"{url}/api/v1/monitor/labels"
    # One label for a request of 3 rows fits none of them: reported, compared with none.
    r = httpx.post(post, json={"request_ids": ["b-1", "s-1"], "labels": [1, 1], "model": "m"})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert (answer["matched"], answer["no_row"], answer["no_row_ids"]) == (1, 1, ["b-1"])
    assert len(answer["warnings"]) == 1 and "rows=" in answer["warnings"][0]
    [w] = ll.monitor.performance("m", window="day")
    assert (w.requests, w.rows, w.labelled, w.no_row_labels) == (2, 4, 1, 1)
    body = {"request_ids": ["b-1"] * 4, "labels": [1, 1, 0, 1], "rows": [0, 1, 2, 3], "model": "m"}
    answer = httpx.post(post, json=body).json()
    assert (answer["matched"], answer["out_of_range"]) == (3, 1)
    assert answer["out_of_range_rows"] == [{"request_id": "b-1", "row": 3, "rows": 3}]
    [w] = ll.monitor.performance("m", window="day")
    assert (w.labelled, w.no_row_labels, w.out_of_range_labels) == (4, 0, 1)
    assert w.metrics["accuracy"] == 0.5
    answer = httpx.post(post, json={"request_ids": ["b-1"], "labels": [0], "rows": "all"}).json()
    assert (answer["matched"], answer["warnings"]) == (1, [])
    assert ll.monitor.performance("m", window="day")[0].metrics["accuracy"] == 0.5


BAD_ROWS = [
    ({"rows": [-1]}, "rows[0]", "from 0"),
    ({"rows": [1.0]}, "rows[0]", "whole number"),
    ({"rows": [True]}, "rows[0]", "whole number"),
    ({"rows": ["1"]}, "rows[0]", "whole number"),
    ({"rows": [2**31]}, "rows[0]", "from 0"),
    ({"rows": [0, 1]}, "rows", "1 request ids and 2 rows"),
    ({"rows": "some"}, "rows", "'some'"),
    ({"rows": {"b-1": 0}}, "rows", "rows is dict"),
]


def test_bad_rows_are_422_naming_the_field(served: tuple[Context, str]) -> None:
    ctx, url = served
    _batch(ctx)
    for extra, field, words in BAD_ROWS:
        body = {"request_ids": ["b-1"], "labels": [1], **extra}
        error = _error(httpx.post(f"{url}/api/v1/monitor/labels", json=body), 422)
        assert error["field"] == field and words in error["message"], (extra, error)
    assert ll.monitor.read_labels().empty  # nothing stored from a rejected request


def test_the_remote_sdk_sends_rows(served: tuple[Context, str]) -> None:
    ctx, url = served
    _batch(ctx)
    n = MAX_LABELS + 4  # two requests; the rows of the second are cut where its ids are
    ids = ["ghost"] * MAX_LABELS + ["b-1", "b-1", "b-1", "s-1"]
    rows: list[int | None] = [0] * MAX_LABELS + [0, 2, 7, None]
    remote = ll.init(uri=url)
    try:
        report = ll.monitor.log_labels(ids, [1] * n, model="m", rows=rows)
        assert (report.received, report.matched, report.unmatched) == (n, 3, MAX_LABELS)
        assert report.out_of_range_rows == [("b-1", 7, 3)]
        assert report.duplicates == MAX_LABELS - 1 and len(report.warnings) == 1
        with pytest.raises(ll.InvalidInput, match=r"rows\[1\]") as err:
            ll.monitor.log_labels(["b-1", "b-1"], [1, 1], model="m", rows=[0, -1])
        assert err.value.field == "rows[1]"
        report = ll.monitor.log_labels(["b-1"], [0], model="m", rows="all")
        assert report.matched == 1
    finally:
        remote.close()
    embedded = ll.init(uri=ctx.settings.metadata_uri, artifacts=ctx.settings.artifacts_uri)
    try:
        [w] = ll.monitor.performance("m", window="day")
        assert (w.labelled, w.out_of_range_labels, w.metrics["accuracy"]) == (4, 1, 0.5)
    finally:
        embedded.close()
