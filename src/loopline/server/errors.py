"""How errors look on the wire: one JSON shape, the status from ``loopline.errors``.

Loopline's own API answers ``{"error": {"code", "message", "hint", "field"}}``; the
MLflow-compatible routes answer MLflow's ``{"error_code", "message"}`` so its client raises
the right exception (``RESOURCE_DOES_NOT_EXIST`` for a 404, and so on).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

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


def _is_mlflow(request: Request) -> bool:
    return request.url.path.startswith(("/api/2.0/mlflow", "/api/3.0/mlflow", "/ajax-api/"))


def error_response(
    request: Request,
    status: int,
    code: str,
    message: str,
    hint: str | None = None,
    field: str | None = None,
) -> OrjsonResponse:
    """The error body for ``request``'s API family."""
    if _is_mlflow(request):
        mlflow_code = MLFLOW_CODES.get(status, "INTERNAL_ERROR")
        text = f"{message} (hint: {hint})" if hint else message
        return OrjsonResponse({"error_code": mlflow_code, "message": text}, status_code=status)
    body: dict[str, Any] = {"code": code, "message": message}
    if hint:
        body["hint"] = hint
    if field:
        body["field"] = field
    return OrjsonResponse({"error": body}, status_code=status)


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
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        field = ".".join(loc) or None
        message = f"{field or 'request'}: {first.get('msg', 'invalid')}"
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more)"
        status = 400 if _is_mlflow(request) else 422
        return error_response(
            request,
            status,
            "INVALID_INPUT",
            message,
            "fix the field and send the request again",
            field,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> OrjsonResponse:
        return error_response(request, exc.status_code, "HTTP_ERROR", str(exc.detail))
