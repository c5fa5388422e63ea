"""Loopline's REST API ``/api/v1`` against a real ``loopline server``, on SQLite and PostgreSQL:
the routes, bad input (always a 4xx naming the field), and eight writers at once.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

import loopline as ll
from loopline.core.artifacts import hash_bytes
from loopline.tracking.batch_codec import MAX_BATCH_POINTS
from loopline.tracking.validation import MAX_FLOAT
from tests.cli_run import popen
from tests.tracking.backends import count_points, database, server

LOGGER = Path(__file__).parents[1] / "tracking" / "metric_logger.py"
REPO = Path(__file__).parents[2]
WRITER = "0123456789abcdef"
DIGEST = "X-Loopline-Digest"
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """(server URL, database URI): one server per backend for the module."""
    folder = tmp_path_factory.mktemp(request.param)
    with database(request.param, folder) as db_uri, server(db_uri, folder) as url:
        yield url, db_uri


@pytest.fixture
def api(served: tuple[str, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{served[0]}/api/v1", timeout=120) as client:
        yield client


def _run(api: httpx.Client, **body: Any) -> dict[str, Any]:
    body.setdefault("experiment", f"exp-{uuid.uuid4().hex[:12]}")
    answer = api.post("/runs", json=body)
    assert answer.status_code == 201, answer.text
    run: dict[str, Any] = answer.json()
    return run


def _error(answer: httpx.Response, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    error: dict[str, Any] = answer.json()["error"]
    return error


def test_experiments_create_get_and_search(api: httpx.Client) -> None:
    name = f"churn-{uuid.uuid4().hex[:8]}"
    created = api.post("/experiments", json={"name": name, "tags": {"team": "risk"}})
    assert created.status_code == 201
    exp = created.json()
    assert exp["name"] == name and exp["tags"] == {"team": "risk"}
    assert api.get(f"/experiments/{exp['id']}").json() == exp
    assert api.get("/experiments/by-name", params={"name": name}).json() == exp
    again = _error(api.post("/experiments", json={"name": name}), 409)
    assert again["code"] == "CONFLICT" and name in again["message"]
    missing = _error(api.get("/experiments/by-name", params={"name": "no-such"}), 404)
    assert "'no-such'" in missing["message"]
    assert _error(api.get("/experiments/999999"), 404)["code"] == "NOT_FOUND"
    assert _error(api.get("/experiments/abc"), 422)["field"] == "experiment_id"
    found = api.post("/experiments/search", json={"name_like": f"{name[:10]}%"}).json()
    assert [e["name"] for e in found["experiments"]] == [name]
    page = api.post("/experiments/search", json={"max_results": 1}).json()
    assert len(page["experiments"]) == 1 and page["next_page_token"]


def test_run_create_get_end_delete_restore(api: httpx.Client) -> None:
    run = _run(api, name="base", tags={"team": "risk"}, user_id="ada", start_time=1_000)
    assert (run["status"], run["name"], run["start_time"], run["user_id"]) == (
        "RUNNING",
        "base",
        1_000,
        "ada",
    )
    assert api.get(f"/runs/{run['id']}").json() == run
    ended = api.patch(f"/runs/{run['id']}", json={"status": "FINISHED", "end_time": 2_000})
    assert (ended.json()["status"], ended.json()["end_time"]) == ("FINISHED", 2_000)
    bad_status = _error(api.patch(f"/runs/{run['id']}", json={"status": "DONE"}), 422)
    assert bad_status["field"] == "status"
    deleted = api.delete(f"/runs/{run['id']}").json()
    assert deleted["lifecycle_stage"] == "deleted"
    refused = _error(api.post(f"/runs/{run['id']}/log-batch", json={"params": {"a": 1}}), 422)
    assert "deleted" in refused["message"] and refused["field"] == "run_id"
    restored = api.post(f"/runs/{run['id']}/restore", headers=JSON)
    assert restored.json()["lifecycle_stage"] == "active"
    child = _run(api, experiment=run["experiment"], parent_run_id=run["id"])
    assert child["tags"]["mlflow.parentRunId"] == run["id"]


def test_an_encoded_slash_in_an_id_is_the_404_of_an_unknown_id(
    api: httpx.Client, served: tuple[str, str]
) -> None:
    # The ASGI server decodes %2F before routing: abc%2Fdef was a generic 'Not Found',
    # <id>%2F a 307 to <id> (a DELETE repeated on another run), <id>%2Fmetric-history the
    # history of <id>.
    run = _run(api)
    rid = run["id"]
    cases = [
        ("GET", "/runs/abc%2Fdef", "abc%2Fdef"),
        ("GET", "/runs/abc%2fdef/metric-history?key=m", "abc%2Fdef"),
        ("GET", f"/runs/{rid}%2F", f"{rid}%2F"),
        ("DELETE", f"/runs/{rid}%2F", f"{rid}%2F"),
        ("GET", f"/runs/{rid}%2Fmetric-history?key=m", f"{rid}%2Fmetric-history"),
        ("GET", "/runs/%2F", "%2F"),
    ]
    for method, path, shown in cases:
        error = _error(api.request(method, path), 404)
        assert error["code"] == "NOT_FOUND", (method, path)
        assert error["message"] == f"run '{shown}' does not exist", (method, path)
    assert api.get(f"/runs/{rid}").json()["lifecycle_stage"] == "active"  # not deleted
    with httpx.Client(base_url=served[0], timeout=60) as root:
        plain = root.get("/api/2.0/mlflow/logged-models/m-12")
        slashed = root.get("/api/2.0/mlflow/logged-models/m-1%2F2")
        assert plain.status_code == slashed.status_code == 404, slashed.text
        assert slashed.json() == {
            "error_code": "RESOURCE_DOES_NOT_EXIST",
            "message": "logged model 'm-1%2F2' does not exist",
        }
        assert plain.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
        # In an artifact path (a path parameter) %2F is still a slash.
        put = root.put("/api/2.0/mlflow-artifacts/artifacts/0/slash%2Fx.txt", content=b"hi")
        assert put.status_code == 200, put.text
        assert root.get("/api/2.0/mlflow-artifacts/artifacts/0/slash/x.txt").content == b"hi"


SIMPLE = [  # what a page of another site can make a browser send without asking first
    {},
    {"Content-Type": "text/plain"},
    {"Content-Type": "application/x-www-form-urlencoded"},
    {"Content-Type": "multipart/form-data; boundary=x"},
]


def test_restore_needs_a_json_content_type(api: httpx.Client) -> None:
    # Restore takes no body: a cross-site form (or fetch with mode "no-cors") restored a
    # deleted run on a server without --auth.
    run = _run(api)
    api.delete(f"/runs/{run['id']}")
    for headers in SIMPLE:
        error = _error(api.post(f"/runs/{run['id']}/restore", headers=headers), 422)
        assert error["field"] == "Content-Type", headers
        assert "application/json" in error["message"] + error["hint"]
    assert api.get(f"/runs/{run['id']}").json()["lifecycle_stage"] == "deleted"
    restored = api.post(f"/runs/{run['id']}/restore", headers=JSON)
    assert restored.status_code == 200 and restored.json()["lifecycle_stage"] == "active"


def test_no_post_route_takes_a_request_a_browser_sends_cross_site(
    api: httpx.Client, served: tuple[str, str]
) -> None:
    run = _run(api)
    api.delete(f"/runs/{run['id']}")
    paths = httpx.get(f"{served[0]}/openapi.json").json()["paths"]
    posts = [p for p, ops in paths.items() if "post" in ops and p.startswith("/api/")]
    assert len(posts) > 30
    for pattern in posts:
        path = pattern.replace("{run_id}", run["id"])
        for headers in SIMPLE:
            answer = api.post(f"{served[0]}{path}", content=b"{}", headers=headers)
            assert answer.status_code in (400, 415, 422), (path, headers, answer.text)
            if not headers:
                answer = api.post(f"{served[0]}{path}")  # no body at all
                assert answer.status_code in (400, 415, 422), (path, answer.text)
    assert api.get(f"/runs/{run['id']}").json()["lifecycle_stage"] == "deleted"


def test_log_batch_columns_rows_and_history(api: httpx.Client) -> None:
    run = _run(api)
    rid = run["id"]
    columns = {
        "keys": ["loss", "loss", "loss", "acc"],
        "values": [0.5, "NaN", "Infinity", 1],
        "steps": [0, 1, 2, 0],
        "timestamps": [10, 11, 12, 10],
    }
    body = {"metrics": columns, "params": {"lr": 0.1, "model": "lgbm"}, "tags": {"t": "x"}}
    answer = api.post(f"/runs/{rid}/log-batch", content=orjson.dumps(body), headers=JSON)
    assert answer.json() == {"stored": 4, "duplicate": False}
    rows = [["loss", "-Infinity", 3, 13], ["acc", 0.75, 1]]
    assert api.post(f"/runs/{rid}/log-batch", json={"metrics": rows}).json()["stored"] == 2
    history = api.get(f"/runs/{rid}/metric-history", params={"key": "loss"}).json()
    assert history["steps"] == [0, 1, 2, 3] and history["timestamps"] == [10, 11, 12, 13]
    assert history["values"] == [0.5, "NaN", MAX_FLOAT, -MAX_FLOAT]
    acc = api.get(f"/runs/{rid}/metric-history", params={"key": "acc"}).json()
    assert acc["values"] == [1.0, 0.75] and acc["timestamps"][1] > 13  # defaulted to now
    stored = api.get(f"/runs/{rid}").json()
    assert stored["params"] == {"lr": "0.1", "model": "lgbm"} and stored["tags"]["t"] == "x"
    assert stored["latest_metrics"]["loss"] == {"step": 3, "timestamp": 13, "value": -MAX_FLOAT}
    search = api.post(
        "/runs/search",
        json={
            "experiments": [run["experiment"]],
            "filter": "params.model = 'lgbm'",
            "order_by": ["metrics.acc DESC"],
        },
    ).json()
    assert [r["id"] for r in search["runs"]] == [rid] and search["next_page_token"] is None


def test_log_batch_answers_the_points_it_stored_now_not_the_points_sent(api: httpx.Client) -> None:
    # The same run/key/step/timestamp/value is stored once (as MLflow stores it), so a batch
    # sent again without writer/seq stores nothing and must say so; a partly new one counts
    # its new points only.
    rid = _run(api)["id"]
    batch = {"keys": ["loss"] * 3 + ["acc"], "values": [0.5, 0.4, 0.3, 0.9]}
    batch |= {"steps": [0, 1, 2, 0], "timestamps": [10, 11, 12, 10]}
    url = f"/runs/{rid}/log-batch"
    assert api.post(url, json={"metrics": batch}).json() == {"stored": 4, "duplicate": False}
    assert api.post(url, json={"metrics": batch}).json() == {"stored": 0, "duplicate": False}
    partly = [["loss", 0.3, 2, 12], ["loss", 0.2, 3, 13], ["loss", 0.2, 3, 13], ["acc", 0.8, 0, 10]]
    assert api.post(url, json={"metrics": partly}).json() == {"stored": 2, "duplicate": False}
    history = api.get(f"/runs/{rid}/metric-history", params={"key": "loss"}).json()
    assert history["steps"] == [0, 1, 2, 3] and history["values"] == [0.5, 0.4, 0.3, 0.2]
    acc = api.get(f"/runs/{rid}/metric-history", params={"key": "acc"}).json()
    assert acc["values"] == [0.9, 0.8]


def test_a_batch_is_applied_once_per_writer_and_seq(api: httpx.Client, served: Any) -> None:
    rid = _run(api)["id"]

    def send(seq: int, n: int) -> dict[str, Any]:
        metrics = {
            "keys": ["m"] * n,
            "values": [float(seq)] * n,
            "steps": list(range(n)),
            "timestamps": [seq] * n,
        }
        body = {"metrics": metrics, "writer": WRITER, "seq": seq}
        result: dict[str, Any] = api.post(f"/runs/{rid}/log-batch", json=body).json()
        return result

    assert send(1, 100) == {"stored": 100, "duplicate": False}
    assert send(1, 100) == {"stored": 0, "duplicate": True}  # a retry after a lost answer
    assert send(2, 50) == {"stored": 50, "duplicate": False}
    assert send(1, 100) == {"stored": 0, "duplicate": True}  # a late copy of an older batch
    other = {"metrics": [["m", 9.0, 0, 99]], "writer": "fedcba9876543210", "seq": 1}
    assert api.post(f"/runs/{rid}/log-batch", json=other).json()["stored"] == 1
    counts, dupes = count_points(served[1], [rid])
    assert counts == {rid: 151} and dupes == []
    assert api.get(f"/runs/{rid}").json()["tags"][f"loopline.ingest.{WRITER}"] == "2"


def test_a_batch_sent_again_without_a_batch_id_stores_each_point_once(
    api: httpx.Client, served: Any
) -> None:
    rid = _run(api)["id"]
    body = {"metrics": {"keys": ["m", "m", "n"], "values": [1, "NaN", 2], "timestamps": [5] * 3}}
    for _ in range(3):  # e.g. a client of its own that retries after a timeout
        assert api.post(f"/runs/{rid}/log-batch", json=body).status_code == 200
    body["metrics"]["values"] = [1, 3, 2]  # one new value at the same step and timestamp
    assert api.post(f"/runs/{rid}/log-batch", json=body).status_code == 200
    counts, _dupes = count_points(served[1], [rid])
    assert counts == {rid: 4}
    history = api.get(f"/runs/{rid}/metric-history", params={"key": "m"}).json()
    assert history["values"] == [1.0, "NaN", 3.0]


@pytest.mark.parametrize(
    ("body", "status", "field", "message"),
    [
        (b"{not json", 422, "body", "not valid JSON at position 1"),
        (b"[1, 2]", 422, "body", "must be a JSON object"),
        (b'{"metric": []}', 422, "metric", "unknown field"),
        (b'{"metrics": {"keys": ["a", "b"], "values": [1]}}', 422, "metrics.values", "as long"),
        (b'{"metrics": {"keys": ["a"]}}', 422, "metrics.values", "required"),
        (
            b'{"metrics": {"keys": ["a", "b"], "values": [1, "x"]}}',
            422,
            "metrics.values[1]",
            "'x' is not a number",
        ),
        (
            b'{"metrics": {"keys": ["a"], "values": [1], "steps": [true]}}',
            422,
            "metrics.steps[0]",
            "not an integer",
        ),
        (
            b'{"metrics": {"keys": ["a/../b"], "values": [1]}}',
            422,
            "metrics.keys[0]",
            "'..' segment",
        ),
        (
            b'{"metrics": {"keys": ["a\\u0007"], "values": [1]}}',
            422,
            "metrics.keys[0]",
            "control character",
        ),
        (b'{"metrics": [["a", 1, 2, 3, 4]]}', 422, "metrics[0]", "[key, value, step, timestamp]"),
        (b'{"metrics": [[[], 1]]}', 422, "metrics[0][0]", "must be a non-empty string"),
        (
            b'{"metrics": {"keys": [["a"]], "values": [1]}}',
            422,
            "metrics.keys[0]",
            "must be a non-empty string",
        ),
        (b'{"params": {"../x": 1}}', 422, "param", "'..' segment"),
        (b'{"tags": {"x": "1"}, "writer": "XYZ", "seq": 1}', 422, "writer", "hex"),
        (b'{"params": {"a": {"b": 1}}}', 422, "params.a", "a string or a number"),
        (b'{"tags": {"t": 5}}', 422, "tags.t", "a string or null"),
        (b'{"writer": "0123456789abcdef", "seq": 0}', 422, "seq", "positive"),
        (
            b'{"tags": {"loopline.ingest.0123456789abcdef": "5"}}',
            422,
            "tags.loopline.ingest.0123456789abcdef",
            "reserved",
        ),
    ],
    ids=[
        "malformed-json",
        "not-an-object",
        "unknown-field",
        "columns-of-different-lengths",
        "values-missing",
        "value-not-a-number",
        "bool-step",
        "dotdot-key",
        "control-character-key",
        "row-too-long",
        "list-as-row-key",
        "list-as-column-key",
        "dotdot-param",
        "bad-writer",
        "object-param",
        "number-tag",
        "seq-zero",
        "reserved-tag",
    ],
)
def test_bad_log_batch_is_a_4xx_naming_the_field(
    api: httpx.Client, body: bytes, status: int, field: str, message: str
) -> None:
    rid = _run(api)["id"]
    error = _error(api.post(f"/runs/{rid}/log-batch", content=body, headers=JSON), status)
    assert error["field"] == field
    assert message in error["message"]
    assert api.get(f"/runs/{rid}").json()["params"] == {}  # nothing was written


def test_a_log_batch_of_many_unknown_fields_names_ten_not_all(api: httpx.Client) -> None:
    # The message listed every one: 100,000 unknown keys came back as a 1 MB error.
    rid = _run(api)["id"]
    keys = b",".join(b'"k%05d": 1' % i for i in range(100_000))
    for body in (b"{" + keys + b"}", b'{"metrics": {' + keys + b"}}"):
        answer = api.post(f"/runs/{rid}/log-batch", content=body, headers=JSON)
        error = _error(answer, 422)
        assert "k00000, k00001" in error["message"]
        assert "(and 99990 more)" in error["message"]
        assert len(answer.content) < 2000


#: (metrics, the field named): integers past 64 bits, which orjson reads as floats when
#: they do not fit in 64 bits unsigned either ("-9.2e18 is not an integer" was said).
HUGE_INTEGERS = [
    (b'{"keys": ["a"], "values": [1], "steps": [-9223372036854775809]}', "metrics.steps[0]"),
    (b'{"keys": ["a"], "values": [1], "steps": [9223372036854775808]}', "metrics.steps[0]"),
    (
        b'{"keys": ["a", "b"], "values": [1, 2], "timestamps": [5, 18446744073709551616]}',
        "metrics.timestamps[1]",
    ),
    (b'[["a", 1, 9223372036854775808]]', "metrics[0][2]"),
    (b'[["a", 1, 0, -9223372036854775809]]', "metrics[0][3]"),
]


@pytest.mark.parametrize(("metrics", "field"), HUGE_INTEGERS, ids=[f for _m, f in HUGE_INTEGERS])
def test_a_step_or_timestamp_past_64_bits_is_named_as_out_of_range(
    api: httpx.Client, metrics: bytes, field: str
) -> None:
    rid = _run(api)["id"]
    body = b'{"metrics": ' + metrics + b', "params": {"p": "1"}}'
    error = _error(api.post(f"/runs/{rid}/log-batch", content=body, headers=JSON), 422)
    assert error["field"] == field, error
    assert "out of the 64-bit integer range" in error["message"], error
    assert "not an integer" not in error["message"], error
    run = api.get(f"/runs/{rid}").json()
    assert run["params"] == {} and run["latest_metrics"] == {}  # nothing was written
    edges = b"[-9223372036854775808, 9223372036854775807]"
    edge = b'{"metrics": {"keys": ["a", "a"], "values": [1, 2], "steps": ' + edges + b"}}"
    assert api.post(f"/runs/{rid}/log-batch", content=edge, headers=JSON).status_code == 200


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_a_log_batch_not_sent_as_json_is_refused(
    api: httpx.Client, content_type: str | None
) -> None:
    # A web page on another site can make a browser send such a body without asking the
    # server first: read as JSON anyway, it wrote to the runs of a server without --auth.
    rid = _run(api)["id"]
    body = b'{"params": {"from": "elsewhere"}, "tags": {"a": "="}}'
    request = api.build_request("POST", f"/runs/{rid}/log-batch", content=body)
    if content_type:
        request.headers["Content-Type"] = content_type
    error = _error(api.send(request), 422)
    assert error["field"] == "Content-Type" and "application/json" in error["hint"]
    stored = api.get(f"/runs/{rid}").json()
    assert stored["params"] == {} and "a" not in stored["tags"]
    sent = api.post(f"/runs/{rid}/log-batch", content=body, headers=JSON)
    assert sent.status_code == 200, sent.text  # the same body as JSON is taken


def test_bad_requests_elsewhere_are_4xx_with_a_message(api: httpx.Client) -> None:
    unknown = _error(api.get("/runs/0000abc"), 404)
    assert unknown["message"] == "run '0000abc' does not exist" and unknown["hint"]
    assert _error(api.post("/runs/0000abc/log-batch", json={}), 404)["code"] == "NOT_FOUND"
    assert _error(api.get("/runs/0000abc/metric-history", params={"key": "x"}), 404)
    run = _run(api)
    bad_filter = _error(
        api.post("/runs/search", json={"filter": "metrics.auc > 0.8 and params.x == 'a'"}), 422
    )
    assert bad_filter["field"] == "filter"
    assert "position 32" in bad_filter["message"] and "^" in bad_filter["message"]
    huge = "x" * (10 * 1024 * 1024)
    too_long = _error(
        api.post(f"/runs/{run['id']}/tags", json={"key": "notes", "value": huge}), 422
    )
    assert too_long["field"] == "tags.notes"
    assert "over the limit of 8000 (MAX_TAG_VALUE_LENGTH)" in too_long["message"]
    for key, why in (
        ("a/../b", "'..' segment"),
        ("a\tb", "control character"),
        ("/abs", "absolute"),
    ):
        error = _error(api.post(f"/runs/{run['id']}/tags", json={"key": key, "value": "v"}), 422)
        assert why in error["message"] and error["field"] == "tag"
    missing_field = _error(api.post(f"/runs/{run['id']}/tags", json={"value": "v"}), 422)
    assert missing_field["field"] == "key"
    extra = _error(api.post("/runs", json={"experiment": "e", "colour": "red"}), 422)
    assert extra["field"] == "colour"
    big = _error(api.post("/runs/search", json={"max_results": 50_001}), 422)
    assert big["field"] == "max_results"
    token = _error(api.post("/runs/search", json={"page_token": "zzz"}), 422)
    assert token["field"] == "page_token"
    no_exp = _error(api.post("/runs/search", json={"experiments": ["nope-nope"]}), 404)
    assert "'nope-nope'" in no_exp["message"]
    too_many = {
        "metrics": {"keys": ["k"] * (MAX_BATCH_POINTS + 1), "values": [1] * (MAX_BATCH_POINTS + 1)}
    }
    over = _error(api.post(f"/runs/{run['id']}/log-batch", json=too_many), 422)
    assert "MAX_BATCH_POINTS" in over["message"]


def test_tags_and_inputs(api: httpx.Client) -> None:
    rid = _run(api)["id"]
    assert api.post(f"/runs/{rid}/tags", json={"key": "stage", "value": "dev"}).status_code == 204
    assert api.post(f"/runs/{rid}/tags", json={"key": "stage", "value": "prod"}).status_code == 204
    assert api.get(f"/runs/{rid}").json()["tags"]["stage"] == "prod"
    assert api.delete(f"/runs/{rid}/tags", params={"key": "stage"}).status_code == 204
    assert "stage" not in api.get(f"/runs/{rid}").json()["tags"]
    gone = _error(api.delete(f"/runs/{rid}/tags", params={"key": "stage"}), 404)
    assert "no tag 'stage'" in gone["message"]
    item = {
        "kind": "dataset",
        "name": "churn",
        "version": "3",
        "digest": "ab" * 32,
        "context": "training",
    }
    assert api.post(f"/runs/{rid}/inputs", json={"inputs": [item]}).status_code == 204
    assert api.post(f"/runs/{rid}/inputs", json={"inputs": [item]}).status_code == 204
    assert api.get(f"/runs/{rid}").json()["inputs"] == [item]
    clash = _error(
        api.post(f"/runs/{rid}/inputs", json={"inputs": [{**item, "digest": "cd"}]}), 409
    )
    assert "digest" in clash["message"]
    empty = _error(api.post(f"/runs/{rid}/inputs", json={"inputs": [{**item, "name": ""}]}), 422)
    assert empty["field"] == "inputs.0.name"


def test_artifacts_upload_list_download(api: httpx.Client) -> None:
    rid = _run(api)["id"]
    data = bytes(range(256)) * 1000
    put = api.put(f"/runs/{rid}/artifacts/content", params={"path": "model/w.bin"}, content=data)
    assert put.json() == {"path": "model/w.bin", "digest": hash_bytes(data), "size": len(data)}
    api.put(f"/runs/{rid}/artifacts/content", params={"path": "notes.txt"}, content=b"hi")
    listed = api.get(f"/runs/{rid}/artifacts").json()["artifacts"]
    assert [a["path"] for a in listed] == ["model/w.bin", "notes.txt"]
    under = api.get(f"/runs/{rid}/artifacts", params={"prefix": "model"}).json()["artifacts"]
    assert [a["path"] for a in under] == ["model/w.bin"]
    got = api.get(f"/runs/{rid}/artifacts/content", params={"path": "model/w.bin"})
    assert got.content == data and got.headers["x-loopline-digest"] == hash_bytes(data)
    missing = _error(api.get(f"/runs/{rid}/artifacts/content", params={"path": "nope"}), 404)
    assert "no artifact 'nope'" in missing["message"]
    climb = _error(
        api.put(f"/runs/{rid}/artifacts/content", params={"path": "../etc/x"}, content=b"x"), 422
    )
    assert climb["field"] == "artifact_path"
    assert _error(api.get("/runs/0000abc/artifacts"), 404)["code"] == "NOT_FOUND"


def test_an_upload_whose_digest_header_is_wrong_is_refused_and_not_stored(
    api: httpx.Client,
) -> None:
    rid = _run(api)["id"]
    url = f"/runs/{rid}/artifacts/content"
    wrong = _error(
        api.put(
            url, params={"path": "x.txt"}, content=b"abc", headers={DIGEST: hash_bytes(b"abd")}
        ),
        422,
    )
    assert wrong["field"] == DIGEST and hash_bytes(b"abc") in wrong["message"]
    bad = _error(
        api.put(url, params={"path": "y.txt"}, content=b"abc", headers={DIGEST: "abc"}), 422
    )
    assert bad["field"] == DIGEST and "'abc' is not a BLAKE3 digest" in bad["message"]
    assert api.get(f"/runs/{rid}/artifacts").json()["artifacts"] == []
    right = api.put(
        url, params={"path": "x.txt"}, content=b"abc", headers={DIGEST: hash_bytes(b"abc")}
    )
    assert right.status_code == 200 and right.json()["digest"] == hash_bytes(b"abc")
    assert api.get(url, params={"path": "x.txt"}).content == b"abc"


@pytest.mark.parametrize(
    "body",
    [
        {"run_id": "0000abc", "key": "loss", "value": 0.5, "timestamp": 1, "step": 0},
        {"key": "loss", "value": 0.5, "timestamp": 1, "step": 0},
        {"run_id": "RUN", "key": "a/../b", "value": 0.5, "timestamp": 1, "step": 0},
        {"run_id": "RUN", "key": "loss", "value": 0.5, "timestamp": 1, "step": 3},
        {"run_id": "RUN", "key": "loss", "value": 7, "step": 4},
    ],
    ids=["unknown-run", "no-run-id", "dotdot-key", "float", "int-value-default-timestamp"],
)
def test_mlflow_log_metric_fast_path_answers_like_the_fastapi_route(
    served: tuple[str, str], api: httpx.Client, body: dict[str, Any]
) -> None:
    # An unknown field sends the same request down the FastAPI route instead.
    rid = _run(api)["id"]
    fast = {k: rid if v == "RUN" else v for k, v in body.items()}
    slow = {**fast, "extra_field_for_the_slow_path": 1}
    url = f"{served[0]}/api/2.0/mlflow/runs/log-metric"
    answers = [httpx.post(url, json=b, timeout=60) for b in (fast, slow)]
    assert answers[0].status_code == answers[1].status_code
    assert answers[0].json() == answers[1].json()
    if answers[0].status_code == 200:
        # Both paths stored the point; the same point twice is kept once (as MLflow keeps
        # it), so a sent timestamp gives one point, a defaulted one a point per millisecond.
        history = api.get(f"/runs/{rid}/metric-history", params={"key": "loss"}).json()
        stamps = history["timestamps"]
        assert len(stamps) == (1 if "timestamp" in body else len(set(stamps))) and stamps
        assert history["values"] == [float(body["value"])] * len(stamps)
        assert history["steps"] == [body["step"]] * len(stamps)
    else:
        assert answers[0].json()["error_code"] in (
            "RESOURCE_DOES_NOT_EXIST",
            "INVALID_PARAMETER_VALUE",
        )


def test_mlflow_run_search_of_no_experiment_finds_no_run(
    served: tuple[str, str], api: httpx.Client
) -> None:
    # As MLflow's server: it searches the experiments it is given (Loopline's own
    # /api/v1 search takes none to mean all of them).
    run = _run(api)
    url = f"{served[0]}/api/2.0/mlflow/runs/search"
    for body in ({}, {"experiment_ids": []}):
        answer = httpx.post(url, json=body, timeout=60)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"runs": []}
    mine = {"experiment_ids": [str(run["experiment_id"])], "max_results": 1000}
    found = httpx.post(url, json=mine, timeout=60).json()["runs"]
    assert run["id"] in [r["info"]["run_id"] for r in found]


def test_openapi_describes_the_routes(api: httpx.Client, served: tuple[str, str]) -> None:
    spec = httpx.get(f"{served[0]}/openapi.json").json()
    paths = spec["paths"]
    expected = {
        "/api/v1/experiments": {"post"},
        "/api/v1/experiments/{experiment_id}": {"get"},
        "/api/v1/experiments/by-name": {"get"},
        "/api/v1/experiments/search": {"post"},
        "/api/v1/runs": {"post"},
        "/api/v1/runs/search": {"post"},
        "/api/v1/runs/{run_id}": {"get", "patch", "delete"},
        "/api/v1/runs/{run_id}/restore": {"post"},
        "/api/v1/runs/{run_id}/log-batch": {"post"},
        "/api/v1/runs/{run_id}/metric-history": {"get"},
        "/api/v1/runs/{run_id}/tags": {"post", "delete"},
        "/api/v1/runs/{run_id}/inputs": {"post"},
        "/api/v1/runs/{run_id}/artifacts": {"get"},
        "/api/v1/runs/{run_id}/artifacts/content": {"get", "put"},
    }
    for path, methods in expected.items():
        assert methods <= set(paths[path]), path
    batch = paths["/api/v1/runs/{run_id}/log-batch"]["post"]
    schema = batch["requestBody"]["content"]["application/json"]["schema"]
    assert {"metrics", "params", "tags", "writer", "seq"} <= set(schema["properties"])
    assert "LogBatchResponse" in str(batch["responses"]["200"])
    assert {"RunModel", "ExperimentModel", "RunPageModel"} <= set(spec["components"]["schemas"])


def test_eight_processes_log_through_the_server(served: tuple[str, str], tmp_path: Path) -> None:
    url, db_uri = served
    workers, steps, keys = 8, 300, 40
    go = tmp_path / "go"
    procs = [
        popen(
            [
                sys.executable,
                str(LOGGER),
                "concurrent",
                url,
                "unused",
                str(go),
                str(i),
                str(steps),
                str(keys),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        for i in range(workers)
    ]
    for proc in procs:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "READY", proc.stderr and proc.stderr.read()
    go.touch()  # all eight start logging at the same moment
    started = time.monotonic()
    run_ids = []
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
        run_ids.append(out.strip().splitlines()[-1])
    assert time.monotonic() - started < 240
    singles = len(range(0, steps, 50))
    counts, dupes = count_points(db_uri, run_ids)
    assert counts == {rid: steps * keys + singles for rid in run_ids}
    assert dupes == []
    ll.init(uri=url)
    page = ll.search_runs("concurrent", max_results=100)
    assert sorted(r.id for r in page) == sorted(run_ids)
    assert {r.status for r in page} == {"FINISHED"}
    assert len({r.experiment_id for r in page}) == 1  # the racing creations made one experiment
    for run in page:
        index = int((run.name or "").split("-")[1])
        assert run.params == {"worker": str(index)}
        assert run.metrics["m0"] == index * 1e6 + (steps - 1) * 100
