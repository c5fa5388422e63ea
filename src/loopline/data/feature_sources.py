"""Where a feature view's rows are: a stored frame or a versioned dataset, as Parquet files.

A frame registered with a view lives in the artifact store under its BLAKE3 digest. On a
local store DuckDB reads the object file in place; its digest is checked once per process
(hashing is ~1.7 GB/s). On S3 the object is downloaded, verified, to
``LOOPLINE_HOME/cache/features/<digest>.parquet`` once. A dataset source
(``name`` or ``name@version``) is resolved through :mod:`loopline.data.datasets` at query
time, so ``name`` follows the dataset's latest version.

Training sets read a *prepared* copy of a view's rows (:func:`prepared_view`): the rows
deduplicated by the tie-breaking rules and sorted by key and event time, written once per
version of the view's data to ``LOOPLINE_HOME/cache/features/prepared/<key>.parquet``.
The key hashes what the rows depend on: the stored frame's digest (or each dataset file's
path, size and modification time) and the view's keys, timestamp, created and feature
columns, so a new version of the data or of the definition gets a new file. A file
appears whole or not at all (written to a temporary name, then renamed); the cache can be
deleted at any time and is rebuilt on the next use.

Example:
    >>> # src = view_source(ctx, con, ll.features.get_view("user_stats"), ["clicks"])
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import importlib
import json
import os
import threading
import uuid
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
    found = datasets.get(name, version=version or "latest")
    path = Path(found.path)
    if path.is_dir():
        files = sorted(str(p) for p in path.rglob("*.parquet"))
    else:
        files = [str(path)] if path.is_file() else []
    if not files and found.kind != "table":
        raise InvalidInput(
            f"dataset {found.ref} is a files dataset with no Parquet file; "
            "a feature view reads a table dataset",
            field="source",
            hint="register the feature rows as a table (a DataFrame, CSV or Parquet file) "
            "and point the view at that dataset",
        )
    if not files:
        raise NotFound(
            f"dataset {ref!r} has no Parquet file at {path}",
            hint="register the dataset again",
        )
    return tuple(files)


def _ttl_us(view: RegisteredView) -> int | None:
    return view.ttl // dt.timedelta(microseconds=1) if view.ttl is not None else None


def view_source(
    ctx: Context,
    con: Any,
    view: RegisteredView,
    features: Sequence[str],
    files: tuple[str, ...] | None = None,
) -> pit_join.ViewSource:
    """The view's files, keys and TTL for the queries, after checking its columns.

    ``files`` skips resolving the source again when the caller already has its files.
    Raises :class:`InvalidInput` naming a column the source lacks.

    Example:
        >>> # src = view_source(ctx, pit_join.connect(), view, ["clicks"]); src.files
    """
    if files is None:
        kind, _, ref = view.source.partition(":")
        files = (str(_frame_file(ctx, ref)),) if kind == "frame" else _dataset_files(ref)
    src = pit_join.ViewSource(
        name=view.name,
        files=files,
        keys=view.keys,
        timestamp=view.timestamp,
        created=view.created,
        features=tuple(features),
        ttl_us=_ttl_us(view),
    )
    types = pit_join.describe(con, src)
    pit_join.check_column_names(src, types)
    wanted = [*view.keys, view.timestamp, *([view.created] if view.created else []), *features]
    error = missing_columns(list(types), wanted, f"the source {view.source} of view {view.name!r}")
    if error is not None:
        raise error
    pit_join.check_timestamp_type(src, types)
    pit_join.check_text_times(con, src, types)
    if view.created and types[view.created] == "VARCHAR":
        src = dataclasses.replace(src, created_is_text=True)
    nanoseconds = pit_join.nanosecond_types(types)
    if nanoseconds:
        src = dataclasses.replace(src, nanosecond_columns=nanoseconds)
    durations = _duration_units(view, features, files)
    if durations:
        src = dataclasses.replace(src, duration_units=durations)
    return src


def _duration_units(
    view: RegisteredView, features: Sequence[str], files: Sequence[str]
) -> tuple[tuple[str, str], ...]:
    """The features that hold durations (Arrow's type, which DuckDB reads as plain
    integers) and their unit, from the files' Arrow schemas.

    Raises :class:`InvalidInput` for a feature that is a duration in one file and not in
    another (or in another unit): its integers would mean different things.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    found: dict[str, set[str | None]] = {f: set() for f in features}
    for file in files:
        schema = pq.read_schema(file)
        for f in features:
            i = schema.get_field_index(f)
            if i < 0:  # absent from this file of a dataset: nulls there
                continue
            t = schema.field(i).type
            found[f].add(t.unit if pa.types.is_duration(t) else None)
    out = []
    for f, units in found.items():
        if units == {None} or not units:
            continue
        if len(units) > 1:
            raise InvalidInput(
                f"feature {f!r} of feature view {view.name!r} holds durations in some files "
                "of its source and other values (or another unit) in others",
                field=f,
                hint="store the column with one type in every file and register it again",
            )
        (unit,) = units
        assert unit is not None
        out.append((f, unit))
    return tuple(out)


# Bump when the prepared file's layout or the rules that make it change.
# 2: nanosecond event times floored, not rounded; 3: durations kept (as microseconds)
_PREPARED_FORMAT = 3


def _prepared_path(ctx: Context, view: RegisteredView, files: tuple[str, ...] | None) -> Path:
    """Where the prepared copy of ``view``'s rows lives; ``files`` for a dataset source."""
    if files is None:  # a stored frame: its digest names its bytes
        identity: Any = view.source
    else:
        stats = [Path(f).stat() for f in files]
        identity = [[f, st.st_size, st.st_mtime_ns] for f, st in zip(files, stats, strict=True)]
    what = [
        _PREPARED_FORMAT,
        identity,
        list(view.keys),
        view.timestamp,
        view.created,
        list(view.features),
    ]
    key = hashlib.sha256(json.dumps(what).encode()).hexdigest()[:40]
    return ctx.settings.home / "cache" / "features" / "prepared" / f"{key}.parquet"


def prepared_view(
    ctx: Context, con: Any, view: RegisteredView, features: Sequence[str]
) -> pit_join.PreparedView:
    """The prepared copy of ``view``'s rows for the join, written first if it is missing.

    Raises :class:`InvalidInput` naming a column the source lacks (when it is written).

    Example:
        >>> # prepared_view(ctx, pit_join.connect(), view, ["clicks"]).path
    """
    kind, _, ref = view.source.partition(":")
    files = None if kind == "frame" else _dataset_files(ref)
    path = _prepared_path(ctx, view, files)
    if kind == "frame" and isinstance(ctx.artifacts, LocalArtifactStore):
        # A corrupted stored frame is an error even while its prepared copy is intact:
        # the copy is only as good as the bytes it came from (verified once per process).
        _frame_file(ctx, ref)
    if not path.is_file():
        src = view_source(ctx, con, view, view.features, files)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex}.tmp")
        try:
            pit_join.write_prepared(con, src, tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return pit_join.PreparedView(
        name=view.name,
        path=str(path),
        keys=view.keys,
        features=tuple(features),
        ttl_us=_ttl_us(view),
        durations=tuple(f for f in pit_join.prepared_durations(path) if f in features),
    )
