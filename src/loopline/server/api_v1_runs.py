"""Experiments and runs over ``/api/v1``: create, get, search, update, delete and restore,
and a run's tags, dataset inputs and metric history.

Separate from :mod:`loopline.server.api_v1_log_batch` (the ingest path, which parses its
body itself) and from the artifact and monitoring routes: these routes read and change the
tracking records through FastAPI's validated bodies (the models of
:mod:`loopline.tracking.wire`). The route table is in :mod:`loopline.server.api_v1`.

Example:
    >>> # POST /api/v1/runs {"experiment": "churn", "name": "lgbm"}
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from loopline.core.access import is_json_media_type
from loopline.errors import InvalidInput
from loopline.server.api_v1 import Ctx, _answer
from loopline.server.errors import ERROR_RESPONSES
from loopline.server.strict_json import StrictJsonRoute
from loopline.tracking import experiments as exp_store
from loopline.tracking import lineage, query, run_creation, run_data, run_state
from loopline.tracking.wire import (
    CreateExperimentRequest,
    CreateRunRequest,
    ExperimentModel,
    ExperimentPageModel,
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
