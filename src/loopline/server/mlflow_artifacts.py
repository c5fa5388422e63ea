"""The MLflow artifact proxy (``/api/2.0/mlflow-artifacts/artifacts``).

Uploads stream to a temporary file, are stored content-addressed (so identical files are
stored once) and then named by their path; downloads are verified against the digest
before a byte is sent. A path inside a run (``<experiment>/<run_id>/artifacts/<file>``)
is the run's own artifact index, the one the SDK's ``run.log_artifact`` writes, so files
logged by either client are seen by both; other paths (logged models) use the general
path index of :mod:`loopline.core.artifact_paths`.
"""

from __future__ import annotations

import os
import posixpath
import re
import tempfile
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, Response
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from loopline.core import artifact_paths
from loopline.core.context import Context
from loopline.errors import NotFound
from loopline.server.deps import get_ctx
from loopline.server.strict_json import StrictJsonRoute
from loopline.server.upload_body import received_body
from loopline.tracking import lineage
from loopline.tracking.entities import ArtifactEntry

router = APIRouter(
    route_class=StrictJsonRoute, prefix="/api/2.0/mlflow-artifacts", tags=["mlflow-artifacts"]
)
Ctx = Annotated[Context, Depends(get_ctx)]

_SMALL = 8 * 1024 * 1024
_RUN_PATH = re.compile(r"^\d+/([0-9a-f]{32})/artifacts(?:/(.*))?$")


def _run_path(path: str) -> tuple[str, str] | None:
    """``(run_id, relative path)`` when ``path`` lies in a run's artifact folder."""
    m = _RUN_PATH.match(path)
    return (m.group(1), m.group(2) or "") if m else None


def _store_upload(ctx: Context, path: str, tmp_name: str, size: int) -> None:
    run = _run_path(path)
    if run is None or not run[1]:
        artifact_paths.put_file(ctx, path, tmp_name)
        return
    digest = ctx.artifacts.put_file(tmp_name)
    lineage.add_artifacts(ctx.engine, run[0], [ArtifactEntry(run[1], digest, size)])


def _lookup(ctx: Context, path: str) -> tuple[str, int]:
    run = _run_path(path)
    if run is None or not run[1]:
        return artifact_paths.lookup(ctx, path)
    for entry in lineage.list_artifacts(ctx.engine, run[0], prefix=run[1]):
        if entry.path == run[1]:
            return entry.digest, entry.size
    raise NotFound(f"run {run[0]} has no artifact {run[1]!r}")


@router.put("/artifacts/{path:path}")
async def upload(path: str, request: Request, ctx: Ctx) -> dict[str, Any]:
    clean = artifact_paths.clean_path(path)
    async with received_body(request, clean) as (tmp_name, size):
        await run_in_threadpool(_store_upload, ctx, clean, tmp_name, size)
    return {}


@router.get("/artifacts/{path:path}", response_model=None)
def download(path: str, ctx: Ctx) -> Response:
    digest, size = _lookup(ctx, artifact_paths.clean_path(path))
    if size <= _SMALL:
        return Response(ctx.artifacts.get_bytes(digest), media_type="application/octet-stream")
    fd, tmp_name = tempfile.mkstemp(prefix="loopline-download-")
    os.close(fd)
    ctx.artifacts.get_file(digest, tmp_name)
    return FileResponse(
        tmp_name,
        media_type="application/octet-stream",
        background=BackgroundTask(os.unlink, tmp_name),
    )


@router.get("/artifacts")
def list_artifacts(ctx: Ctx, path: str | None = None) -> dict[str, Any]:
    base = artifact_paths.clean_path(path or "", allow_empty=True)
    run = _run_path(base)
    if run is not None:
        return list_run(ctx, run[0], run[1])
    entries = artifact_paths.list_dir(ctx, base)
    files = []
    for e in entries:
        item: dict[str, Any] = {"path": posixpath.basename(e.path), "is_dir": e.is_dir}
        if not e.is_dir:
            item["file_size"] = e.size
        files.append(item)
    return {"files": files} if files else {}


def list_run(ctx: Context, run_id: str, sub: str) -> dict[str, Any]:
    """The files and folders directly under ``sub`` in a run's artifacts, as MLflow's
    ``{"files": [{"path", "is_dir", "file_size"}]}`` (``{}`` when there are none); each
    ``path`` is the child's name.

    Example:
        >>> # list_run(ctx, run_id, "plots") -> {"files": [{"path": "roc.png", ...}]}
    """
    cut = len(sub) + 1 if sub else 0
    children: dict[str, dict[str, Any]] = {}
    for entry in lineage.list_artifacts(ctx.engine, run_id, prefix=sub or None):
        if entry.path == sub:
            continue
        head, sep, _ = entry.path[cut:].partition("/")
        if sep:
            children.setdefault(head, {"path": head, "is_dir": True})
        else:
            children[head] = {"path": head, "is_dir": False, "file_size": entry.size}
    files = [children[k] for k in sorted(children)]
    return {"files": files} if files else {}


@router.delete("/artifacts/{path:path}")
def delete(path: str, ctx: Ctx) -> dict[str, Any]:
    """Forget a file or a folder of files; the run's own index for paths inside a run."""
    clean = artifact_paths.clean_path(path)
    run = _run_path(clean)
    if run is not None:
        lineage.delete_artifacts(ctx.engine, run[0], run[1] or None)
    else:
        artifact_paths.delete_prefix(ctx, clean)
    return {}
