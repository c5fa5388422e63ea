"""An encoded slash (``%2F``) in a path segment stays inside that segment.

The ASGI server decodes the path before routing, so ``GET /api/v1/runs/abc%2Fdef`` reached
the router as ``/api/v1/runs/abc/def``: a generic 404 instead of "run ... does not exist",
``/api/v1/runs/abc%2F`` a 307 redirect to ``/api/v1/runs/abc`` (another run; a client that
follows a 307 repeats a DELETE there), and ``/api/v1/runs/abc%2Frestore`` the restore of run
``abc``. No id, name or key Loopline serves in a path segment contains ``/``, so such a
request names an unknown one. This layer routes on ``scope["raw_path"]`` decoded except for
``%2F``, which stays as the three characters: the segment is matched whole and the handler
answers the 404 any unknown id gets (``RESOURCE_DOES_NOT_EXIST`` on MLflow's routes), naming
the id as it was sent. Routes whose last parameter is a path (artifacts, static files) take
``%2F`` as a slash, as before.

Example:
    >>> keep_encoded_slashes(b"/api/v1/runs/a%2Fb%20c")
    '/api/v1/runs/a%2Fb c'
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from starlette.types import ASGIApp, Receive, Scope, Send

_SLASH = re.compile(r"%2F", re.IGNORECASE)
#: Routes ending in a ``{...:path}`` parameter: there an encoded slash is a slash.
PATH_PARAM_PREFIXES = ("/api/2.0/mlflow-artifacts/", "/_ui/static/")


def keep_encoded_slashes(raw_path: bytes) -> str:
    """``raw_path`` percent-decoded except for ``%2F`` (kept as ``%2F``).

    Example:
        >>> keep_encoded_slashes(b"/api/2.0/mlflow/logged-models/m-1%2f2")
        '/api/2.0/mlflow/logged-models/m-1%2F2'
    """
    text = raw_path.decode("latin-1")
    return "%2F".join(unquote(part) for part in _SLASH.split(text))


class EncodedSlashes:
    """ASGI layer: route a path holding ``%2F`` on its raw form (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = scope.get("raw_path") if scope["type"] in ("http", "websocket") else None
        if raw and b"%2" in raw and _SLASH.search(raw.decode("latin-1")):
            path = keep_encoded_slashes(raw)
            if not path.startswith(PATH_PARAM_PREFIXES):
                scope = {**scope, "path": path}
        await self.app(scope, receive, send)
