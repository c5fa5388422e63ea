"""Where a feature view's rows are: a stored frame or a versioned dataset, as Parquet files.

A frame registered with a view lives in the artifact store under its BLAKE3 digest. On a
local store DuckDB reads the object file in place; its digest is checked once per process
(hashing is ~1.7 GB/s). On S3 the object is downloaded, verified, to
``LOOPLINE_HOME/cache/features/<digest>.parquet`` once. A dataset source
(``name`` or ``name@version``) is resolved through :mod:`loopline.data.datasets` at query
time, so ``name`` follows the dataset's latest version.

Example:
    >>> # src = view_source(ctx, con, ll.features.get_view("user_stats"), ["clicks"])
"""

from __future__ import annotations

import datetime as dt
import importlib
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loopline.core.artifacts import LocalArtifactStore, hash_file
from loopline.core.context import Context
from loopline.data import pit_join
from loopline.data.feature_registry import RegisteredView
from loopline.errors import ConfigError, IntegrityError, InvalidInput, NotFound


def missing_columns(
    frame_cols: Sequence[object], wanted: Sequence[str], what: str
) -> InvalidInput | None:
    """The error for the first of ``wanted`` that ``frame_cols`` lacks, or None.

    Example:
        >>> str(missing_columns(["a"], ["a", "b"], "the frame"))[:28]
        "the frame has no column 'b';"
    """
    present = [str(c) for c in frame_cols]
    missing = [c for c in wanted if c not in present]
    if not missing:
        return None
    return InvalidInput(
        f"{what} has no column {missing[0]!r}; its columns: {', '.join(present)}",
        field=missing[0],
        hint="rename the column or fix the feature view definition",
    )


_verified: set[tuple[str, str]] = set()
_verified_lock = threading.Lock()


def _frame_file(ctx: Context, digest: str) -> Path:
    """A local Parquet file holding the stored frame, verified once per process."""
    store = ctx.artifacts
    if isinstance(store, LocalArtifactStore):
        path = store.local_path(digest)
        with _verified_lock:
            done = (store.url, digest) in _verified
        if not done:
            actual = hash_file(path)
            if actual != digest:
                raise IntegrityError(
                    f"artifact {digest} in {store.url} is corrupted: its bytes hash to {actual}",
                    hint="register the feature view again",
                )
            with _verified_lock:
                _verified.add((store.url, digest))
        return path
    cache = ctx.settings.home / "cache" / "features" / f"{digest}.parquet"
    if not cache.is_file():
        store.get_file(digest, cache)  # verified on the way
    return cache.resolve()


def _dataset_files(ref: str) -> tuple[str, ...]:
    """The Parquet files of dataset ``name[@version]`` (latest version by default)."""
    name, _, version = ref.partition("@")
    try:
        datasets: Any = importlib.import_module("loopline.data.datasets")
    except ModuleNotFoundError as exc:
        if exc.name != "loopline.data.datasets":
            raise
        raise ConfigError(
            f"feature views on datasets need loopline.data.datasets, which is missing ({ref})",
            hint="install a Loopline with datasets, or register the view on a DataFrame",
        ) from exc
    path = Path(datasets.get(name, version=version or "latest").path)
    if path.is_dir():
        files = sorted(str(p) for p in path.rglob("*.parquet"))
    else:
        files = [str(path)] if path.is_file() else []
    if not files:
        raise NotFound(
            f"dataset {ref!r} has no Parquet file at {path}",
            hint="register the dataset again",
        )
    return tuple(files)


def view_source(
    ctx: Context,
    con: Any,
    view: RegisteredView,
    features: Sequence[str],
) -> pit_join.ViewSource:
    """The view's files, keys and TTL for the queries, after checking its columns.

    Raises :class:`InvalidInput` naming a column the source lacks.

    Example:
        >>> # src = view_source(ctx, pit_join.connect(), view, ["clicks"]); src.files
    """
    kind, _, ref = view.source.partition(":")
    files = (str(_frame_file(ctx, ref)),) if kind == "frame" else _dataset_files(ref)
    src = pit_join.ViewSource(
        name=view.name,
        files=files,
        keys=view.keys,
        timestamp=view.timestamp,
        created=view.created,
        features=tuple(features),
        ttl_us=int(view.ttl / dt.timedelta(microseconds=1)) if view.ttl is not None else None,
    )
    types = pit_join.describe(con, src)
    wanted = [*view.keys, view.timestamp, *([view.created] if view.created else []), *features]
    error = missing_columns(list(types), wanted, f"the source {view.source} of view {view.name!r}")
    if error is not None:
        raise error
    pit_join.check_timestamp_type(src, types)
    return src
