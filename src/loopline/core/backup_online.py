"""The online feature store's rows in a backup: two Parquet files beside the tables.

The online store (:mod:`loopline.data.online`) lives outside the metadata database (its
own SQLite file, or Redis), so the metadata snapshot does not cover it. A backup reads it
while the metadata snapshot is open, through the store's own snapshot, and checks each
view's metadata record against the feature view and its last materialization in the
metadata snapshot (:class:`OnlineCheck`, computed by the feature store's code: ``core``
does not know its tables). A materialization runs in two steps (rows first, then its
record), so the two reads can disagree while one runs: the backup then takes both
snapshots again, up to :data:`ATTEMPTS` times. What still disagrees is said in the
report, and the restore names the views to materialize again.

Files::

    online/views.parquet   view (str), meta (bytes), rows (int): one row per view
    online/rows.parquet    view (str), key (str), value (bytes): by view, then key

Restoring writes each view through the store's own :meth:`write` (``replace=True``), so
the target may be another backend than the source (SQLite to Redis and back).

Example:
    >>> entry = OnlineEntry("sqlite:///x/online.db", 1, 2, "h1", 3, "h2", {})
    >>> OnlineEntry.from_dict(entry.to_dict()) == entry
    True
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy.engine import Connection

from loopline.core.artifacts import hash_file
from loopline.errors import IntegrityError

if TYPE_CHECKING:  # backup_location imports backup_format, which imports this module
    from loopline.core.backup_location import BackupSink

VIEWS_FILE = "online/views.parquet"
ROWS_FILE = "online/rows.parquet"
#: Times a backup takes the metadata and online snapshots when they disagree.
ATTEMPTS = 5
_PAUSES_S = (0.1, 0.2, 0.4, 0.8)
_BATCH = 10_000
_VIEWS_SCHEMA = pa.schema(
    [("view", pa.large_string()), ("meta", pa.large_binary()), ("rows", pa.int64())]
)
_ROWS_SCHEMA = pa.schema(
    [("view", pa.large_string()), ("key", pa.large_string()), ("value", pa.large_binary())]
)


class OnlineView(Protocol):
    """A snapshot of an online store (:class:`loopline.data.online.OnlineSnapshot`)."""

    metas: dict[str, bytes]

    def read_view(self, view: str) -> tuple[bytes | None, list[tuple[str, bytes]]]: ...


class OnlineTarget(Protocol):
    """An online store (:class:`loopline.data.online.OnlineStore`), as backup uses it."""

    url: str

    def snapshot(self) -> contextlib.AbstractContextManager[OnlineView]: ...

    def write(
        self, view: str, rows: Iterable[tuple[str, bytes]], *, meta: bytes, replace: bool
    ) -> int: ...

    def delete(self, view: str) -> bool: ...


@dataclass(frozen=True)
class OnlineCheck:
    """The online store's views against the metadata database's feature views.

    ``registered``: the online views that are registered feature views (the others are
    left out of a backup: no view of the snapshot names them). ``mismatched``: view ->
    why its online rows do not match its definition or last recorded materialization.
    """

    registered: frozenset[str]
    mismatched: dict[str, str] = field(default_factory=dict)


#: ``check(conn, metas)``: compare the online metadata records with the feature views
#: read through ``conn`` (:func:`loopline.data.feature_registry.check_online`).
Check = Callable[[Connection, Mapping[str, bytes]], OnlineCheck]


@dataclass(frozen=True)
class OnlinePart:
    """The online store to back up or restore into, and the check against the registry."""

    store: OnlineTarget
    check: Check


@dataclass
class OnlineEntry:
    """The online rows in the manifest: where they came from, the files, and what did not
    match the metadata snapshot when the backup was made."""

    store: str
    views: int
    rows: int
    views_blake3: str
    rows_bytes: int
    rows_blake3: str
    mismatched: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        """The manifest's ``online`` object."""
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Any) -> OnlineEntry:
        """Parse the manifest's ``online`` object (KeyError/TypeError/ValueError if bad)."""
        if not isinstance(raw, dict) or not isinstance(raw["mismatched"], dict):
            raise ValueError("online is not an object with a mismatched object")
        return cls(
            store=str(raw["store"]),
            views=int(raw["views"]),
            rows=int(raw["rows"]),
            views_blake3=str(raw["views_blake3"]),
            rows_bytes=int(raw["rows_bytes"]),
            rows_blake3=str(raw["rows_blake3"]),
            mismatched={str(k): str(v) for k, v in raw["mismatched"].items()},
        )


@contextlib.contextmanager
def consistent_snapshots(
    open_meta: Callable[[], contextlib.AbstractContextManager[Connection]],
    part: OnlinePart,
) -> Iterator[tuple[Connection, OnlineView, OnlineCheck]]:
    """The metadata snapshot, then the online one, taken again while they disagree.

    ``open_meta`` opens the metadata snapshot and fixes it (its first read done). Both are
    held open by the caller's block; the check is that of the last attempt.

    Example:
        >>> # with consistent_snapshots(lambda: snapshot(engine), part) as (conn, snap, chk):
    """
    for attempt in range(ATTEMPTS):
        with open_meta() as conn, part.store.snapshot() as snap:
            check = part.check(conn, snap.metas)
            if not check.mismatched or attempt == ATTEMPTS - 1:
                yield conn, snap, check
                return
        time.sleep(_PAUSES_S[min(attempt, len(_PAUSES_S) - 1)])


def dump_online(sink: BackupSink, snap: OnlineView, check: OnlineCheck, url: str) -> OnlineEntry:
    """Write the rows of every registered online view into the backup.

    A view whose record changed while it was read (Redis) is added to ``mismatched``.

    Example:
        >>> # entry = dump_online(sink, snap, check, store.url)
    """
    mismatched = dict(check.mismatched)
    views: list[tuple[str, bytes, int]] = []
    rows_path = sink.path(ROWS_FILE)
    total = 0
    with pq.ParquetWriter(rows_path, _ROWS_SCHEMA, compression="zstd") as writer:
        for view in sorted(check.registered):
            meta, rows = snap.read_view(view)
            if meta is None:
                continue
            if meta != snap.metas.get(view):
                mismatched.setdefault(view, "it was materialized while the backup read it")
            for start in range(0, len(rows), _BATCH):
                part = rows[start : start + _BATCH]
                batch = pa.record_batch(
                    [[view] * len(part), [k for k, _ in part], [v for _, v in part]],
                    schema=_ROWS_SCHEMA,
                )
                writer.write_batch(batch)
            views.append((view, meta, len(rows)))
            total += len(rows)
    views_path = sink.path(VIEWS_FILE)
    pq.write_table(
        pa.table(
            [[v for v, _, _ in views], [m for _, m, _ in views], [n for _, _, n in views]],
            schema=_VIEWS_SCHEMA,
        ),
        views_path,
        compression="zstd",
    )
    entry = OnlineEntry(
        store=url,
        views=len(views),
        rows=total,
        views_blake3=hash_file(views_path),
        rows_bytes=rows_path.stat().st_size,
        rows_blake3=hash_file(rows_path),
        mismatched=mismatched,
    )
    sink.publish(ROWS_FILE)
    sink.publish(VIEWS_FILE)
    return entry


def read_views(path: Path, entry: OnlineEntry) -> list[tuple[str, bytes, int]]:
    """``(view, meta, rows)`` of the backup's views file, checked against the manifest.

    Example:
        >>> # read_views(source.fetch(VIEWS_FILE), manifest.online)
    """
    table = pq.read_table(path)
    views = list(
        zip(
            table.column("view").to_pylist(),
            table.column("meta").to_pylist(),
            table.column("rows").to_pylist(),
            strict=True,
        )
    )
    if len(views) != entry.views or sum(n for _, _, n in views) != entry.rows:
        raise IntegrityError(
            f"backup file {VIEWS_FILE} does not match the manifest's online views/rows",
            hint="restore from another backup",
        )
    return views


def _view_rows(
    rows: Iterator[tuple[str, str, bytes]], view: str, n: int
) -> Iterator[tuple[str, bytes]]:
    for _ in range(n):
        got = next(rows, None)
        if got is None or got[0] != view:
            raise IntegrityError(
                f"backup file {ROWS_FILE} lacks rows of online view {view!r}",
                hint="restore from another backup",
            )
        yield got[1], got[2]


def _all_rows(path: Path) -> Iterator[tuple[str, str, bytes]]:
    for batch in pq.ParquetFile(path).iter_batches(batch_size=_BATCH):
        yield from zip(
            batch.column("view").to_pylist(),
            batch.column("key").to_pylist(),
            batch.column("value").to_pylist(),
            strict=True,
        )


def load_online(
    store: OnlineTarget,
    views: list[tuple[str, bytes, int]],
    rows_path: Path,
    *,
    drop: Iterable[str] = (),
) -> int:
    """Delete the views ``drop``, then write every backed-up view; return the row count.

    Example:
        >>> # load_online(store, read_views(views_path, entry), rows_path, drop=["old"])
    """
    for view in drop:
        store.delete(view)
    rows = _all_rows(rows_path)
    total = 0
    for view, meta, n in views:
        written = store.write(view, _view_rows(rows, view, n), meta=meta, replace=True)
        if written != n:
            raise IntegrityError(
                f"online view {view!r}: {written} rows written, the backup holds {n}",
                hint="report this as a bug",
            )
        total += written
    return total
