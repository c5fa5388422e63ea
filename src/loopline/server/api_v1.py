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

Each group of routes is its own module with its own ``APIRouter``, all included by the app
(:func:`loopline.server.app.create_app`) in this order: :mod:`.api_v1_runs` (experiments,
runs, their tags, inputs and metric history), :mod:`.api_v1_log_batch` (the ingest path,
parsed with orjson), :mod:`.api_v1_artifacts` (listing, upload and download) and
:mod:`.api_v1_monitor` (``ll.monitor`` over HTTP). This module holds what they share:
the context dependency and the JSON answer.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.responses import Response
from pydantic import BaseModel

from loopline.core.context import Context
from loopline.server.deps import get_ctx

Ctx = Annotated[Context, Depends(get_ctx)]


def _answer(model: BaseModel, status: int = 200) -> Response:
    """A model as JSON (NaN and infinities as the strings "NaN", "Infinity", "-Infinity")."""
    return Response(model.model_dump_json(), status_code=status, media_type="application/json")
