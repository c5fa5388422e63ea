"""``ll.monitor`` over ``/api/v1/monitor``: late labels, business events and the drift the
loop stored (the bodies are the models of :mod:`loopline.monitoring.wire`).

Separate from the tracking routes: they write and read the monitoring tables (labels,
business events, drift results) through the same functions as the SDK's embedded mode.

Example:
    >>> # POST /api/v1/monitor/business {"event": "refund", "value": 12.5}
"""

from __future__ import annotations

from fastapi import APIRouter, Query
from fastapi.responses import Response

from loopline.errors import InvalidInput
from loopline.monitoring.wire import (
    BusinessRequest,
    BusinessResponse,
    DriftResultModel,
    DriftResultsResponse,
    LabelsRequest,
    LabelsResponse,
)
from loopline.server.api_v1 import Ctx, _answer
from loopline.server.errors import ERROR_RESPONSES
from loopline.server.strict_json import StrictJsonRoute

router = APIRouter(
    route_class=StrictJsonRoute, prefix="/api/v1", tags=["tracking"], responses=ERROR_RESPONSES
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
