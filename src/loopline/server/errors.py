"""How errors look on the wire: one JSON shape, the status from ``loopline.errors``.

Loopline's own API answers ``{"error": {"code", "message", "hint", "field"}}``; the
MLflow-compatible routes answer MLflow's ``{"error_code", "message"}`` so its client raises
the right exception (``RESOURCE_DOES_NOT_EXIST`` for a 404, and so on).
"""

from __future__ import annotations

import sys
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from loopline.core.db import lock_wait_error
from loopline.errors import LooplineError
from loopline.server.responses import OrjsonResponse

MLFLOW_CODES = {
    400: "INVALID_PARAMETER_VALUE",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "RESOURCE_DOES_NOT_EXIST",
    409: "RESOURCE_ALREADY_EXISTS",
    413: "INVALID_PARAMETER_VALUE",
    422: "INVALID_PARAMETER_VALUE",
    503: "TEMPORARILY_UNAVAILABLE",
}


class ErrorDetail(BaseModel):
    """What went wrong: a stable code, a message, and where possible the field and a fix."""

    model_config = ConfigDict(extra="forbid")

    code: str
    message: str
    hint: str | None = None
    field: str | None = None


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer of Loopline's own API: ``{"error": {...}}``."""

    model_config = ConfigDict(extra="forbid")

    error: ErrorDetail


#: The error answers every ``/api/v1`` operation may give, for its OpenAPI description.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in (
        (400, "Malformed request"),
        (401, "No valid API token (servers started with --auth)"),
        (403, "The token's role may not do this"),
        (404, "Not found"),
        (405, "Method not allowed"),
        (409, "Conflict with the stored state"),
        (413, "Request body over the limit"),
        (422, "Invalid input; `field` names it"),
        (503, "A backend is unavailable; retry"),
    )
}


#: Paths of the MLflow-compatible API, whose clients expect MLflow's error body.
MLFLOW_PREFIXES = ("/api/2.0/mlflow", "/api/3.0/mlflow", "/ajax-api/")


def _is_mlflow(request: Request) -> bool:
    return request.url.path.startswith(MLFLOW_PREFIXES)


def error_response(
    request: Request,
    status: int,
    code: str,
    message: str,
    hint: str | None = None,
    field: str | None = None,
) -> OrjsonResponse:
    """The error body for ``request``'s API family."""
    return error_for_path(request.url.path, status, code, message, hint, field)


def error_for_path(
    path: str,
    status: int,
    code: str,
    message: str,
    hint: str | None = None,
    field: str | None = None,
) -> OrjsonResponse:
    """The error body for a request to ``path``: MLflow's shape on its routes, else ours.

    Example:
        >>> error_for_path("/api/v1/runs", 404, "NOT_FOUND", "no run 'x'").status_code
        404
    """
    if path.startswith(MLFLOW_PREFIXES):
        mlflow_code = MLFLOW_CODES.get(status, "INTERNAL_ERROR")
        text = f"{message} (hint: {hint})" if hint else message
        return OrjsonResponse({"error_code": mlflow_code, "message": text}, status_code=status)
    body: dict[str, Any] = {"code": code, "message": message}
    if hint:
        body["hint"] = hint
    if field:
        body["field"] = field
    return OrjsonResponse({"error": body}, status_code=status)


#: What to do instead, for MLflow routes Loopline does not serve (by the path's tail).
_UNSERVED_HINTS = {
    "model-versions/transition-stage": "stages are deprecated in MLflow: set an alias "
    "(client.set_registered_model_alias) and load models:/NAME@ALIAS",
    "logged-models": "logged models are kept: register or alias the ones you use",
}


def unserved_mlflow_route(method: str, path: str, status: int) -> OrjsonResponse:
    """MLflow's ``ENDPOINT_NOT_FOUND`` for a route or method Loopline does not serve, naming
    it: the client shows the message, which must not read as "your model is missing".

    Example:
        >>> unserved_mlflow_route("POST", "/api/2.0/mlflow/runs/unknown", 404).status_code
        404
    """
    tail = path.split("/mlflow/", 1)[-1]
    hint = next(
        (text for prefix, text in _UNSERVED_HINTS.items() if tail.startswith(prefix)),
        "docs/migrating-from-mlflow.md lists the routes Loopline serves",
    )
    message = f"Loopline's MLflow-compatible server does not serve {method} {path} (hint: {hint})"
    return OrjsonResponse(
        {"error_code": "ENDPOINT_NOT_FOUND", "message": message}, status_code=status
    )


def install_error_handlers(app: FastAPI) -> None:
    """Map Loopline errors and request validation errors to 4xx/5xx JSON bodies."""

    @app.exception_handler(LooplineError)
    async def _loopline_error(request: Request, exc: LooplineError) -> OrjsonResponse:
        return error_response(
            request, exc.http_status, exc.code, exc.message, exc.hint, getattr(exc, "field", None)
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> OrjsonResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        status = 400 if _is_mlflow(request) else 422
        where = tuple(first.get("loc", ()))
        if first.get("type") == "json_invalid" or where == ("body",):
            # The body itself: its place in the JSON text is no field name.
            at = f" at character {where[1]}" if len(where) > 1 else ""
            what = (
                "is not valid JSON" if first.get("type") == "json_invalid" else "must be an object"
            )
            return error_response(
                request,
                status,
                "INVALID_INPUT",
                f"the request body {what}{at}: {_reason(first)}",
                "send a JSON object with 'Content-Type: application/json'",
                "body",
            )
        loc = [str(p) for p in where if p not in ("body", "query", "path")]
        field = ".".join(loc) or None
        message = f"{field or 'request'}: {first.get('msg', 'invalid')}"
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more)"
        return error_response(
            request,
            status,
            "INVALID_INPUT",
            message,
            "fix the field and send the request again",
            field,
        )

    @app.exception_handler(DBAPIError)
    async def _database_error(request: Request, exc: DBAPIError) -> OrjsonResponse:
        found = database_error(exc)
        if found is None:
            raise exc
        return error_response(request, *found)

    install_data_error_handler(app)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> OrjsonResponse:
        if exc.status_code in (404, 405) and _is_mlflow(request):
            return unserved_mlflow_route(request.method, request.url.path, exc.status_code)
        return error_response(request, exc.status_code, "HTTP_ERROR", str(exc.detail))


def _reason(error: dict[str, Any]) -> str:
    """What is wrong with the body: the JSON parser's own words when it gave some."""
    said = (error.get("ctx") or {}).get("error")
    return str(said) if said else str(error.get("msg", "invalid"))


def install_data_error_handler(app: FastAPI) -> None:
    """Answer 422, not 500, when the database refuses a value the request carried.

    A safety net behind the validation of each field: PostgreSQL refuses NUL in text and
    numbers out of its column's range (``psycopg.DataError``, wrapped or not by
    SQLAlchemy), which SQLite stores; either way it is the client's value that is wrong.
    On SQLite (``app.state.ctx``) psycopg is not imported: it cannot raise, and loading it
    costs every server start 0.1 s.

    Example:
        >>> # install_data_error_handler(app)  # DataError -> 422 INVALID_INPUT
    """
    from sqlalchemy.exc import DataError

    async def _data_error(request: Request, exc: Exception) -> OrjsonResponse:
        found = database_error(exc)
        if found is None:  # not reached: registered for data errors only
            raise exc
        return error_response(request, *found)

    app.add_exception_handler(DataError, _data_error)
    ctx = getattr(app.state, "ctx", None)
    if ctx is None or not ctx.settings.metadata_uri.startswith("sqlite"):
        import psycopg

        app.add_exception_handler(psycopg.DataError, _data_error)


def database_error(exc: BaseException) -> tuple[int, str, str, str] | None:
    """``(status, code, message, hint)`` for a database error a client should get as such.

    A value the database refuses (:class:`sqlalchemy.exc.DataError`, ``psycopg.DataError``)
    is the client's: 422. The database restarting or unreachable is 503, which clients
    retry (the metric batches of Loopline's SDK carry their number, so a retry is never
    applied twice). Anything else is None: a bug, left to rise as a 500. One table for the
    exception handlers above and the fast path, so both answer alike.

    Example:
        >>> database_error(ValueError("x")) is None
        True
    """
    from sqlalchemy.exc import DataError

    # Only a loaded psycopg can have raised its own errors (SQLite servers never load it).
    psycopg = sys.modules.get("psycopg")
    if isinstance(exc, DataError) or (psycopg is not None and isinstance(exc, psycopg.DataError)):
        orig = getattr(exc, "orig", None) or exc
        reason = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
        return (
            422,
            "INVALID_INPUT",
            f"a value in the request cannot be stored by the database: {reason}",
            "remove NUL (\\u0000) characters from text and keep ids and numbers in range",
        )
    if isinstance(exc, OperationalError) and "pattern too complex" in str(exc.orig):
        # SQLite's word for a LIKE or GLOB pattern over its length limit: the client's
        # pattern, not an outage (searches check the length first: a safety net).
        return (
            422,
            "INVALID_INPUT",
            "a LIKE pattern in the request is longer than the database takes",
            "shorten the pattern",
        )
    locked = lock_wait_error(exc)
    if locked is not None:  # SQLite: another process held its lock past the busy timeout
        return 503, "BACKEND_UNAVAILABLE", locked.message, locked.hint or ""
    if isinstance(exc, DBAPIError) and (
        exc.connection_invalidated or isinstance(exc, OperationalError)
    ):
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        return (
            503,
            "BACKEND_UNAVAILABLE",
            f"the metadata database is unavailable: {reason}",
            "retry shortly; check the database server behind LOOPLINE_URI",
        )
    return None
