"""``backup``: a consistent copy of the metadata database and every artifact, to a folder.

The tables are discovered by reflecting the database (not from a list in code), so a table
added by a later migration is backed up without a change here. All tables are read in
one transaction, so the copy is one consistent snapshot while writers carry on:

* PostgreSQL: ``REPEATABLE READ``, ``READ ONLY`` — one snapshot for every statement;
* SQLite: a deferred ``BEGIN`` on a separate connection — in WAL mode the snapshot is
  fixed by the first read and writers are not blocked (Loopline's own engine begins with
  ``BEGIN IMMEDIATE``, which would hold the write lock for the whole backup).

Artifacts are listed *after* the snapshot is taken. Loopline stores an artifact's bytes
before it commits the row that names them, so every object the snapshot refers to is in
the list (objects written later are copied too, harmlessly). Each object is copied by its
content address and its hash verified on the way. The format (Parquet tables, manifest
last) is described in :mod:`loopline.core.backup_format`; restoring is
:mod:`loopline.core.backup_restore`.

The online feature store (given as ``online``) is read while the metadata snapshot is
open, and checked against it; see :mod:`loopline.core.backup_online`.

Example:
    >>> import tempfile, pathlib
    >>> from loopline.core.artifacts import open_artifact_store
    >>> from loopline.core.db import create_engine_for
    >>> from loopline.core.db_migrations import upgrade
    >>> engine = create_engine_for("sqlite:///:memory:"); upgrade(engine)
    >>> store = open_artifact_store(tempfile.mkdtemp())
    >>> dest = pathlib.Path(tempfile.mkdtemp()) / "bk"
    >>> report = backup(engine, store, str(dest))
    >>> (dest / "manifest.json").is_file(), report.artifact_count
    (True, 0)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow.parquet as pq
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from loopline.core.artifacts import ArtifactStore, hash_file
from loopline.core.backup_format import (
    ARTIFACT_INDEX,
    ARTIFACT_OBJECTS,
    ColumnSpec,
    Manifest,
    TableEntry,
    arrow_schema,
    check_table_name,
    column_kind,
    encode_batch,
)
from loopline.core.backup_location import BackupSink, open_sink
from loopline.core.backup_online import (
    OnlineCheck,
    OnlineEntry,
    OnlinePart,
    OnlineView,
    consistent_snapshots,
    dump_online,
)
from loopline.errors import NotFound

#: ``progress(phase, done, total)``: phase is ``"tables"`` (rows) or ``"artifacts"`` (objects).
Progress = Callable[[str, int, int], None]
ALEMBIC_TABLE = "alembic_version"
_COPY_WORKERS = 8


@dataclass(frozen=True)
class BackupReport:
    """What :func:`backup` wrote."""

    dest: str
    alembic_revision: str
    tables: int
    rows: int
    artifact_count: int
    artifact_bytes: int
    seconds: float
    #: Online feature views and rows in the backup (0, 0 when no online store was given).
    online_views: int = 0
    online_rows: int = 0
    #: Online views whose rows did not match their last recorded materialization (view ->
    #: why): a restore asks to materialize them again.
    online_mismatched: dict[str, str] = field(default_factory=dict)


def _no_progress(phase: str, done: int, total: int) -> None:
    return None


@contextlib.contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    """One read-only transaction that sees one consistent state of every table.

    Example:
        >>> # with snapshot(engine) as conn: rows = conn.execute(...)
    """
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            with conn.begin():
                yield conn
        return
    database = engine.url.database or ""
    if database in ("", ":memory:"):
        # An in-memory database has one shared connection: use it as is.
        with engine.begin() as conn:
            yield conn
        return
    reader = sa.create_engine(engine.url, poolclass=sa.pool.NullPool)

    @sa.event.listens_for(reader, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # SQLAlchemy's BEGIN below drives the transaction
        dbapi_conn.execute("PRAGMA busy_timeout=30000")
        dbapi_conn.execute("PRAGMA query_only=ON")

    @sa.event.listens_for(reader, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN DEFERRED")

    try:
        with reader.begin() as conn:
            yield conn
    finally:
        reader.dispose()


def reflect_tables(conn: Connection) -> list[sa.Table]:
    """Every table of the database except Alembic's, parents before children (FK order).

    Example:
        >>> # [t.name for t in reflect_tables(conn)][:3] -> ['alerts', 'artifact_paths', ...]
    """
    md = sa.MetaData()
    md.reflect(bind=conn)
    return [t for t in md.sorted_tables if t.name != ALEMBIC_TABLE]


def read_revision(conn: Connection) -> str:
    """The Alembic revision of the database behind ``conn``; NotFound when it has none.

    Example:
        >>> # with snapshot(engine) as conn: read_revision(conn)  -> '0008_monitoring'
    """
    try:
        rev = conn.execute(sa.text(f"SELECT version_num FROM {ALEMBIC_TABLE}")).scalar()
    except sa.exc.DBAPIError:
        rev = None
    if not rev:
        raise NotFound(
            "the metadata database has no Loopline schema: there is nothing to back up",
            hint="check LOOPLINE_URI",
        )
    return str(rev)


def _select(table: sa.Table, columns: list[ColumnSpec]) -> sa.Select[Any]:
    exprs: list[Any] = []
    for col, spec in zip(table.columns, columns, strict=True):
        # JSON as its stored text: keeps SQL NULL apart from JSON null, and the exact text.
        exprs.append(sa.cast(col, sa.Text).label(col.name) if spec.kind == "json" else col)
    query = sa.select(*exprs)
    order = list(table.primary_key.columns)
    return query.order_by(*order) if order else query


def dump_table(
    conn: Connection,
    table: sa.Table,
    sink: BackupSink,
    *,
    batch_rows: int = 10_000,
    on_rows: Callable[[int], None] | None = None,
) -> TableEntry:
    """Write one table's rows (primary-key order) as Parquet into the backup.

    Example:
        >>> # entry = dump_table(conn, table, sink); entry.rows, entry.blake3
    """
    name = check_table_name(table.name)
    columns = [ColumnSpec(c.name, column_kind(c.type)) for c in table.columns]
    rel = f"tables/{name}.parquet"
    path = sink.path(rel)
    rows = 0
    result = conn.execution_options(stream_results=True, yield_per=batch_rows).execute(
        _select(table, columns)
    )
    with pq.ParquetWriter(path, arrow_schema(columns), compression="zstd") as writer:
        for part in result.partitions():
            writer.write_batch(encode_batch(name, columns, part), row_group_size=batch_rows)
            rows += len(part)
            if on_rows is not None:
                on_rows(len(part))
    entry = TableEntry(name, rel, rows, path.stat().st_size, hash_file(path), columns)
    sink.publish(rel)
    return entry


def _copy_artifacts(
    store: ArtifactStore, sink: BackupSink, digests: list[str], progress: Progress
) -> list[tuple[str, int]]:
    """Copy every object into the backup, verifying its hash; return ``(digest, size)``s."""
    lock = threading.Lock()
    done = [0]

    def copy(digest: str) -> tuple[str, int]:
        rel = f"{ARTIFACT_OBJECTS}/{digest[:2]}/{digest[2:]}"
        path = store.get_file(digest, sink.path(rel))  # raises IntegrityError on a bad hash
        size = path.stat().st_size
        sink.publish(rel)
        with lock:
            done[0] += 1
            progress("artifacts", done[0], len(digests))
        return digest, size

    pool = ThreadPoolExecutor(max_workers=_COPY_WORKERS)
    try:
        return list(pool.map(copy, digests))
    finally:
        # After a failure the queued copies are dropped: each would otherwise wait out the
        # store's timeouts in turn before the error reached the caller.
        pool.shutdown(wait=True, cancel_futures=True)


def _write_index(sink: BackupSink, sizes: list[tuple[str, int]]) -> str:
    path = sink.path(ARTIFACT_INDEX)
    path.write_text("".join(f"{d}\t{n}\n" for d, n in sizes))
    digest = hash_file(path)
    sink.publish(ARTIFACT_INDEX)
    return digest


@contextlib.contextmanager
def _fixed_snapshot(engine: Engine) -> Iterator[Connection]:
    with snapshot(engine) as conn:
        read_revision(conn)  # the first read fixes the snapshot on SQLite
        yield conn


@contextlib.contextmanager
def _snapshots(
    engine: Engine, online: OnlinePart | None
) -> Iterator[tuple[Connection, OnlineView | None, OnlineCheck | None]]:
    """The metadata snapshot and, with ``online``, the online store's, checked together."""
    if online is None:
        with _fixed_snapshot(engine) as conn:
            yield conn, None, None
        return
    with consistent_snapshots(lambda: _fixed_snapshot(engine), online) as (conn, snap, check):
        yield conn, snap, check


def backup(
    engine: Engine,
    store: ArtifactStore,
    dest: str,
    *,
    online: OnlinePart | None = None,
    storage_options: dict[str, Any] | None = None,
    progress: Progress | None = None,
    loopline_version: str | None = None,
) -> BackupReport:
    """Back up the metadata database behind ``engine``, every object of ``store`` and,
    when given, the rows of the ``online`` feature store.

    ``dest`` is a new local folder or an fsspec URL (``s3://bucket/prefix``, opened with
    ``storage_options``). Nothing is visible at ``dest`` as a complete backup until every
    file is written (see :mod:`loopline.core.backup_location`).

    Example:
        >>> # backup(ctx.engine, ctx.artifacts, "/backups/2024-06-01")
    """
    from loopline import __version__

    report = progress or _no_progress
    start = time.perf_counter()
    sink = open_sink(dest, storage_options)
    online_entry: OnlineEntry | None = None
    try:
        with _snapshots(engine, online) as (conn, online_snap, check):
            revision = read_revision(conn)
            tables = reflect_tables(conn)
            counts = {
                t.name: int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
                for t in tables
            }
            total, done = sum(counts.values()), [0]

            def on_rows(n: int) -> None:
                done[0] += n
                report("tables", done[0], total)

            report("tables", 0, total)
            entries = [dump_table(conn, t, sink, on_rows=on_rows) for t in tables]
            if online is not None and online_snap is not None and check is not None:
                online_entry = dump_online(sink, online_snap, check, online.store.url)
            # Listed after the snapshot: everything it refers to is already stored.
            digests = list(store.iter_digests())
        report("artifacts", 0, len(digests))
        sizes = _copy_artifacts(store, sink, digests, report)
        nbytes = sum(n for _, n in sizes)
        manifest = Manifest(
            loopline_version=loopline_version or __version__,
            alembic_revision=revision,
            created=dt.datetime.now(dt.UTC).isoformat(),
            source_dialect=engine.dialect.name,
            tables=entries,
            artifact_count=len(digests),
            artifact_bytes=nbytes,
            artifact_index_blake3=_write_index(sink, sizes),
            online=online_entry,
        )
        sink.finish(manifest.to_json())
    except BaseException:
        sink.abort()
        raise
    return BackupReport(
        dest=sink.url,
        alembic_revision=revision,
        tables=len(entries),
        rows=manifest.total_rows(),
        artifact_count=len(digests),
        artifact_bytes=nbytes,
        seconds=round(time.perf_counter() - start, 3),
        online_views=online_entry.views if online_entry else 0,
        online_rows=online_entry.rows if online_entry else 0,
        online_mismatched=dict(online_entry.mismatched) if online_entry else {},
    )
