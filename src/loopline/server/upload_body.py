"""An artifact upload's body, streamed to a temporary file within the size bound.

Both routes that take an artifact as a raw body - MLflow's ``PUT
/api/2.0/mlflow-artifacts/artifacts/{path}`` (:mod:`.mlflow_artifacts`) and ``PUT
/api/v1/runs/{id}/artifacts/content`` (:mod:`.api_v1_artifacts`) - receive it the same
way: chunk by chunk into a temporary file (never whole in memory), refused with a 4xx past
:data:`MAX_ARTIFACT_BYTES`, and the file removed once the route is done with it, whatever
happened.

Example:
    >>> # async with received_body(request, "model/model.pkl") as (path, size):
    >>> #     store(path, size)
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

from starlette.requests import Request

from loopline.errors import InvalidInput

#: The largest artifact one upload may carry: past it the upload is refused (a dataset is
#: the way to store more).
MAX_ARTIFACT_BYTES = 5 * 1024**3


class _Hasher(Protocol):
    def update(self, data: bytes, /) -> object: ...


@contextlib.asynccontextmanager
async def received_body(
    request: Request, name: str, hasher: _Hasher | None = None
) -> AsyncIterator[tuple[str, int]]:
    """The body of ``request`` in a temporary file, as ``(path, size)``; the file is removed
    when the block ends. ``hasher`` (a BLAKE3 hasher) is fed each chunk as it arrives.

    Raises :class:`InvalidInput` (field ``body``) naming the artifact ``name`` once the body
    passes :data:`MAX_ARTIFACT_BYTES`; nothing of it is kept.

    Example:
        >>> # async with received_body(request, "a.bin", blake3.blake3()) as (path, size):
        >>> #     ...
    """
    fd, tmp_name = tempfile.mkstemp(prefix="loopline-upload-")
    size = 0
    try:
        with os.fdopen(fd, "wb") as tmp:
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_ARTIFACT_BYTES:
                    raise InvalidInput(
                        f"artifact {name!r} is larger than {MAX_ARTIFACT_BYTES} bytes",
                        field="body",
                        hint="split it or store it as a dataset",
                    )
                tmp.write(chunk)
                if hasher is not None:
                    hasher.update(chunk)
        yield tmp_name, size
    finally:
        with contextlib.suppress(FileNotFoundError):
            Path(tmp_name).unlink()
