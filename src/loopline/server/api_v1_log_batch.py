"""``POST /api/v1/runs/{id}/log-batch``: metrics, params and tags of one run in one
transaction, the remote SDK's ingest path.

Separate from :mod:`loopline.server.api_v1_runs` because this route reads its body itself:
orjson, not pydantic, parses it so that a batch of 100,000 points costs microseconds per
point, and so the size limit, the content type, the fields and the writer's batch id are
checked here (the body's schema is still described in the OpenAPI document).

Example:
    >>> _batch_id("0123abcd", 1)
    ('0123abcd', 1)
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from loopline.core.access import is_json_media_type
from loopline.core.context import Context
from loopline.core.text import some_names
from loopline.errors import InvalidInput
from loopline.server.api_v1 import Ctx, _answer
from loopline.server.errors import ERROR_RESPONSES
from loopline.server.strict_json import StrictJsonRoute
from loopline.tracking import run_data
from loopline.tracking.batch_codec import decode_metrics
from loopline.tracking.entities import now_ms
from loopline.tracking.wire import (
    MAX_BATCH_BYTES,
    WRITER_ID,
    LogBatchRequest,
    LogBatchResponse,
)

router = APIRouter(
    route_class=StrictJsonRoute, prefix="/api/v1", tags=["tracking"], responses=ERROR_RESPONSES
)

_BATCH_FIELDS = frozenset(LogBatchRequest.model_fields)


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON schema with its ``$defs`` references resolved in place (for openapi_extra)."""
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.rsplit("/", 1)[1]])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


_LOG_BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": _inline(LogBatchRequest.model_json_schema())}},
    }
}


@router.post(
    "/runs/{run_id}/log-batch", response_model=LogBatchResponse, openapi_extra=_LOG_BATCH_BODY
)
async def log_batch(run_id: str, request: Request, ctx: Ctx) -> Response:
    """Metrics, params and tags for one run in one transaction (the remote ingest path).

    The body is parsed with orjson, not pydantic, so that a batch of 100,000 points costs
    microseconds per point; see :class:`~loopline.tracking.wire.LogBatchRequest`.

    Example: ``POST /api/v1/runs/3f2a9c.../log-batch {"metrics": {"keys": ["loss"],
    "values": [0.5], "steps": [3]}, "params": {"lr": "0.1"}}``
    """
    declared = request.headers.get("content-length")
    if (
        declared is not None
        and declared.isascii()
        and declared.isdigit()
        and int(declared) > MAX_BATCH_BYTES
    ):
        raise _too_large(int(declared))
    raw = await request.body()
    if len(raw) > MAX_BATCH_BYTES:
        raise _too_large(len(raw))
    _check_json_content_type(request)
    return await run_in_threadpool(_apply_batch, ctx, run_id, raw)


def _check_json_content_type(request: Request) -> None:
    """Refuse a body not sent as JSON, as FastAPI refuses it on every other JSON route.

    A browser sends a ``text/plain`` or untyped body from any web page without asking the
    server first; read anyway, it would let another site write to a server without
    ``--auth``.
    """
    sent = request.headers.get("content-type", "")
    if not is_json_media_type(sent):
        raise InvalidInput(
            f"the request body must be sent as JSON, not {sent!r}"
            if sent
            else "the request body must be sent as JSON: it has no Content-Type",
            field="Content-Type",
            hint="send the JSON object with 'Content-Type: application/json'",
        )


def _too_large(size: int) -> InvalidInput:
    return InvalidInput(
        f"the request body is {size} bytes, over the limit of {MAX_BATCH_BYTES} (MAX_BATCH_BYTES)",
        field="body",
        hint="split the points into several batches",
    )


def _apply_batch(ctx: Context, run_id: str, raw: bytes) -> Response:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(
            f"the body is not valid JSON at position {exc.pos}: {exc.msg}",
            field="body",
            hint='send a JSON object such as {"metrics": {"keys": [...], "values": [...]}}',
        ) from exc
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object", field="body")
    unknown = set(body) - _BATCH_FIELDS
    if unknown:
        raise InvalidInput(
            f"unknown field(s) {some_names(unknown)}",
            field=min(unknown),
            hint=f"the fields are {', '.join(sorted(_BATCH_FIELDS))}",
        )
    params, tags = body.get("params") or {}, body.get("tags") or {}
    for name, value in (("params", params), ("tags", tags)):
        if not isinstance(value, dict):
            raise InvalidInput(f"{name} must be an object of key: value", field=name)
    for key, value in params.items():
        if not isinstance(value, str | int | float):
            raise InvalidInput(
                f"param {key!r} is {value!r}: a param is a string or a number",
                field=f"params.{key}",
                hint="log structured values as an artifact (run.log_dict)",
            )
    for key, value in tags.items():
        if value is not None and not isinstance(value, str):
            raise InvalidInput(
                f"tag {key!r} is {value!r}: a tag value is a string or null",
                field=f"tags.{key}",
            )
    batch = _batch_id(body.get("writer"), body.get("seq"))
    rows = decode_metrics(body.get("metrics"), run_id, now_ms())
    logged = run_data.log_batch(
        ctx.engine, run_id, params=params, tags=tags, rows=rows, batch=batch
    )
    return _answer(LogBatchResponse(stored=logged.stored, duplicate=not logged.applied))


def _batch_id(writer: Any, seq: Any) -> tuple[str, int] | None:
    if writer is None and seq is None:
        return None
    if not isinstance(writer, str) or not WRITER_ID.match(writer):
        raise InvalidInput(
            f"writer must be 8 to 32 lowercase hex characters, got {writer!r}",
            field="writer",
            hint="send writer and seq together, or neither",
        )
    if type(seq) is not int or seq < 1:
        raise InvalidInput(
            f"seq must be a positive integer, got {seq!r}",
            field="seq",
            hint="number a writer's batches 1, 2, 3, ...",
        )
    return writer, seq
