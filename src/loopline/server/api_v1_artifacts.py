"""A run's artifacts over ``/api/v1``: the listing, the upload (hashed as it arrives and
checked against the ``X-Loopline-Digest`` the client sent) and the download (verified
against the stored digest, which it sends back in that header).

Separate from the run routes because it moves bytes, not records: an upload streams to
a temporary file before the artifact store takes it, and :func:`artifact_response` is
shared with the UI's download.

Example:
    >>> DIGEST_HEADER
    'X-Loopline-Digest'
"""

from __future__ import annotations

import os
import tempfile

import blake3
from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from loopline.core.artifacts import check_digest
from loopline.core.context import Context
from loopline.core.db import reading
from loopline.errors import InvalidInput, NotFound
from loopline.server.api_v1 import Ctx, _answer
from loopline.server.errors import ERROR_RESPONSES
from loopline.server.strict_json import StrictJsonRoute
from loopline.server.upload_body import received_body
from loopline.tracking import lineage, run_state
from loopline.tracking.entities import ArtifactEntry
from loopline.tracking.validation import check_artifact_path
from loopline.tracking.wire import ArtifactListModel, ArtifactModel

router = APIRouter(
    route_class=StrictJsonRoute, prefix="/api/v1", tags=["tracking"], responses=ERROR_RESPONSES
)

#: Header carrying an artifact's BLAKE3 digest with its bytes.
DIGEST_HEADER = "X-Loopline-Digest"
_SMALL = 8 * 1024 * 1024


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
    # Hashed as it arrives, so that a body damaged in transit is refused before it is
    # stored (the store hashes the file again: its address is its own digest).
    hasher = blake3.blake3()
    async with received_body(request, clean, hasher if claimed is not None else None) as (
        tmp_name,
        size,
    ):
        if claimed is not None and hasher.hexdigest() != claimed:
            raise InvalidInput(
                f"artifact {clean!r}: the {size} bytes received hash to {hasher.hexdigest()}, "
                f"not to the {DIGEST_HEADER} {claimed} sent with them; nothing was stored",
                field=DIGEST_HEADER,
                hint="the body changed in transit or the header is wrong: send it again with "
                "the BLAKE3 digest of its bytes",
            )
        entry = await run_in_threadpool(_store_artifact, ctx, run_id, clean, tmp_name, size)
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
