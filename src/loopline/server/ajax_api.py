"""MLflow's ``/ajax-api/`` prefix: every route under it is the same as under ``/api/``.

MLflow's server answers each REST route at ``/api/2.0/mlflow/...`` and again at
``/ajax-api/2.0/mlflow/...`` (its web UI's JavaScript, and tools written against it, call
the second); the same holds for ``/api/3.0/`` and the artifact proxy. This layer, in front
of everything that routes on the path, rewrites the prefix, so a request under either
reaches the same handler, the same auth rule, the same body limit and the MLflow fast
path, and gets the same answer.

Example:
    >>> aliased_path("/ajax-api/2.0/mlflow/runs/get")
    '/api/2.0/mlflow/runs/get'
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

AJAX_PREFIX = "/ajax-api/"
_AJAX_RAW = AJAX_PREFIX.encode()


def aliased_path(path: str) -> str:
    """``path`` with MLflow's ``/ajax-api/`` prefix written as ``/api/``.

    Example:
        >>> aliased_path("/api/v1/runs"), aliased_path("/ajax-api/2.0/mlflow-artifacts/x")
        ('/api/v1/runs', '/api/2.0/mlflow-artifacts/x')
    """
    if path.startswith(AJAX_PREFIX):
        return "/api/" + path[len(AJAX_PREFIX) :]
    return path


class AjaxApiAlias:
    """ASGI layer serving ``/ajax-api/...`` as ``/api/...`` (``path`` and ``raw_path``).

    Example:
        >>> # stack = AjaxApiAlias(EncodedSlashes(app))
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(AJAX_PREFIX):
            scope = dict(scope, path=aliased_path(scope["path"]))
            raw = scope.get("raw_path")
            if isinstance(raw, bytes) and raw.startswith(_AJAX_RAW):
                scope["raw_path"] = b"/api/" + raw[len(_AJAX_RAW) :]
        await self.app(scope, receive, send)
