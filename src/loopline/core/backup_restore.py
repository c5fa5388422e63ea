"""``restore``: load a backup written by :mod:`loopline.core.backup` into an empty store.

Order of work, so that a bad backup is refused before anything is written:

1. read ``manifest.json`` (none: the backup is incomplete, refused) and check its format;
2. refuse a backup from a schema revision this code does not know (a newer Loopline);
3. verify the checksum of every table file and of the artifact index, naming a bad file;
4. refuse a target database that holds data, unless ``force`` (then say what is replaced);
5. copy the artifacts into the store, each verified against its content address (bytes
   go first, as everywhere in Loopline: no row may name missing bytes);
6. in ONE transaction: bring the target schema to the backup's revision (Alembic, up or
   down), empty every table, insert the rows in foreign-key order in batches, reset
   PostgreSQL sequences, check every row count and migrate to the newest schema this
   code knows; a failure (or a kill) rolls all of it back, schema changes included;
7. with an online store: write the backup's online feature rows into it (after the
   commit: they are derived data, which ``loopline features materialize`` can rebuild),
   then compare its views with the restored feature views and report each one whose
   rows do not match its last materialization (or are not in the backup: format 1), so
   that the caller can say which views to materialize again.

Rows are bound through the *target's* reflected column types, so a backup taken on SQLite
loads into PostgreSQL and back.

Example:
    >>> # report = restore(engine, store, "/backups/2024-06-01")
    >>> # report.rows, report.artifact_count
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from loopline.core import audit
from loopline.core.artifacts import ArtifactBatch, ArtifactStore, check_digest, hash_file
from loopline.core.backup import Progress, reflect_tables
from loopline.core.backup_format import (
    ARTIFACT_INDEX,
    ARTIFACT_OBJECTS,
    MANIFEST,
    Manifest,
    TableEntry,
    column_kind,
    decode_batch,
)
from loopline.core.backup_location import BackupSource
from loopline.core.backup_online import (
    ROWS_FILE,
    VIEWS_FILE,
    OnlinePart,
    load_online,
    read_views,
)
from loopline.core.db import create_engine_for, reading
from loopline.core.db_migrations import (
    current_revision,
    head_revision,
    known_revisions,
    lock_migrations,
    migrate_in,
)
from loopline.core.db_migrations import upgrade as upgrade_to
from loopline.errors import Conflict, IntegrityError, InvalidInput

_COPY_WORKERS = 8


@dataclass(frozen=True)
class RestoreReport:
    """What :func:`restore` did."""

    source: str
    alembic_revision: str
    schema_after: str
    tables: int
    rows: int
    artifact_count: int
    artifact_bytes: int
    artifacts_present: int
    replaced: dict[str, int] = field(default_factory=dict)
    audit_checked: int = 0
    audit_problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: Whether the backup holds online feature rows (format 1 backups do not).
    online_in_backup: bool = False
    online_views: int = 0
    online_rows: int = 0
    #: Online views replaced (a forced restore drops the target's views).
    online_replaced: list[str] = field(default_factory=list)
    #: Feature views to materialize again (view -> why): their online rows are not those
    #: of their last materialization.
    online_rematerialize: dict[str, str] = field(default_factory=dict)


def _no_progress(phase: str, done: int, total: int) -> None:
    return None


def read_manifest(source: BackupSource) -> Manifest:
    """The backup's manifest; :class:`IntegrityError` when missing (incomplete) or invalid.

    Example:
        >>> # read_manifest(BackupSource("/backups/2024-06-01")).alembic_revision
    """
    data = source.read_manifest()
    if data is None:
        raise IntegrityError(
            f"{source.url} has no {MANIFEST}: the backup is incomplete "
            "(interrupted, still being written, or not a Loopline backup)",
            hint="restore from a complete backup",
        )
    return Manifest.from_json(data, f"{source.url}/{MANIFEST}")


def _check_revision(manifest: Manifest, source: BackupSource) -> None:
    if manifest.alembic_revision not in known_revisions():
        raise InvalidInput(
            f"backup {source.url} is at schema revision {manifest.alembic_revision!r}, "
            f"which this Loopline does not know (its newest is {head_revision()!r}): "
            f"it was made by a newer Loopline ({manifest.loopline_version})",
            field="SRC",
            hint="upgrade Loopline to at least the version that made the backup",
        )


def _check_tables(manifest: Manifest, source: BackupSource) -> None:
    """Refuse a backup without a file for every table of its schema revision.

    The manifest has no checksum of its own: one edited to leave a table out would
    otherwise restore without it (and ``--force`` would leave the replaced store's rows
    in that table).
    """
    lacking = sorted(
        set(_seeded_rows(manifest.alembic_revision)) - {t.name for t in manifest.tables}
    )
    if lacking:
        raise IntegrityError(
            f"backup {source.url} lacks tables {lacking} of its schema revision "
            f"{manifest.alembic_revision}",
            hint="the backup is incomplete or its manifest was edited: restore another one",
        )


def _verify_file(source: BackupSource, rel: str, expected: str) -> Path:
    path = source.fetch(rel)
    actual = hash_file(path)
    if actual != expected:
        raise IntegrityError(
            f"backup file {rel} in {source.url} is corrupted: its checksum is {actual[:16]}…, "
            f"the manifest says {expected[:16]}…",
            hint="restore from another backup",
        )
    return path


def _verify_tables(source: BackupSource, manifest: Manifest) -> dict[str, Path]:
    paths: dict[str, Path] = {}
    for entry in manifest.tables:
        path = _verify_file(source, entry.file, entry.blake3)
        meta = pq.ParquetFile(path).metadata
        if meta.num_rows != entry.rows:
            raise IntegrityError(
                f"backup file {entry.file} holds {meta.num_rows} rows, the manifest says "
                f"{entry.rows}",
                hint="restore from another backup",
            )
        paths[entry.name] = path
    return paths


def _read_index(source: BackupSource, manifest: Manifest) -> list[tuple[str, int]]:
    path = _verify_file(source, ARTIFACT_INDEX, manifest.artifact_index_blake3)
    items: list[tuple[str, int]] = []
    for line in path.read_text().splitlines():
        digest, _, size = line.partition("\t")
        items.append((check_digest(digest), int(size)))
    source.release(path)
    if len(items) != manifest.artifact_count or sum(n for _, n in items) != (
        manifest.artifact_bytes
    ):
        raise IntegrityError(
            f"backup file {ARTIFACT_INDEX} does not match the manifest's artifact count/bytes",
            hint="restore from another backup",
        )
    return items


@cache
def _seeded_rows(revision: str) -> dict[str, int]:
    """Rows a fresh schema at ``revision`` already holds (migrations seed a few)."""
    engine = create_engine_for("sqlite:///:memory:")
    try:
        upgrade_to(engine, revision)
        with reading(engine) as conn:
            return _row_counts(conn, reflect_tables(conn))
    finally:
        engine.dispose()


def _row_counts(conn: Connection, tables: Iterable[sa.Table]) -> dict[str, int]:
    return {
        t.name: int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
        for t in tables
    }


def existing_data(engine: Engine) -> dict[str, int]:
    """Tables of the target that hold data (beyond what migrations seed), with row counts.

    Empty for an empty store, so ``restore`` may proceed without ``force``.

    Example:
        >>> from loopline.core.db import create_engine_for
        >>> from loopline.core.db_migrations import upgrade
        >>> engine = create_engine_for("sqlite:///:memory:"); upgrade(engine)
        >>> existing_data(engine)
        {}
    """
    revision = current_revision(engine)
    if revision is None:
        return {}
    with reading(engine) as conn:
        counts = _row_counts(conn, reflect_tables(conn))
    seeded = _seeded_rows(revision) if revision in known_revisions() else {}
    return {name: n for name, n in counts.items() if n > seeded.get(name, 0)}


def _restore_artifacts(
    source: BackupSource,
    store: ArtifactStore,
    index: list[tuple[str, int]],
    progress: Progress,
) -> int:
    """Copy the objects the store lacks, verifying each; return how many were present."""
    lock = threading.Lock()
    counts = [0, 0]  # done, already present

    def copy(batch: ArtifactBatch, digest: str) -> None:
        present = store.exists(digest)
        if not present:
            rel = f"{ARTIFACT_OBJECTS}/{digest[:2]}/{digest[2:]}"
            path = _verify_file(source, rel, digest)
            try:
                batch.put_file(path)
            finally:
                source.release(path)
        with lock:
            counts[0] += 1
            counts[1] += present
            progress("artifacts", counts[0], len(index))

    progress("artifacts", 0, len(index))
    with store.batch() as batch:
        pool = ThreadPoolExecutor(max_workers=_COPY_WORKERS)
        try:
            for _ in pool.map(lambda d: copy(batch, d), [d for d, _ in index]):
                pass
        finally:
            # After a failure the queued copies are dropped: each would otherwise wait out
            # the store's timeouts in turn before the error reached the caller.
            pool.shutdown(wait=True, cancel_futures=True)
    return counts[1]


@cache
def optuna_table_names() -> tuple[str, ...]:
    """The tables Optuna's storage keeps in the metadata database (``ll.tune``'s studies).

    Example:
        >>> "trials" in optuna_table_names()
        True
    """
    from optuna.storages._rdb import models

    return tuple(sorted(models.BaseModel.metadata.tables))


def _create_optuna_tables(conn: Connection, missing: set[str]) -> bool:
    """Create Optuna's tables in the target when the backup has some it lacks.

    A store that ran ``ll.tune`` holds Optuna's tables, which no Loopline migration makes
    (Optuna creates them on first use), so a new target has none. They are created in the
    restore's transaction, as Optuna itself would (a failed restore takes them back on
    PostgreSQL). Returns whether any were created.
    """
    if not missing or not missing <= set(optuna_table_names()):
        return False
    from optuna.storages._rdb import models

    models.BaseModel.metadata.create_all(conn, checkfirst=True)
    return True


def _insert_statement(conn: Connection, table: sa.Table) -> sa.Insert:
    values: dict[str, Any] = {}
    for i, col in enumerate(table.columns):
        if column_kind(col.type) == "json":
            # JSON arrives as its stored text: PostgreSQL parses it with a cast; SQLite
            # stores JSON as text anyway.
            param = sa.bindparam(f"b{i}", type_=sa.Text())
            values[col.name] = (
                sa.cast(param, col.type) if conn.dialect.name == "postgresql" else param
            )
        else:
            values[col.name] = sa.bindparam(f"b{i}", type_=col.type)
    return table.insert().values(values)


def _check_columns(table: sa.Table, entry: TableEntry, revision: str) -> None:
    have = [c.name for c in table.columns]
    want = [c.name for c in entry.columns]
    extra, lacking = sorted(set(want) - set(have)), sorted(set(have) - set(want))
    if extra or lacking:
        parts = [f"has columns {extra} the target lacks"] if extra else []
        parts += [f"lacks columns {lacking} the target has"] if lacking else []
        raise IntegrityError(
            f"table {entry.name}: the backup {' and '.join(parts)} at schema revision {revision}",
            hint="the backup does not match this Loopline's migration of that revision: "
            "restore it with the Loopline version that made it",
        )


def _text_limits(conn: Connection, table: sa.Table) -> dict[str, int | None]:
    """Text columns of a PostgreSQL target and their length limit (None: unlimited).

    SQLite stores any text in any text column: a NUL character, or more characters than
    ``VARCHAR(n)`` declares. PostgreSQL refuses both, which in the middle of a restore was
    a raw ``DataError``; :func:`_check_text` names the value instead.
    """
    if conn.dialect.name != "postgresql":
        return {}
    return {
        c.name: getattr(c.type, "length", None)
        for c in table.columns
        if column_kind(c.type) in ("str", "json")
    }


def _check_text(
    table: sa.Table, rows: list[dict[str, Any]], fits: dict[str, int | None], first: int
) -> None:
    """Refuse a text value PostgreSQL cannot store, naming the table, column and row."""
    for i, row in enumerate(rows):
        for name, limit in fits.items():
            value = row[name]
            if not isinstance(value, str):
                continue
            if "\x00" in value:
                why = "contains a NUL character (\\x00), which PostgreSQL cannot store"
            elif limit is not None and len(value) > limit:
                why = f"is {len(value)} characters, over the column's limit of {limit}"
            else:
                continue
            key = ", ".join(f"{c.name}={row[c.name]!r}" for c in table.primary_key.columns)
            raise InvalidInput(
                f"table {table.name}, row {first + i + 1}"
                + (f" ({key})" if key else "")
                + f": {name} {why}",
                field=f"{table.name}.{name}",
                hint="the backup was made on SQLite, which stores it: restore it into "
                "SQLite, or fix the value in the source store and back up again",
            )


def load_table(
    conn: Connection,
    table: sa.Table,
    entry: TableEntry,
    path: Path,
    *,
    batch_rows: int = 5_000,
    on_rows: Callable[[int], None] | None = None,
) -> int:
    """Insert the rows of one backed-up table file into ``table``, in batches; return the count.

    Values are bound through ``table``'s (the target's) column types; the caller has checked
    that the file has the same columns.

    Example:
        >>> # load_table(conn, runs_table, manifest.tables[3], Path("bk/tables/runs.parquet"))
    """
    stmt = _insert_statement(conn, table)
    names = [c.name for c in table.columns]
    # SQLite keeps no time zone: its timestamps come back naive, as UTC wall time; a
    # time-zone-aware target column (PostgreSQL) gets them as UTC instants.
    to_utc = [c.name for c in table.columns if column_kind(c.type) == "datetime_tz"]
    fits = _text_limits(conn, table)
    count = 0
    for arrow_batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=names):
        rows = decode_batch(entry.columns, arrow_batch)
        if fits:
            _check_text(table, rows, fits, count)
        for row in rows if to_utc else ():
            for name in to_utc:
                value = row[name]
                if isinstance(value, dt.datetime) and value.tzinfo is None:
                    row[name] = value.replace(tzinfo=dt.UTC)
        params = [{f"b{i}": row[n] for i, n in enumerate(names)} for row in rows]
        if params:
            conn.execute(stmt, params)
        count += len(params)
        if on_rows is not None:
            on_rows(len(params))
    return count


def _reset_sequences(conn: Connection, tables: list[sa.Table]) -> None:
    """Move each PostgreSQL serial/identity sequence past the restored ids."""
    quote = conn.dialect.identifier_preparer
    for table in tables:
        qtable = quote.format_table(table)
        for col in table.columns:
            if column_kind(col.type) != "int":
                continue
            seq = conn.execute(
                sa.text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": qtable, "c": col.name}
            ).scalar()
            if seq is None:
                continue
            qcol = quote.quote(col.name)
            conn.execute(
                sa.text(
                    # next value: MAX + 1, or 1 when the table is empty or its ids are
                    # below 1 (MLflow's "Default" experiment has id 0)
                    f"SELECT setval(:s, GREATEST(COALESCE(MAX({qcol}), 1), 1), "
                    f"COALESCE(MAX({qcol}) >= 1, false)) FROM {qtable}"
                ),
                {"s": seq},
            )


def _load_rows(
    conn: Connection,
    manifest: Manifest,
    files: dict[str, Path],
    progress: Progress,
    batch_rows: int,
) -> None:
    total, done = manifest.total_rows(), 0
    entries = {e.name: e for e in manifest.tables}
    progress("tables", 0, total)
    tables = reflect_tables(conn)
    if _create_optuna_tables(conn, set(entries) - {t.name for t in tables}):
        tables = reflect_tables(conn)
    missing = sorted(set(entries) - {t.name for t in tables})
    if missing:
        raise IntegrityError(
            f"the backup has tables {missing} that schema revision "
            f"{manifest.alembic_revision} does not have",
            hint="the backup does not match its own schema revision: restore another one",
        )
    # Every row of the target is replaced: Loopline's tables and Optuna's (tuning
    # studies live in the same database), even those the backup has no file for, so
    # no study of the replaced store survives beside the backup's runs. Tables
    # foreign to both stay.
    optuna = set(optuna_table_names())
    for table in reversed(tables):  # children first
        if table.name in entries or table.name in optuna:
            conn.execute(table.delete())
    for table in tables:
        entry = entries.get(table.name)
        if entry is None:
            continue

        def on_rows(n: int) -> None:
            nonlocal done
            done += n
            progress("tables", done, total)

        _check_columns(table, entry, manifest.alembic_revision)
        load_table(conn, table, entry, files[table.name], batch_rows=batch_rows, on_rows=on_rows)
    if conn.dialect.name == "postgresql":
        _reset_sequences(conn, tables)
    counts = _row_counts(conn, [t for t in tables if t.name in entries])
    wrong = {n: c for n, c in counts.items() if c != entries[n].rows}
    if wrong:
        raise IntegrityError(
            f"after loading, row counts differ from the manifest: {wrong}",
            hint="nothing was restored (rolled back); report this as a bug",
        )


def _online_held(online: OnlinePart | None) -> list[str]:
    """The views the target online store holds (rows or a metadata record)."""
    if online is None:
        return []
    with online.store.snapshot() as snap:
        return sorted(snap.metas)


def _verify_online(
    source: BackupSource, manifest: Manifest, online: OnlinePart | None
) -> tuple[list[tuple[str, bytes, int]], Path | None]:
    """The backup's online views and the local path of its rows file, both verified."""
    entry = manifest.online
    if online is None or entry is None:
        return [], None
    views_path = _verify_file(source, VIEWS_FILE, entry.views_blake3)
    views = read_views(views_path, entry)
    source.release(views_path)
    return views, _verify_file(source, ROWS_FILE, entry.rows_blake3)


def _rematerialize(engine: Engine, online: OnlinePart) -> dict[str, str]:
    """Restored feature views whose online rows are not those of their last
    materialization (view -> why)."""
    with reading(engine) as conn, online.store.snapshot() as snap:
        return online.check(conn, snap.metas).mismatched


def restore(
    engine: Engine,
    store: ArtifactStore,
    src: str,
    *,
    online: OnlinePart | None = None,
    force: bool = False,
    storage_options: dict[str, Any] | None = None,
    progress: Progress | None = None,
    batch_rows: int = 5_000,
) -> RestoreReport:
    """Restore the backup at ``src`` (a folder or fsspec URL) into ``engine`` and ``store``.

    Refuses an incomplete or corrupted backup (:class:`IntegrityError` naming the file), a
    backup from a newer Loopline (:class:`InvalidInput`), and a target that holds data
    (:class:`Conflict`) unless ``force``, which replaces every row of the target. With
    ``online``, the backup's online feature rows are written into that store (which must
    hold no view, unless ``force``: its views are then dropped) and
    :attr:`RestoreReport.online_rematerialize` names the views to materialize again.

    Example:
        >>> # restore(create_engine_for(uri), open_artifact_store(url), "/backups/x")
    """
    report = progress or _no_progress
    start = time.perf_counter()
    source = BackupSource(src, storage_options)
    try:
        manifest = read_manifest(source)
        _check_revision(manifest, source)
        _check_tables(manifest, source)
        files = _verify_tables(source, manifest)
        index = _read_index(source, manifest)
        online_views, online_rows = _verify_online(source, manifest, online)
        target_rev = current_revision(engine)
        if target_rev is not None and target_rev not in known_revisions():
            raise Conflict(
                f"the target database is at schema revision {target_rev!r}, which this "
                "Loopline does not know",
                hint="restore into an empty database",
            )
        replaced = existing_data(engine)
        if replaced and not force:
            listing = ", ".join(f"{name} ({n} rows)" for name, n in sorted(replaced.items()))
            raise Conflict(
                f"the target metadata store already holds data: {listing}",
                hint="restore into an empty database, or pass --force to replace its contents",
            )
        online_held = _online_held(online)
        if online_held and not force:
            assert online is not None
            raise Conflict(
                f"the target online store {online.store.url} already holds feature views: "
                + ", ".join(online_held),
                hint="restore into an empty online store (LOOPLINE_ONLINE_STORE), or pass "
                "--force to replace its contents",
            )
        present = _restore_artifacts(source, store, index, report)
        # One transaction from the schema's first change to the newest schema: a failure
        # or a kill anywhere leaves the target as it was (a forced restore of an older
        # backup downgrades the target first, and that must not outlive a failed load).
        with engine.begin() as conn:
            lock_migrations(conn)
            migrate_in(conn, manifest.alembic_revision)
            _load_rows(conn, manifest, files, report, batch_rows)
            migrate_in(conn, "head")
        verified = audit.verify(engine)
        rematerialize: dict[str, str] = {}
        if online is not None:
            if online_rows is not None:
                load_online(online.store, online_views, online_rows, drop=online_held)
            else:
                for view in online_held:
                    online.store.delete(view)
            rematerialize = _rematerialize(engine, online)
    finally:
        source.close()
    return RestoreReport(
        source=source.url,
        alembic_revision=manifest.alembic_revision,
        schema_after=current_revision(engine) or "",
        tables=len(manifest.tables),
        rows=manifest.total_rows(),
        artifact_count=manifest.artifact_count,
        artifact_bytes=manifest.artifact_bytes,
        artifacts_present=present,
        replaced=replaced,
        audit_checked=verified.checked,
        audit_problems=verified.problems,
        seconds=round(time.perf_counter() - start, 3),
        online_in_backup=manifest.online is not None,
        online_views=len(online_views),
        online_rows=sum(n for _, _, n in online_views),
        online_replaced=online_held,
        online_rematerialize=rematerialize,
    )
