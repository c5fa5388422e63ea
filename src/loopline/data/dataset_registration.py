"""Registering a dataset version: :func:`register`.

Turns a source (a DataFrame, an Arrow table, a CSV, Parquet or other file, a folder) into
files to store, ingests them (:mod:`loopline.data.ingest`, with the stat-keyed
:mod:`loopline.data.hashcache`), and records the version in the catalog, or returns the
newest version when the content is the same. The catalog (and SQLAlchemy) is opened on a
helper thread while the bytes are copied. The public face is
:mod:`loopline.data.datasets` (``ll.datasets.register``).

Example:
    >>> # v = ll.datasets.register("churn", "data/churn.csv", description="Q3 export")
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopline.core.artifacts import hash_bytes
from loopline.core.columns import duplicate_names
from loopline.core.context import Context, get_context
from loopline.core.scratch import writing

# The catalog (and SQLAlchemy with it) is imported where it is used: register() loads it
# while the bytes are copied (see _open_catalog), and the CLI's start-up does not wait.
from loopline.data import formats
from loopline.data.dataset_own_files import _home, _own_folders, _sqlite_file, sweep_temp_files
from loopline.data.dataset_refs import check_name
from loopline.data.dataset_version import TABLE_FILE, DatasetVersion, _version
from loopline.data.hashcache import HashCache
from loopline.data.ingest import (
    IngestReport,
    ProgressFn,
    SourceFile,
    cached_digests,
    ingest,
    known_entries,
    manifest_bytes,
    scan_folder,
    single_file,
)
from loopline.errors import InvalidInput

if TYPE_CHECKING:
    import pyarrow as pa


def _is_dataframe(obj: object) -> bool:
    pandas = sys.modules.get("pandas")  # an object cannot be a DataFrame if pandas is unloaded
    return pandas is not None and isinstance(obj, pandas.DataFrame)


def _is_arrow_table(obj: object) -> bool:
    pyarrow = sys.modules.get("pyarrow")  # nor an Arrow table if pyarrow is unloaded
    return pyarrow is not None and isinstance(obj, pyarrow.Table)


def _source_table(
    source: object, scratch: Path, skip: list[Path]
) -> tuple[str, list[SourceFile], pa.Table | None]:
    """Turn ``source`` into (kind, files to ingest, table for schema/stats)."""
    if _is_dataframe(source) or _is_arrow_table(source):
        from loopline.data import tabular

        table = tabular.from_pandas(source) if _is_dataframe(source) else source
        return "table", [_write_table(table, scratch)], table
    if not isinstance(source, str | os.PathLike):
        raise InvalidInput(
            f"cannot register a {type(source).__name__}",
            field="source",
            hint="pass a pandas DataFrame, a pyarrow Table, or the path of a file or folder",
        )
    path = Path(source).expanduser()
    if path.is_dir():
        files = scan_folder(path, skip=skip)
        if not files:
            raise InvalidInput(
                f"the folder {path} holds no files", field="source", hint="add files to it first"
            )
        return "files", files, None
    if not path.is_file():
        raise InvalidInput(
            f"there is no file or folder at {path}",
            field="source",
            hint="check the path (relative paths start from the current folder)",
        )
    if not (formats.is_csv(path) or formats.is_parquet(path)):
        return "files", [single_file(path, path.name)], None
    from loopline.data import tabular

    if formats.is_csv(path):
        table = tabular.read_csv(path)
        return "table", [_write_table(table, scratch)], table
    table = tabular.read_parquet(path)
    return "table", [single_file(path, TABLE_FILE)], table


def _write_table(table: pa.Table, scratch: Path) -> SourceFile:
    names = table.column_names
    dupes = duplicate_names(names)
    if dupes:
        raise InvalidInput(
            f"the table has duplicate column names: {', '.join(dupes)}",
            field="source",
            hint="rename the columns so that each name is used once",
        )
    from loopline.data import tabular

    out = scratch / TABLE_FILE
    tabular.write_parquet(table, out)
    return single_file(out, TABLE_FILE, cacheable=False)


def _open_catalog(ctx: Context) -> None:
    """Import the catalog (and with it SQLAlchemy) and open the migrated database."""
    importlib.import_module("loopline.data.catalog")
    ctx.engine  # noqa: B018 - a cached property: opening it is the point


def _first_use(ctx: Context) -> bool:
    """Whether the metadata database is a SQLite file not made yet (opening it migrates it)."""
    if "engine" in vars(ctx):
        return False
    database = _sqlite_file(ctx)
    return database is not None and not database.exists()


def register(
    name: str,
    source: object,
    *,
    description: str | None = None,
    progress: ProgressFn | None = None,
) -> DatasetVersion:
    """Store ``source`` as the next version of dataset ``name``, or return the newest
    version unchanged when it has the same content.

    ``source`` is a pandas DataFrame or pyarrow Table (stored as Parquet), the path of a
    CSV file (converted to Parquet), of a Parquet file (kept as is), of any other file, or
    of a folder (its files kept byte for byte). ``progress(bytes_done, bytes_total)`` is
    called while files are hashed and stored. Writes the audit event ``dataset.register``.

    ``description`` is the new version's. When the content is the newest version's, that
    version is returned and, if ``description`` is given and another, its description is
    replaced (audit event ``dataset.describe``; ``description_updated`` is then True): the
    same content is the same version. Leaving ``description`` out changes nothing.

    Example:
        >>> # v = ll.datasets.register("churn", "data/churn.csv", description="Q3 export")
        >>> # v.version, v.hash, v.ingest.hashed
    """
    check_name(name)
    if description is not None and not isinstance(description, str):
        raise InvalidInput("description must be text", field="description")
    if description is not None:
        # imported here: tracking.validation loads SQLAlchemy, which `import ll.datasets` must not
        from loopline.core.text import check_no_nul

        check_no_nul(description, "description")
    ctx = get_context()
    home = _home(ctx)
    sweep_temp_files(ctx)
    # The scratch folder (a CSV's Parquet copy) is a temp file of this process: a sweep by
    # another leaves it alone until the block ends, and removes it if this process is killed.
    with writing(home / "tmp") as token:
        scratch = Path(tempfile.mkdtemp(prefix=f"{token}.register-", dir=home / "tmp"))
        try:
            return _store_version(ctx, home, scratch, name, source, description, progress)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def _store_version(
    ctx: Context,
    home: Path,
    scratch: Path,
    name: str,
    source: object,
    description: str | None,
    progress: ProgressFn | None,
) -> DatasetVersion:
    """:func:`register`'s work, with ``scratch`` its own folder for converted files."""
    cache = HashCache(home / "hashcache.db")
    try:
        kind, files, table = _source_table(source, scratch, _own_folders(ctx))
        known = cached_digests(files, cache)
        entries = known_entries(files, known)
        if entries is not None:
            # Everything is known: if it is the newest version, nothing needs storing.
            # (loopline.data.quick_readd answers this case for the CLI without SQLAlchemy.)
            from loopline.data import catalog

            newest = catalog.find_version(ctx.engine, name, None)
            if (
                newest is not None
                and description in (None, newest.description)
                and newest.kind == kind
                and newest.hash == hash_bytes(manifest_bytes(entries))
            ):
                report = IngestReport(
                    files=len(files), bytes=sum(e.size for e in entries), cached=len(files)
                )
                if progress is not None:
                    progress(report.bytes, report.bytes)
                return _version(ctx, newest, entries, report=report)
        # The copy does not need the catalog: a helper thread loads it (SQLAlchemy) and opens
        # the database meanwhile, which hides that start-up (~0.3 s in a fresh process: the
        # CLI) behind the disk. An error opening it is raised once the copy is done, before
        # anything is recorded; the copied objects are then unreferenced but harmless.
        if _first_use(ctx):
            # A new database is migrated when opened: a fraction of a second of Python holding
            # the GIL that the copying threads need between reads, which slows the copy more than
            # it hides. Open it first.
            _open_catalog(ctx)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="catalog-open") as opener:
            opening = opener.submit(_open_catalog, ctx)
            entries, report = ingest(files, ctx.artifacts, cache, known=known, progress=progress)
            manifest_hash = ctx.artifacts.put_bytes(manifest_bytes(entries))
            opening.result()
        from loopline.data import catalog

        schema: dict[str, str] = {}
        stats: dict[str, dict[str, Any]] = {}
        if table is not None:
            from loopline.data import tabular

            schema = tabular.parquet_schema(files[0].abs_path)
            stats = tabular.table_stats(table)
        done = catalog.register_version(
            ctx,
            name=name,
            description=description,
            kind=kind,
            manifest_hash=manifest_hash,
            entries=entries,
            schema=schema,
            stats=stats,
            row_count=table.num_rows if table is not None else None,
        )
        return _version(
            ctx,
            done.row,
            entries,
            created_now=done.created,
            description_updated=done.description_updated,
            report=report,
        )
    finally:
        cache.close()
