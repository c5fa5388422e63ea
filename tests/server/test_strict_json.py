"""JSON bodies must be text: no lone UTF-16 surrogate, no bytes that are not UTF-8.

Before, Python's parser let ``"\\ud800"`` (and the raw bytes ``ED A0 80``) through as a lone
surrogate, which failed where it was encoded: a 500 on ~40 fields of the tracking server.
"""

from __future__ import annotations

import json

import httpx
import pytest

from loopline.server.responses import OrjsonResponse
from loopline.server.strict_json import loads_text


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"a": "\\ud83d\\ude00"}', {"a": "\U0001f600"}),  # a pair is one character
        (b'{"a": "\\\\ud800"}', {"a": "\\ud800"}),  # an escaped backslash: plain text
        (b'{"a": NaN, "b": -Infinity}', {"a": float("nan"), "b": float("-inf")}),
        ('{"a": "é😀"}'.encode(), {"a": "é😀"}),
    ],
)
def test_text_is_read_as_before(body: bytes, expected: dict[str, object]) -> None:
    assert json.dumps(loads_text(body)) == json.dumps(expected)


@pytest.mark.parametrize(
    ("body", "pos", "said"),
    [
        (b'{"a": "\\ud800"}', 7, "lone UTF-16 surrogate (\\ud800)"),
        (b'{"a": "x\\uDFFF"}', 8, "lone UTF-16 surrogate (\\uDFFF)"),  # a low half alone
        (b'{"a": "\\ud800\\u0041"}', 7, "(\\ud800)"),  # a high half before no low one
        (b'{"a": "\\ude00\\ud83d"}', 7, "(\\ude00)"),  # the halves the wrong way round
        (b'{"a": "\\\\\\ud800"}', 9, "(\\ud800)"),  # an escaped backslash, then the escape
        (b'{"a": "\xed\xa0\x80"}', 7, "byte 7 is not UTF-8"),
        (b'{"a": "\xff"}', 7, "byte 7 is not UTF-8"),
    ],
)
def test_what_is_not_text_is_a_decode_error_at_its_place(body: bytes, pos: int, said: str) -> None:
    with pytest.raises(json.JSONDecodeError) as info:
        loads_text(body)
    assert said in info.value.msg
    assert info.value.pos == pos


def test_an_answer_quoting_a_lone_surrogate_still_renders() -> None:
    body = OrjsonResponse({"message": "run 'a\ud800' does not exist"}).body
    assert json.loads(body) == {"message": "run 'a\ud800' does not exist"}


# Requests that answered 500 (the fuzzing of the tracking server), one per router.
NOT_TEXT = [
    ("/api/2.0/mlflow/runs/log-parameter", '{"run_id": "abc\\ud800", "key": "p", "value": "v"}'),
    ("/api/2.0/mlflow/experiments/create", '{"name": "x\\udfff"}'),
    (
        "/api/2.0/mlflow/runs/search",
        '{"experiment_ids": ["0"], "filter": "params.a = \'\\ud800\'"}',
    ),
    ("/api/2.0/mlflow/registered-models/create", '{"name": "m\\ud800"}'),
    ("/api/v1/experiments", '{"name": "x\\ud800"}'),
    ("/api/v1/runs/search", '{"experiments": ["0"], "order_by": ["params.\\ud800"]}'),
]


def test_the_server_answers_a_lone_surrogate_with_a_client_error(server_url: str) -> None:
    wrong = []
    for path, body in NOT_TEXT:
        for content in (
            body.encode(),  # the escape
            body.replace("\\ud800", "\ud800").encode("utf-8", "surrogatepass"),  # raw bytes
        ):
            answer = httpx.post(
                server_url + path, content=content, headers={"content-type": "application/json"}
            )
            said = answer.text
            if answer.status_code not in (400, 422) or not (
                "lone UTF-16 surrogate" in said or "is not UTF-8" in said
            ):
                wrong.append((path, content, answer.status_code, said[:200]))
    assert not wrong


def test_a_body_of_too_many_values_is_refused_before_any_model_sees_it() -> None:
    from loopline.server.strict_json import MAX_JSON_VALUES, count_values

    fits = {"ids": list(range(MAX_JSON_VALUES))}
    assert count_values(fits) == MAX_JSON_VALUES + 1
    with pytest.raises(json.JSONDecodeError) as info:
        loads_text(json.dumps(fits).encode())
    assert f"more than {MAX_JSON_VALUES} values" in info.value.msg
    labels = {"request_ids": ["r"] * 10_000, "labels": [1] * 10_000, "rows": [0] * 10_000}
    assert loads_text(json.dumps(labels).encode()) == labels  # the largest an endpoint takes


def _many_keys(n: int) -> bytes:
    return b"{" + b",".join(b'"k%d":1' % i for i in range(n)) + b"}"


# Bodies that made the server build one error per value (FastAPI makes each a dict): 12 MB
# of unknown keys cost 10 s of CPU and 1.3 GB; the body limit, 64 MB, took the server down.
MANY = [
    ("/api/v1/runs/search", _many_keys(300_000)),  # a viewer's route
    ("/api/v1/experiments", _many_keys(300_000)),
    ("/api/2.0/mlflow/runs/log-batch", b'{"run_id": "x", "metrics": [' + b"1," * 300_000 + b"1]}"),
    ("/api/2.0/mlflow/runs/search", b'{"experiment_ids": [' + b"[]," * 300_000 + b"[]]}"),
]


@pytest.mark.parametrize(("path", "body"), MANY, ids=[p for p, _ in MANY])
def test_the_server_refuses_a_body_of_too_many_values_at_once(
    server_url: str, path: str, body: bytes
) -> None:
    answer = httpx.post(
        server_url + path,
        content=body,
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert answer.status_code in (400, 422), answer.text[:300]
    assert "more than 100000 values" in answer.text
    assert answer.elapsed.total_seconds() < 3


def test_a_body_nested_too_deeply_is_invalid_json_saying_so(server_url: str) -> None:
    answer = httpx.post(
        server_url + "/api/v1/runs/search",
        content=b"[" * 100_000 + b"]" * 100_000,
        headers={"content-type": "application/json"},
    )
    assert answer.status_code == 422
    assert "nested too deeply" in answer.text
