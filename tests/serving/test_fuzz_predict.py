"""Schemathesis against the OpenAPI description of ``loopline serve`` (``/openapi.json``):
no 5xx, every answer matches its declared schema.

A real server process serves one deployed model; the description types the request body
by that model's signature, so the fuzzer sends both rows that fit it and, in negative
mode, rows that break it (which must be 4xx naming the field). Bounded and derandomised.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance

import loopline as ll
from tests.serving.helpers import FEATURES, good_model, register, row, serving, toy_data

#: Generated requests per operation and mode; enough to reach every field, small for CI.
MAX_EXAMPLES = 40
#: A raw body is taken only when sent as JSON (415 otherwise).
JSON = {"Content-Type": "application/json"}

OPERATIONS = [
    ("GET", "/health", "positive"),
    ("GET", "/metrics", "positive"),
    ("GET", "/v1/models", "positive"),
    ("GET", "/v1/models/churn", "positive"),
    ("POST", "/v1/models/churn/predict", "positive"),
    ("POST", "/v1/models/churn/predict", "negative"),
    ("POST", "/v1/models/churn/feedback", "positive"),
    ("POST", "/v1/models/churn/feedback", "negative"),
]


@dataclass(frozen=True)
class Served:
    """The running server's URL and its description."""

    url: str
    schema: schemathesis.BaseSchema


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`loopline serve` with model "churn" deployed; its own description, loaded by URL."""
    folder: Path = tmp_path_factory.mktemp("fuzz-serve")
    ctx = ll.init(uri=f"sqlite:///{folder / 'meta.db'}", artifacts=str(folder / "artifacts"))
    try:
        data = toy_data()
        ll.deploy("churn", register(good_model(data), "churn", data))
        with serving(ctx, "--no-log-predictions") as url:
            yield Served(url, schemathesis.openapi.from_url(f"{url}/openapi.json"))
    finally:
        ctx.close()


def test_the_description_types_the_body_by_the_signature(served: Served) -> None:
    raw = served.schema.raw_schema
    body = raw["paths"]["/v1/models/churn/predict"]["post"]["requestBody"]
    record = body["content"]["application/json"]["schema"]["oneOf"][0]["properties"]
    columns = record["instances"]["items"]["oneOf"][0]
    assert columns["required"] == FEATURES
    assert columns["properties"] == {
        "a": {"type": "number"},
        "b": {"type": "number"},
        "bucket": {"type": "integer"},
    }
    answer = httpx.post(f"{served.url}/v1/models/churn/predict", json={"instances": [row()]})
    assert answer.status_code == 200


@pytest.mark.slow
@pytest.mark.parametrize(
    ("method", "path", "mode"), OPERATIONS, ids=[f"{m} {p} {g}" for m, p, g in OPERATIONS]
)
def test_the_prediction_api_never_fails_and_answers_its_schema(
    served: Served, method: str, path: str, mode: str
) -> None:
    operation = served.schema[path][method]
    strategy = operation.as_strategy(
        GenerationMode.NEGATIVE if mode == "negative" else GenerationMode.POSITIVE
    )

    @given(case=strategy)
    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: schemathesis.Case) -> None:
        case.call_and_validate(
            base_url=served.url, checks=[not_a_server_error, response_schema_conformance]
        )

    fuzz()


def test_an_oversized_body_is_a_413_naming_the_limit_and_the_setting(served: Served) -> None:
    for path in ("/v1/models/churn/predict", "/v1/models/churn/feedback"):
        answer = httpx.post(
            f"{served.url}{path}", content=b" " * (17 * 1024 * 1024), headers=JSON, timeout=60
        )
        assert answer.status_code == 413
        error = answer.json()["error"]
        assert error["field"] == "body" and "16 MB" in error["message"]
        assert "--max-body-mb" in error["hint"] and "LOOPLINE_SERVE_MAX_BODY_MB" in error["hint"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (rb'{"instances": [{"a": 0.5, "b": 0.5, "bucket": 1, "\udfff": 3}]}', "instances[0]"),
        (rb'{"request_id": "r", "label": "\ud800"}', "label"),
        (b'{"instances": [{"a": "\xed\xa0\x80", "b": 0.5, "bucket": 1}]}', "body"),
        (b'{"instances": [{"\xed\xa0\x80": 1, "b": 0.5, "bucket": 1}]}', "body"),
    ],
    ids=[
        "lone-surrogate-key",
        "lone-surrogate-label",
        "utf8-surrogate-value",
        "utf8-surrogate-key",
    ],
)
def test_text_that_is_not_unicode_is_a_400_naming_where_never_a_500(
    served: Served, body: bytes, field: str
) -> None:
    """Found by a fuzzing audit: the JSON escape \\udfff (or a surrogate encoded in UTF-8)
    was parsed into a string that the error body, which echoes it, could not encode."""
    for path in ("/v1/models/churn/predict", "/v1/models/churn/feedback"):
        answer = httpx.post(f"{served.url}{path}", content=body, headers=JSON)
        assert answer.status_code == 400, (path, answer.text)
        error = answer.json()["error"]
        assert error["code"] == "MALFORMED_JSON" and error["field"] == field, error
    fine = httpx.post(
        f"{served.url}/v1/models/churn/predict",
        content=rb'{"instances": [{"a": 0.5, "b": NaN, "bucket": 1, "\ud83d\ude00": 1}]}',
        headers=JSON,
    )
    assert fine.status_code == 422 and fine.json()["error"]["field"] == "b"  # a pair is text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"instances": [row()], "params": {"a": 1}}, "params"),
        ({"instances": [row()], "extra": 1}, "extra"),
        ({"instances": [row()], "key": True}, "key"),
        ({"instances": [row()], "key": 7}, "key"),
    ],
    ids=["params", "extra", "key-bool", "key-number"],
)
def test_the_server_answers_its_own_schema_for_the_top_level_fields(
    served: Served, body: dict[str, object], field: str
) -> None:
    """Found by a fuzzing audit: the description declares additionalProperties: false and a
    string key, but any extra field was ignored and a key of true or 7 taken (200)."""
    answer = httpx.post(f"{served.url}/v1/models/churn/predict", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] == field


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("POST", "/v1/models/churn", "GET, HEAD"),
        ("DELETE", "/v1/models/churn", "GET, HEAD"),
        ("GET", "/v1/models/churn/feedback", "POST"),
        ("GET", "/v1/models/churn/predict", "POST"),
        ("PUT", "/v1/models/nosuch/predict", "POST"),
        ("POST", "/v1/models/", "GET, HEAD"),
    ],
    ids=lambda v: v.replace("/v1/models", "") or "list" if isinstance(v, str) else None,
)
def test_a_wrong_method_is_a_405_with_the_allowed_one(
    served: Served, method: str, path: str, allow: str
) -> None:
    """Found by a fuzzing audit: POST /v1/models/churn answered 404 "model 'churn' is not
    served here" (it is), and GET .../feedback 404 "model 'churn/feedback' ..."."""
    answer = httpx.request(method, f"{served.url}{path}", json={"instances": [row()]})
    assert answer.status_code == 405, answer.text
    assert answer.headers["allow"] == allow
    error = answer.json()["error"]
    assert error["code"] == "METHOD_NOT_ALLOWED" and allow in error["message"], error


def test_a_path_under_a_model_that_is_no_endpoint_is_a_404_saying_so(served: Served) -> None:
    for path in ("/v1/models/churn/explain", "/v1/models/churn/predict/", "/v1/models/a/b/c"):
        answer = httpx.post(f"{served.url}{path}", json={"instances": [row()]})
        assert answer.status_code == 404, answer.text
        assert answer.json()["error"]["message"] == f"no endpoint {path}"
    assert httpx.get(f"{served.url}/v1/models/churn").json()["name"] == "churn"
    assert "churn" in httpx.get(f"{served.url}/v1/models/").json()  # was a 404
