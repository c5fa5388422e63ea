"""Loopline's own REST API for tracking, ``/api/v1`` (the remote SDK's backend).

Routes (bodies and answers are the models of :mod:`loopline.tracking.wire`)::

    POST   /experiments                        create (409 when the name is taken)
    GET    /experiments/{id}                   get
    GET    /experiments/by-name?name=          get by name
    POST   /experiments/search                 search by names / LIKE pattern
    POST   /runs                               create (the experiment is made if missing)
    POST   /runs/search                        search with MLflow's filter grammar
    GET    /runs/{id}                          get
    PATCH  /runs/{id}                          update status / end time / name (ends a run)
    DELETE /runs/{id}                          soft delete;  POST /runs/{id}/restore
    POST   /runs/{id}/log-batch                metrics + params + tags in one transaction
    GET    /runs/{id}/metric-history?key=      every point of one metric, in columns
    POST   /runs/{id}/tags                     set a tag;  DELETE /runs/{id}/tags?key=
    POST   /runs/{id}/inputs                   dataset versions read (lineage)
    GET    /runs/{id}/artifacts?prefix=        list artifacts
    PUT    /runs/{id}/artifacts/content?path=  upload one file (raw bytes, X-Loopline-Digest)
    GET    /runs/{id}/artifacts/content?path=  download one file (digest in X-Loopline-Digest)
    POST   /monitor/labels                     late labels by request id (and row) -> matched
    POST   /monitor/business                   one business event (value, request id, model)
    GET    /monitor/drift?model=&limit=        the loop's stored drift results, newest first

Keys and paths travel in bodies and query strings, never in the URL path, so that no HTTP
client can normalise a ``..`` away before the server rejects it. Errors are
``{"error": {"code", "message", "hint", "field"}}`` with a 4xx status
(:mod:`loopline.server.errors`). Everything goes through the same store functions as the
SDK's embedded mode and the MLflow-compatible API.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Annotated, Any

import blake3
import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from loopline.core.access import is_json_media_type
from loopline.core.artifacts import check_digest
from loopline.core.context import Context
from loopline.core.db import reading
from loopline.core.text import some_names
from loopline.errors import InvalidInput, NotFound
from loopline.monitoring.wire import (
    BusinessRequest,
    BusinessResponse,
    DriftResultModel,
    DriftResultsResponse,
    LabelsRequest,
    LabelsResponse,
)
from loopline.server.deps import get_ctx
from loopline.server.errors import ERROR_RESPONSES
from loopline.server.strict_json import StrictJsonRoute
from loopline.tracking import experiments as exp_store
from loopline.tracking import lineage, query, run_creation, run_data, run_state
from loopline.tracking.batch_codec import decode_metrics
from loopline.tracking.entities import ArtifactEntry, now_ms
from loopline.tracking.validation import check_artifact_path
from loopline.tracking.wire import (
    MAX_BATCH_BYTES,
    WRITER_ID,
    ArtifactListModel,
    ArtifactModel,
    CreateExperimentRequest,
    CreateRunRequest,
    ExperimentModel,
    ExperimentPageModel,
    LogBatchRequest,
    LogBatchResponse,
    LogInputsRequest,
    MetricHistoryModel,
    RunModel,
    RunPageModel,
    SearchExperimentsRequest,
    SearchRunsRequest,
    SetTagRequest,
    UpdateRunRequest,
)

router = APIRouter(
    route_class=StrictJsonRoute, prefix="/api/v1", tags=["tracking"], responses=ERROR_RESPONSES
)
Ctx = Annotated[Context, Depends(get_ctx)]

#: Largest artifact accepted in one upload (bytes).
MAX_ARTIFACT_BYTES = 5 * 1024**3
#: Header carrying an artifact's BLAKE3 digest with its bytes.
DIGEST_HEADER = "X-Loopline-Digest"
_SMALL = 8 * 1024 * 1024
_BATCH_FIELDS = frozenset(LogBatchRequest.model_fields)


def _answer(model: BaseModel, status: int = 200) -> Response:
    """A model as JSON (NaN and infinities as the strings "NaN", "Infinity", "-Infinity")."""
    return Response(model.model_dump_json(), status_code=status, media_type="application/json")


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


# -- experiments -------------------------------------------------------------------------


@router.post("/experiments", response_model=ExperimentModel, status_code=201)
def create_experiment(body: CreateExperimentRequest, ctx: Ctx) -> Response:
    """Create an experiment; 409 when the name is taken (deleted experiments included).

    Example: ``POST /api/v1/experiments {"name": "churn", "tags": {"team": "risk"}}``
    """
    exp = exp_store.create_experiment(
        ctx.engine,
        body.name,
        tags={k: v or "" for k, v in body.tags.items()},
        actor=ctx.settings.actor_name,
    )
    return _answer(ExperimentModel.from_entity(exp), 201)


@router.get("/experiments/by-name", response_model=ExperimentModel)
def get_experiment_by_name(ctx: Ctx, name: str = Query(examples=["churn"])) -> Response:
    """The experiment with this name; 404 names it.

    Example: ``GET /api/v1/experiments/by-name?name=churn``
    """
    return _answer(ExperimentModel.from_entity(exp_store.get_experiment_by_name(ctx.engine, name)))


@router.get("/experiments/{experiment_id}", response_model=ExperimentModel)
def get_experiment(experiment_id: int, ctx: Ctx) -> Response:
    """The experiment with this id; 404 names it.

    Example: ``GET /api/v1/experiments/3``
    """
    return _answer(ExperimentModel.from_entity(exp_store.get_experiment(ctx.engine, experiment_id)))


@router.post("/experiments/search", response_model=ExperimentPageModel)
def search_experiments(body: SearchExperimentsRequest, ctx: Ctx) -> Response:
    """Experiments by exact names and/or a case-insensitive LIKE pattern, by id.

    Example: ``POST /api/v1/experiments/search {"name_like": "churn%"}``
    """
    page = query.search_experiments(
        ctx.engine,
        names=body.names,
        name_like=body.name_like,
        view=body.view,
        max_results=body.max_results,
        page_token=body.page_token,
    )
    return _answer(ExperimentPageModel.from_result(page))


# -- runs --------------------------------------------------------------------------------


@router.post("/runs", response_model=RunModel, status_code=201)
def create_run(body: CreateRunRequest, ctx: Ctx) -> Response:
    """Start a RUNNING run in the named experiment, which is created when missing.

    Example: ``POST /api/v1/runs {"experiment": "churn", "name": "lgbm", "tags": {"team": "risk"}}``
    """
    actor = ctx.settings.actor_name
    exp = exp_store.get_or_create_experiment(ctx.engine, body.experiment, actor=actor)
    record = run_creation.create_run(
        ctx.engine,
        exp.id,
        name=body.name,
        start_time=body.start_time,
        tags=body.tags,
        parent_run_id=body.parent_run_id,
        user_id=body.user_id,
        actor=actor,
    )
    return _answer(RunModel.from_record(record), 201)


@router.post("/runs/search", response_model=RunPageModel)
def search_runs(body: SearchRunsRequest, ctx: Ctx) -> Response:
    """Runs matching an MLflow filter, ordered, one page at a time.

    A malformed filter is a 422 whose message gives the position and shows a caret.

    Example: ``POST /api/v1/runs/search {"experiments": ["churn"],
    "filter": "metrics.auc > 0.8", "order_by": ["metrics.auc DESC"]}``
    """
    ids = None
    if body.experiments is not None:
        ids = query.experiment_ids_by_name(ctx.engine, body.experiments)
    page = query.search_runs(
        ctx.engine,
        experiment_ids=ids,
        filter=body.filter,
        order_by=body.order_by,
        max_results=body.max_results,
        page_token=body.page_token,
        view=body.view,
    )
    return _answer(RunPageModel.from_result(page))


@router.get("/runs/{run_id}", response_model=RunModel)
def get_run(run_id: str, ctx: Ctx) -> Response:
    """Everything about one run; 404 names the id.

    Example: ``GET /api/v1/runs/3f2a9c...``
    """
    return _answer(RunModel.from_record(run_state.get_run(ctx.engine, run_id)))


@router.patch("/runs/{run_id}", response_model=RunModel)
def update_run(run_id: str, body: UpdateRunRequest, ctx: Ctx) -> Response:
    """Change status, end time or name; end a run with ``{"status": "FINISHED", ...}``.

    Example: ``PATCH /api/v1/runs/3f2a9c... {"status": "FINISHED", "end_time": 1700000000000}``
    """
    record = run_state.update_run(
        ctx.engine,
        run_id,
        status=body.status,
        end_time=body.end_time,
        name=body.name,
        actor=ctx.settings.actor_name,
    )
    return _answer(RunModel.from_record(record))


@router.delete("/runs/{run_id}", response_model=RunModel)
def delete_run(run_id: str, ctx: Ctx) -> Response:
    """Soft-delete a run: hidden from searches, no more data accepted, restorable.

    Example: ``DELETE /api/v1/runs/3f2a9c...``
    """
    run_state.delete_run(ctx.engine, run_id, actor=ctx.settings.actor_name)
    return _answer(RunModel.from_record(run_state.get_run(ctx.engine, run_id)))


def json_request(request: Request) -> None:
    """Refuse a POST without ``Content-Type: application/json``, on routes that read no body.

    A request without a body and without that header is a "simple" one: a page on another
    site can make a browser send it (a form, or ``fetch`` with ``mode: "no-cors"``) without
    asking the server first, so a server without ``--auth`` would run it. Asking for JSON's
    content type makes it one a browser sends cross-site only after a preflight, which this
    server never grants. The routes that read a JSON body refuse other bodies already.

    Example: ``curl -X POST -H 'Content-Type: application/json' .../runs/ID/restore``
    """
    sent = request.headers.get("content-type", "")
    if not is_json_media_type(sent):
        raise InvalidInput(
            f"{request.url.path} must be sent with 'Content-Type: application/json', not {sent!r}"
            if sent
            else f"{request.url.path} must be sent with 'Content-Type: application/json' "
            "(it takes no body; the header keeps other web sites from sending it)",
            field="Content-Type",
            hint="send the header 'Content-Type: application/json' (curl -H ...), with no "
            "body or an empty JSON object",
        )


@router.post(
    "/runs/{run_id}/restore", response_model=RunModel, dependencies=[Depends(json_request)]
)
def restore_run(run_id: str, ctx: Ctx) -> Response:
    """Undo a delete (send ``Content-Type: application/json``; no body).

    Example: ``POST /api/v1/runs/3f2a9c.../restore`` with ``Content-Type: application/json``
    """
    run_state.restore_run(ctx.engine, run_id, actor=ctx.settings.actor_name)
    return _answer(RunModel.from_record(run_state.get_run(ctx.engine, run_id)))


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


@router.get("/runs/{run_id}/metric-history", response_model=MetricHistoryModel)
def metric_history(run_id: str, ctx: Ctx, key: str = Query(examples=["loss"])) -> Response:
    """Every point of one metric, in columns, by step then timestamp; 404 for the run.

    Example: ``GET /api/v1/runs/3f2a9c.../metric-history?key=loss``
    """
    points = run_data.get_metric_history(ctx.engine, run_id, key)
    return _answer(MetricHistoryModel.from_points(run_id, key, points))


@router.post("/runs/{run_id}/tags", status_code=204)
def set_tag(run_id: str, body: SetTagRequest, ctx: Ctx) -> Response:
    """Set (or overwrite) a tag; a value over 8,000 characters is a 422.

    Example: ``POST /api/v1/runs/3f2a9c.../tags {"key": "stage", "value": "candidate"}``
    """
    run_data.set_tag(ctx.engine, run_id, body.key, body.value)
    return Response(status_code=204)


@router.delete("/runs/{run_id}/tags", status_code=204)
def delete_tag(run_id: str, ctx: Ctx, key: str = Query(examples=["stage"])) -> Response:
    """Delete a tag; 404 when the run has no such tag.

    Example: ``DELETE /api/v1/runs/3f2a9c.../tags?key=stage``
    """
    run_data.delete_tag(ctx.engine, run_id, key)
    return Response(status_code=204)


@router.post("/runs/{run_id}/inputs", status_code=204)
def log_inputs(run_id: str, body: LogInputsRequest, ctx: Ctx) -> Response:
    """Record dataset versions the run read; the same version with another digest is 409.

    Example: ``POST /api/v1/runs/3f2a9c.../inputs {"inputs": [{"kind": "dataset",
    "name": "churn", "version": "3", "digest": "ab12..."}]}``
    """
    lineage.log_inputs(ctx.engine, run_id, [i.to_entity() for i in body.inputs])
    return Response(status_code=204)


# -- artifacts ---------------------------------------------------------------------------


@router.get("/runs/{run_id}/artifacts", response_model=ArtifactListModel)
def list_artifacts(run_id: str, ctx: Ctx, prefix: str | None = None) -> Response:
    """The run's artifacts (only those under ``prefix/`` when given), by path.

    Example: ``GET /api/v1/runs/3f2a9c.../artifacts?prefix=model``
    """
    entries = lineage.list_artifacts(ctx.engine, run_id, prefix)
    return _answer(ArtifactListModel(artifacts=[ArtifactModel.from_entity(e) for e in entries]))


_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


@router.put(
    "/runs/{run_id}/artifacts/content", response_model=ArtifactModel, openapi_extra=_UPLOAD_BODY
)
async def upload_artifact(
    run_id: str, request: Request, ctx: Ctx, path: str = Query(examples=["model/model.pkl"])
) -> Response:
    """Store the body content-addressed as artifact ``path`` of the run; answers its entry.

    With an ``X-Loopline-Digest`` header (the remote SDK always sends one) the body's BLAKE3
    digest must equal it, or the upload is refused (422) and nothing is stored.

    Example: ``PUT /api/v1/runs/3f2a9c.../artifacts/content?path=model/model.pkl (raw bytes)``
    """
    clean = check_artifact_path(path).strip("/")
    claimed = _claimed_digest(request)
    await run_in_threadpool(_check_active, ctx, run_id)
    fd, tmp_name = tempfile.mkstemp(prefix="loopline-upload-")
    size = 0
    # Hashed as it arrives, so that a body damaged in transit is refused before it is
    # stored (the store hashes the file again: its address is its own digest).
    hasher = blake3.blake3()
    try:
        with os.fdopen(fd, "wb") as tmp:
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_ARTIFACT_BYTES:
                    raise InvalidInput(
                        f"artifact {clean!r} is larger than {MAX_ARTIFACT_BYTES} bytes",
                        field="body",
                        hint="split it or store it as a dataset",
                    )
                tmp.write(chunk)
                if claimed is not None:
                    hasher.update(chunk)
        if claimed is not None and hasher.hexdigest() != claimed:
            raise InvalidInput(
                f"artifact {clean!r}: the {size} bytes received hash to {hasher.hexdigest()}, "
                f"not to the {DIGEST_HEADER} {claimed} sent with them; nothing was stored",
                field=DIGEST_HEADER,
                hint="the body changed in transit or the header is wrong: send it again with "
                "the BLAKE3 digest of its bytes",
            )
        entry = await run_in_threadpool(_store_artifact, ctx, run_id, clean, tmp_name, size)
    finally:
        with contextlib.suppress(FileNotFoundError):
            Path(tmp_name).unlink()
    return _answer(ArtifactModel.from_entity(entry))


def _claimed_digest(request: Request) -> str | None:
    """The upload's ``X-Loopline-Digest`` header (None when absent), if well-formed."""
    claimed = request.headers.get(DIGEST_HEADER)
    if claimed is None:
        return None
    try:
        return check_digest(claimed)
    except InvalidInput as exc:
        raise InvalidInput(
            f"{DIGEST_HEADER} {claimed[:80]!r} is not a BLAKE3 digest",
            field=DIGEST_HEADER,
            hint="send the 64-character lowercase hex BLAKE3 digest of the body, or no header",
        ) from exc


def _check_active(ctx: Context, run_id: str) -> None:
    with reading(ctx.engine) as conn:
        run_state.require_active(conn, run_id)


def _store_artifact(
    ctx: Context, run_id: str, path: str, tmp_name: str, size: int
) -> ArtifactEntry:
    entry = ArtifactEntry(path, ctx.artifacts.put_file(tmp_name), size)
    lineage.add_artifacts(ctx.engine, run_id, [entry])
    return entry


@router.get(
    "/runs/{run_id}/artifacts/content",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def download_artifact(
    run_id: str, ctx: Ctx, path: str = Query(examples=["model/model.pkl"])
) -> Response:
    """The artifact's bytes, verified against their digest (sent in X-Loopline-Digest).

    Example: ``GET /api/v1/runs/3f2a9c.../artifacts/content?path=model/model.pkl``
    """
    return artifact_response(ctx, run_id, path)


def artifact_response(
    ctx: Context, run_id: str, path: str, headers: dict[str, str] | None = None
) -> Response:
    """The bytes of the run's artifact ``path``, verified against their digest, with
    ``X-Loopline-Digest`` and ``headers`` (the UI's download adds an attachment's).

    Example:
        >>> # artifact_response(ctx, run.id, "model/model.pkl").headers["x-loopline-digest"]
    """
    clean = check_artifact_path(path).strip("/")
    entry = next(
        (e for e in lineage.list_artifacts(ctx.engine, run_id, prefix=clean) if e.path == clean),
        None,
    )
    if entry is None:
        raise NotFound(
            f"run {run_id} has no artifact {clean!r}", hint="list them: GET .../artifacts"
        )
    headers = {**(headers or {}), DIGEST_HEADER: entry.digest}
    if entry.size <= _SMALL:
        data = ctx.artifacts.get_bytes(entry.digest)
        return Response(data, media_type="application/octet-stream", headers=headers)
    fd, tmp_name = tempfile.mkstemp(prefix="loopline-download-")
    os.close(fd)
    ctx.artifacts.get_file(entry.digest, tmp_name)
    return FileResponse(
        tmp_name,
        media_type="application/octet-stream",
        headers=headers,
        background=BackgroundTask(os.unlink, tmp_name),
    )


# -- monitoring (ll.monitor over HTTP; bodies in loopline.monitoring.wire) ----------------


@router.post("/monitor/labels", response_model=LabelsResponse, tags=["monitor"])
def monitor_labels(body: LabelsRequest, ctx: Ctx) -> Response:
    """Ground truth for logged predictions, by request id (and ``rows``: the row of its
    request each label is for, from 0, or ``"all"``): how many matched a prediction, the
    first unknown ids (stored all the same), and the labels that fit no row - a label for
    the whole of a request of several rows, a row the request does not have - with
    ``warnings`` in words. At most 10,000 ids per request; a model that predicts numbers
    takes numeric labels only.

    Example: ``POST /api/v1/monitor/labels {"request_ids": ["b1", "b1"], "labels": [1, 0],
    "rows": [0, 1]}``
    """
    from loopline.monitoring.labels import log_labels

    if len(body.request_ids) != len(body.labels):
        raise InvalidInput(
            f"got {len(body.request_ids)} request ids and {len(body.labels)} labels",
            field="labels",
            hint="send one label per request id, in the same order",
        )
    report = log_labels(body.request_ids, body.labels, model=body.model, rows=body.rows, ctx=ctx)
    return _answer(LabelsResponse.model_validate(report.to_dict()))


@router.post(
    "/monitor/business", response_model=BusinessResponse, status_code=201, tags=["monitor"]
)
def monitor_business(body: BusinessRequest, ctx: Ctx) -> Response:
    """Record one business event (a refund, a click) with its value, optionally tied to the
    request that caused it or to a model.

    Example: ``POST /api/v1/monitor/business {"event": "refund", "value": 12.5}``
    """
    from loopline.monitoring.business import log_business

    log_business(body.event, body.value, body.request_id, model=body.model, ctx=ctx)
    return _answer(BusinessResponse.model_validate(body.model_dump()), 201)


@router.get("/monitor/drift", response_model=DriftResultsResponse, tags=["monitor"])
def monitor_drift(
    ctx: Ctx,
    model: str = Query(min_length=1, max_length=256, examples=["flights"]),
    limit: int = Query(100, ge=1, le=1000),
) -> Response:
    """The drift of the newest windows the loop watched for ``model``, newest first.

    Example: ``GET /api/v1/monitor/drift?model=flights&limit=10``
    """
    from loopline.monitoring.drift_results import read_drift

    results = [
        DriftResultModel.model_validate(r.__dict__) for r in read_drift(model, limit=limit, ctx=ctx)
    ]
    return _answer(DriftResultsResponse(model=model, results=results))
