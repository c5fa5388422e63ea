"""The web UI's routes: one server-rendered page per URL, all read-only but audit verify.

=====================================  ===================================================
``/``                                  experiments: name search (``q``), paging
``/runs``                              runs: filter (MLflow grammar), order, paging
``/runs/{run_id}``                     one run: params, metrics + charts, tags, lineage
``/runs/{run_id}/artifact?path=``      download one of its artifacts (as an attachment)
``/compare?run=A&run=B``               runs side by side: differing params, deltas, charts
``/datasets``                          datasets and feature views
``/datasets/{name}``                   versions, schema, statistics, files, readers
``/datasets/{name}/diff?a=1&b=2``      what changed between two versions
``/models``                            registered models, aliases, what each serves
``/models/{name}``                     versions, gate verdicts, lineage graph
``/models/{name}/versions/{v}``        one version: verdict checks, lineage
``/deployments``                       traffic split, canary progress
``/deployments/{name}``                live window, history (rollbacks), traffic chart
``/monitoring``                        drift per column with plots, live rollout windows
``/audit``                             the audit log; ``POST /audit/verify`` checks it
=====================================  ===================================================

A :class:`~loopline.errors.LooplineError` (or a bad query parameter) becomes an HTML error
page with the error's status, its message and hint, instead of the API's JSON body.

Example:
    >>> # install_ui(app)  # done by loopline.server.app.create_app
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

from loopline.core import audit
from loopline.core.columns import MAX_INTEGER
from loopline.core.context import Context
from loopline.core.db import like_literal
from loopline.errors import InvalidInput, LooplineError
from loopline.server.api_v1_artifacts import artifact_response
from loopline.server.auth import cross_origin_form
from loopline.server.deps import get_ctx
from loopline.server.strict_json import StrictJsonRoute
from loopline.server.ui import catalog_views, ops_views, tracking_views
from loopline.server.ui.render import STATIC_DIR, STATIC_URL, page
from loopline.tracking.entities import ViewType
from loopline.tracking.experiments import get_experiment
from loopline.tracking.query import decode_page_token, encode_page_token, search_experiments

Ctx = Annotated[Context, Depends(get_ctx)]


def error_page(status: int, title: str, message: str, hint: str | None) -> HTMLResponse:
    """The HTML page for an error."""
    return page("error.html", status, title=title, message=message, hint=hint, nav="")


class PageRoute(StrictJsonRoute):
    """A route whose Loopline errors and invalid parameters render as an HTML page."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except LooplineError as exc:
                title = "Not found" if exc.http_status == 404 else "Cannot show this page"
                return error_page(exc.http_status, title, exc.message, exc.hint)
            except RequestValidationError as exc:
                first = exc.errors()[0] if exc.errors() else {}
                where = ".".join(str(p) for p in first.get("loc", ()) if p != "query")
                return error_page(
                    422,
                    "Invalid parameter",
                    f"{where or 'request'}: {first.get('msg', 'invalid')}",
                    "fix the address and load the page again",
                )

        return page_handler


#: The last page number a listing takes: past it, the row offset would not fit a query.
MAX_PAGE = MAX_INTEGER // 1000

router = APIRouter(route_class=PageRoute, include_in_schema=False)


def install_ui(app: FastAPI) -> None:
    """Add the UI's pages and its static files (``/_ui/static``) to ``app``."""
    app.include_router(router)
    app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="ui-static")


# -- experiments and runs -----------------------------------------------------------------


#: Experiments per page.
EXPERIMENTS_PER_PAGE = 50


@router.get("/", response_class=HTMLResponse)
def experiments_page(
    ctx: Ctx, page_token: str | None = None, q: Annotated[str, Query(max_length=200)] = ""
) -> HTMLResponse:
    """Experiments, 50 to a page, optionally those whose name contains ``q``."""
    # "Name contains", case-insensitive: the words as typed, '_' and '%' included.
    like = f"%{like_literal(q.strip())}%" if q.strip() else None
    result = search_experiments(
        ctx.engine, name_like=like, max_results=EXPERIMENTS_PER_PAGE, page_token=page_token
    )
    offset = decode_page_token(page_token)
    # Back one page, not only to the first: the list was walked forward only. The first
    # page's address has no token.
    back = offset - EXPERIMENTS_PER_PAGE
    prev = encode_page_token(back) if back > 0 else None
    return page(
        "experiments.html",
        nav="experiments",
        experiments=result.experiments,
        next_token=result.next_page_token,
        prev_token=prev,
        has_prev=offset > 0,
        offset=offset,
        q=q,
    )


@router.get("/runs", response_class=HTMLResponse)
def runs_list(
    ctx: Ctx,
    experiment: Annotated[list[int], Query()] = [],  # noqa: B006 - FastAPI copies defaults
    filter_text: Annotated[str, Query(alias="filter", max_length=5000)] = "",
    order_by: Annotated[str, Query(max_length=500)] = "",
    per_page: Annotated[int, Query(ge=1, le=max(tracking_views.PAGE_SIZES))] = 50,
    page_token: str | None = None,
    view: ViewType = "active",
) -> HTMLResponse:
    """A page of runs matching a filter; a bad filter is shown inline with its position."""
    result = tracking_views.runs_page(
        ctx.engine,
        experiment_ids=experiment,
        filter_text=filter_text,
        order_by=order_by,
        per_page=per_page,
        page_token=page_token,
        view=view,
    )
    selected = [get_experiment(ctx.engine, i) for i in dict.fromkeys(experiment)]
    params = {
        "experiment": experiment,
        "filter": filter_text,
        "order_by": order_by,
        "per_page": per_page if per_page != 50 else None,
        "view": view if view != "active" else None,
    }
    return page(
        "runs.html",
        400 if result.error is not None else 200,
        nav="runs",
        r=result,
        params=params,
        filter_text=filter_text,
        order_by=order_by,
        per_page=per_page,
        page_sizes=tracking_views.PAGE_SIZES,
        view=view,
        experiments=selected,
        quote_key=tracking_views.quote_key,
        no_runs=tracking_views.no_runs_message(
            filter_text=filter_text, offset=result.offset, view=view, experiments=selected
        ),
    )


@router.get("/compare", response_class=HTMLResponse)
def compare_page(
    ctx: Ctx,
    run: Annotated[list[str], Query()] = [],  # noqa: B006 - FastAPI copies defaults
) -> HTMLResponse:
    """Two or more runs side by side."""
    if len(set(run)) < 2:
        raise InvalidInput(
            "compare needs at least two runs",
            field="run",
            hint="tick two or more runs in the runs table and press Compare",
        )
    if len(set(run)) > tracking_views.MAX_COMPARE:
        raise InvalidInput(
            f"compare takes at most {tracking_views.MAX_COMPARE} runs, got {len(set(run))}",
            field="run",
            hint="tick fewer runs",
        )
    return page("compare.html", nav="runs", **tracking_views.compare(ctx.engine, run))


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(ctx: Ctx, run_id: str) -> HTMLResponse:
    """One run: params, metrics with charts, tags, inputs, artifacts, children, models."""
    return page("run.html", nav="runs", **tracking_views.run_detail(ctx, run_id))


#: Sent with a downloaded artifact: saved, never shown, so its bytes cannot act as a page of
#: this server (an HTML file logged by anyone with write access, say).
_ATTACHMENT_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
}


@router.get("/runs/{run_id}/artifact", response_model=None)
def run_artifact(ctx: Ctx, run_id: str, path: Annotated[str, Query(max_length=5000)]) -> Response:
    """One artifact of a run, as a file to save (the run page's links).

    A page of the UI, not of the API, so that a browser logged in with ``--auth`` (its
    cookie is taken on UI pages only) can download what the run page lists.
    """
    name = path.rstrip("/").rsplit("/", 1)[-1] or "artifact"
    disposition = f"attachment; filename*=utf-8''{quote(name, safe='')}"
    headers = {**_ATTACHMENT_HEADERS, "Content-Disposition": disposition}
    return artifact_response(ctx, run_id, path, headers)


# -- data ---------------------------------------------------------------------------------


@router.get("/datasets", response_class=HTMLResponse)
def datasets_page() -> HTMLResponse:
    """Every dataset and feature view."""
    return page("datasets.html", nav="datasets", **catalog_views.dataset_list())


@router.get("/datasets/{name}", response_class=HTMLResponse)
def dataset_page(
    ctx: Ctx,
    name: str,
    version: Annotated[int | None, Query(ge=1, le=MAX_INTEGER)] = None,
    page_number: Annotated[int, Query(alias="page", ge=1, le=MAX_PAGE)] = 1,
) -> HTMLResponse:
    """A page of a dataset's versions, and one version's schema, statistics, files, readers."""
    return page(
        "dataset.html",
        nav="datasets",
        **catalog_views.dataset_detail(ctx, name, version, page_number),
    )


@router.get("/datasets/{name}/diff", response_class=HTMLResponse)
def dataset_diff_page(
    name: str, a: Annotated[int, Query(ge=1)], b: Annotated[int, Query(ge=1)]
) -> HTMLResponse:
    """What changed between two versions of a dataset."""
    return page("dataset_diff.html", nav="datasets", **catalog_views.dataset_diff(name, a, b))


# -- models -------------------------------------------------------------------------------


@router.get("/models", response_class=HTMLResponse)
def models_page(
    ctx: Ctx,
    page_number: Annotated[int, Query(alias="page", ge=1, le=MAX_PAGE)] = 1,
    q: Annotated[str, Query(max_length=200)] = "",
) -> HTMLResponse:
    """Registered models with their aliases and deployments."""
    # "Name contains": the words as typed, '_' and '%' included, not as wildcards.
    like = f"%{like_literal(q.strip())}%" if q.strip() else None
    return page(
        "models.html", nav="models", q=q, **catalog_views.model_list(ctx, page_number, like)
    )


@router.get("/models/{name}", response_class=HTMLResponse)
def model_page(
    ctx: Ctx, name: str, page_number: Annotated[int, Query(alias="page", ge=1, le=MAX_PAGE)] = 1
) -> HTMLResponse:
    """A registered model: versions, aliases, gate verdicts, roles, lineage graph."""
    return page("model.html", nav="models", **catalog_views.model_detail(ctx, name, page_number))


@router.get("/models/{name}/versions/{version}", response_class=HTMLResponse)
def model_version_page(ctx: Ctx, name: str, version: int) -> HTMLResponse:
    """One model version with its gate verdicts and lineage."""
    return page(
        "model_version.html", nav="models", **catalog_views.version_detail(ctx, name, version)
    )


# -- operations ---------------------------------------------------------------------------


@router.get("/deployments", response_class=HTMLResponse)
def deployments_page() -> HTMLResponse:
    """Every deployment: traffic split and canary progress."""
    return page("deployments.html", nav="deployments", **ops_views.deployment_list())


@router.get("/deployments/{name}", response_class=HTMLResponse)
def deployment_page(name: str) -> HTMLResponse:
    """One deployment: live window, traffic over time, history with rollbacks."""
    return page("deployment.html", nav="deployments", **ops_views.deployment_detail(name))


@router.get("/monitoring", response_class=HTMLResponse)
def monitoring_page(
    reference: Annotated[str, Query(max_length=300)] = "",
    current: Annotated[str, Query(max_length=300)] = "",
    model: Annotated[str, Query(max_length=256)] = "",
    window: Literal["hour", "day", "100", "1000"] = "hour",
) -> HTMLResponse:
    """Drift between two dataset versions, live metrics over time, rollouts, alerts."""
    view = ops_views.drift_view(reference, current)
    live = ops_views.live_metrics(model.strip(), window)
    status = 400 if view["error"] is not None or live["error"] is not None else 200
    return page(
        "monitoring.html",
        status,
        nav="monitoring",
        live=live,
        rollouts=ops_views.live_windows(),
        alerts=ops_views.alert_list(),
        **view,
    )


def _audit(
    ctx: Context,
    before: int | None,
    object_type: str,
    object_id: str,
    actor: str,
    report: audit.VerifyReport | None,
) -> HTMLResponse:
    data = ops_views.audit_page(
        ctx.engine,
        before=before,
        object_type=object_type or None,
        object_id=object_id or None,
        actor=actor or None,
    )
    return page(
        "audit.html",
        nav="audit",
        report=report,
        before=before,
        params={"object_type": object_type, "object_id": object_id, "actor": actor},
        as_json=ops_views.as_json,
        **data,
    )


@router.get("/audit", response_class=HTMLResponse)
def audit_log_page(
    ctx: Ctx,
    before: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    object_type: Annotated[str, Query(max_length=100)] = "",
    object_id: Annotated[str, Query(max_length=500)] = "",
    actor: Annotated[str, Query(max_length=200)] = "",
) -> HTMLResponse:
    """The audit log, newest first, optionally about one object or actor."""
    return _audit(ctx, before, object_type, object_id, actor, None)


@router.post("/audit/verify", response_class=HTMLResponse)
def audit_verify(ctx: Ctx, request: Request) -> Response:
    """Walk the hash chain (:func:`loopline.core.audit.verify`) and show what it found.

    Only a form of this server may ask, with or without ``--auth``: the walk reads every
    event, and without it any page the user opens could make the server repeat it at will.
    """
    refused = cross_origin_form(request)
    if refused is not None:
        return refused
    return _audit(ctx, None, "", "", "", audit.verify(ctx.engine))
