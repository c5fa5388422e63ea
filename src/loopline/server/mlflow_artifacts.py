"""The MLflow artifact proxy (``/api/2.0/mlflow-artifacts/artifacts``).

Uploads stream to a temporary file, are stored content-addressed (so identical files are
stored once) and then named by their path; downloads are verified against the digest
before a byte is sent.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, Response
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from loopline.core import artifact_paths
from loopline.core.context import Context
from loopline.errors import InvalidInput
from loopline.server.deps import get_ctx

router = APIRouter(prefix="/api/2.0/mlflow-artifacts", tags=["mlflow-artifacts"])
Ctx = Annotated[Context, Depends(get_ctx)]

#: Largest artifact accepted in one upload (bytes).
MAX_ARTIFACT_BYTES = 5 * 1024**3
_SMALL = 8 * 1024 * 1024


@router.put("/artifacts/{path:path}")
async def upload(path: str, request: Request, ctx: Ctx) -> dict[str, Any]:
    clean = artifact_paths.clean_path(path)
    fd, tmp_name = tempfile.mkstemp(prefix="loopline-upload-")
    size = 0
    try:
        with os.fdopen(fd, "wb") as tmp:
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_ARTIFACT_BYTES:
                    raise InvalidInput(
                        f"artifact {clean!r} is larger than {MAX_ARTIFACT_BYTES} bytes",
                        field="body", hint="split it or store it as a dataset")
                tmp.write(chunk)
        await run_in_threadpool(artifact_paths.put_file, ctx, clean, tmp_name)
    finally:
        with contextlib.suppress(FileNotFoundError):
            Path(tmp_name).unlink()
    return {}


@router.get("/artifacts/{path:path}", response_model=None)
def download(path: str, ctx: Ctx) -> Response:
    digest, size = artifact_paths.lookup(ctx, path)
    if size <= _SMALL:
        return Response(ctx.artifacts.get_bytes(digest), media_type="application/octet-stream")
    fd, tmp_name = tempfile.mkstemp(prefix="loopline-download-")
    os.close(fd)
    ctx.artifacts.get_file(digest, tmp_name)
    return FileResponse(tmp_name, media_type="application/octet-stream",
                        background=BackgroundTask(os.unlink, tmp_name))


@router.get("/artifacts")
def list_artifacts(ctx: Ctx, path: str | None = None) -> dict[str, Any]:
    entries = artifact_paths.list_dir(ctx, path or "")
    files = []
    for e in entries:
        item: dict[str, Any] = {"path": posixpath.basename(e.path), "is_dir": e.is_dir}
        if not e.is_dir:
            item["file_size"] = e.size
        files.append(item)
    return {"files": files} if files else {}


@router.delete("/artifacts/{path:path}")
def delete(path: str, ctx: Ctx) -> dict[str, Any]:
    artifact_paths.delete_prefix(ctx, path)
    return {}
