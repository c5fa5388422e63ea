"""Versioned datasets: immutable, content-addressed snapshots of tables and folders.

Used as ``ll.datasets``::

    import loopline as ll
    v = ll.datasets.register("churn", df)          # a DataFrame, a pyarrow Table,
    v = ll.datasets.register("images", "img/")     # a CSV/Parquet/other file, or a folder
    v = ll.datasets.get("churn", version=3)        # or "latest"; records lineage in a run
    ll.datasets.diff("churn@2", "churn@3")

A version is a manifest (the sorted list of relative path, BLAKE3 digest and size of its
files), stored as a JSON artifact whose digest is the version's :attr:`~DatasetVersion.hash`.
Files are stored once in the artifact store whatever the number of versions that hold
them. Registering the same content as the newest version returns that version. Each
version keeps the description it was registered with; the same content registered with
another description gives the newest version that description (see :func:`register`).

Kinds: ``table`` (one Parquet file, zstd; a DataFrame, an Arrow table or a CSV is converted,
a Parquet file is kept as it is; with schema and statistics) and ``files`` (a folder, or a
single file of another format, kept byte for byte).

Re-adding an unchanged folder is fast: a stat-keyed cache (``LOOPLINE_HOME/hashcache.db``,
see :mod:`loopline.data.hashcache`) skips the hashing and the store is asked whether it has
each digest before anything is copied (see :mod:`loopline.data.ingest`).

Example:
    >>> import pandas as pd, tempfile, loopline as ll
    >>> _ = ll.init(uri="sqlite:///:memory:", artifacts=tempfile.mkdtemp())
    >>> v = register("toy", pd.DataFrame({"x": [1, 2, 3]}))
    >>> (v.version, v.kind, v.row_count, v.schema)
    (1, 'table', 3, {'x': 'int64'})
    >>> register("toy", pd.DataFrame({"x": [1, 2, 3]})).version  # same content: same version
    1
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import os
import re
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from loopline.core.artifacts import ArtifactStore, hash_bytes
from loopline.core.columns import MAX_INTEGER, duplicate_names, integer_value
from loopline.core.context import Context, get_context
from loopline.core.scratch import Sweep, sweep, writing

# The catalog (and SQLAlchemy with it) is imported where it is used: register() loads it
# while the bytes are copied (see _open_catalog), and the CLI's start-up does not wait.
from loopline.data import formats
from loopline.data.catalog_rows import DatasetSummary, VersionRow
from loopline.data.checkout import checkout as _checkout_files
from loopline.data.checkout import materialize
from loopline.data.diff import (
    MEAN_TOL,
    NULL_TOL,
    STD_TOL,
    DatasetDiff,
    StatChange,
    diff_files,
    diff_rows,
    diff_stats,
)
from loopline.data.hashcache import HashCache
from loopline.data.ingest import (
    FileEntry,
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

__all__ = [
    "DatasetDiff",
    "DatasetSummary",
    "DatasetVersion",
    "FileEntry",
    "IngestReport",
    "StatChange",
    "checkout",
    "diff",
    "get",
    "list_datasets",
    "parse_ref",
    "pinned",
    "pins",
    "register",
    "version_rows",
    "versions",
]

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
TABLE_FILE = "data.parquet"


def check_name(name: object, field: str = "name") -> str:
    """Return ``name`` if it is a valid dataset name, else raise :class:`InvalidInput`.

    Example:
        >>> check_name("churn-2024.v1")
        'churn-2024.v1'
    """
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or ".." in name:
        raise InvalidInput(
            f"{field} {name!r} is not a valid dataset name",
            field=field,
            hint="use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit "
            "(no '/' and no '..')",
        )
    return name


@dataclass(frozen=True)
class DatasetVersion:
    """One immutable version of a dataset.

    ``schema`` maps column -> Arrow type and ``stats`` column -> statistics (tables only);
    ``files`` is the manifest; ``description`` is this version's own; ``ingest`` says what
    :func:`register` had to do (None when the version was loaded with :func:`get`), and
    ``description_updated`` whether it replaced the description of an unchanged version.
    """

    name: str
    version: int
    hash: str
    kind: str
    created: float
    schema: dict[str, str]
    stats: dict[str, dict[str, Any]]
    row_count: int | None
    byte_size: int
    files: tuple[FileEntry, ...]
    description: str | None
    actor: str
    created_now: bool = field(default=False, compare=False)
    description_updated: bool = field(default=False, compare=False)
    ingest: IngestReport | None = field(default=None, compare=False, repr=False)
    _store: ArtifactStore | None = field(default=None, compare=False, repr=False)
    _home: Path = field(default=Path(".loopline"), compare=False, repr=False)

    @property
    def ref(self) -> str:
        """``NAME@VERSION``, e.g. ``churn@3``."""
        return f"{self.name}@{self.version}"

    @property
    def folder(self) -> Path:
        """A local folder holding this version's files (see :attr:`path`)."""
        store = self._store if self._store is not None else get_context().artifacts
        return materialize(store, self._home, self.name, self.version, self.hash, self.files)

    @property
    def path(self) -> Path:
        """A local path to the data: the Parquet file of a table, the folder of files.

        Built on first use under ``LOOPLINE_HOME/checkouts/NAME/VERSION`` (hard links to the
        local artifact store, or verified downloads from S3). Treat it as read-only.

        Example:
            >>> # pd.read_parquet(ll.datasets.get("churn").path)
        """
        folder = self.folder
        return folder / TABLE_FILE if self.kind == "table" else folder

    def to_arrow(self) -> pa.Table:
        """The data as a pyarrow Table (a table, or a folder of Parquet files).

        Example:
            >>> # ll.datasets.get("churn").to_arrow().num_rows
        """
        import pyarrow as pa

        from loopline.data import tabular

        if self.kind == "table":
            return tabular.read_parquet(self.path)
        parts = [f for f in self.files if formats.is_parquet(Path(f.path))]
        if not parts or len(parts) != len(self.files):
            raise InvalidInput(
                f"dataset {self.ref} is a folder of files, not a table",
                field="kind",
                hint="read its files from .path, or register the table as a DataFrame/CSV/Parquet",
            )
        folder = self.folder
        return pa.concat_tables(
            [tabular.read_parquet(folder / f.path) for f in parts], promote_options="default"
        )

    def to_pandas(self) -> Any:
        """The data as a pandas DataFrame.

        Example:
            >>> # df = ll.datasets.get("churn", version=3).to_pandas()
        """
        return self.to_arrow().to_pandas()

    def to_dict(self, *, with_files: bool = True) -> dict[str, Any]:
        """Plain data for JSON: every attribute, the manifest too unless ``with_files=False``.

        Example:
            >>> # orjson.dumps(v.to_dict())
        """
        out: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "ref": self.ref,
            "hash": self.hash,
            "kind": self.kind,
            "created": self.created,
            "description": self.description,
            "actor": self.actor,
            "row_count": self.row_count,
            "byte_size": self.byte_size,
            "file_count": len(self.files),
            "schema": self.schema,
            "stats": self.stats,
        }
        if with_files:
            out["files"] = [
                {"path": f.path, "digest": f.digest, "size": f.size} for f in self.files
            ]
        if self.ingest is not None:
            out["created_now"] = self.created_now
            out["description_updated"] = self.description_updated
            out["ingest"] = self.ingest.to_dict()
        return out


def _home(ctx: Context) -> Path:
    return ctx.settings.home.expanduser().resolve()


def _version(
    ctx: Context,
    row: VersionRow,
    files: list[FileEntry],
    *,
    created_now: bool = False,
    description_updated: bool = False,
    report: IngestReport | None = None,
) -> DatasetVersion:
    return DatasetVersion(
        name=row.name,
        version=row.version,
        hash=row.hash,
        kind=row.kind,
        created=row.created,
        schema=row.schema,
        stats=row.stats,
        row_count=row.row_count,
        byte_size=row.byte_size,
        files=tuple(files),
        description=row.description,
        actor=row.actor,
        created_now=created_now,
        description_updated=description_updated,
        ingest=report,
        _store=ctx.artifacts,
        _home=_home(ctx),
    )


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


def _own_folders(ctx: Context) -> list[Path]:
    """Loopline's home and local artifact store: never data, whatever folder holds them
    (registering ``.`` does not swallow the store; checking out into ``.`` never touches it).

    Example:
        >>> # _own_folders(get_context())  -> [Path('/work/.loopline'), Path('/work/art')]
    """
    own = [_home(ctx)]
    artifacts = ctx.settings.artifacts_uri.removeprefix("file://")
    if "://" not in artifacts:
        own.append(Path(artifacts).expanduser())
    return own


def _sqlite_file(ctx: Context) -> Path | None:
    """The metadata database's file when it is a SQLite file, else None."""
    uri = ctx.settings.metadata_uri
    if not uri.startswith("sqlite:///"):
        return None
    database = uri.removeprefix("sqlite:///").split("?", 1)[0]
    return None if database in ("", ":memory:") else Path(database)


def _first_use(ctx: Context) -> bool:
    """Whether the metadata database is a SQLite file not made yet (opening it migrates it)."""
    if "engine" in vars(ctx):
        return False
    database = _sqlite_file(ctx)
    return database is not None and not database.exists()


#: Folders of LOOPLINE_HOME/tmp that other code uses (DuckDB's spill folder): not temp files.
HOME_TMP_IN_USE = ("duckdb",)


def sweep_temp_files(ctx: Context) -> list[Sweep]:
    """Remove what killed ``data add`` runs left in ``LOOPLINE_HOME/tmp`` and in the local
    artifact store's ``tmp/`` (only files whose writer is gone: :mod:`loopline.core.scratch`).

    Example:
        >>> # [s.removed_bytes for s in sweep_temp_files(get_context())]
    """
    done = [sweep(_home(ctx) / "tmp", keep=HOME_TMP_IN_USE)]
    in_store = ctx.artifacts.sweep_tmp()
    if in_store is not None:
        done.append(in_store)
    return done


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


def parse_version(version: int | str) -> int | None:
    """``"latest"`` -> None, ``3`` or ``"3"`` -> 3; anything else is :class:`InvalidInput`.

    Example:
        >>> parse_version("latest"), parse_version("7")
        (None, 7)
    """
    if version == "latest":
        return None
    number = integer_value(version, low=1)
    if number is not None:
        return number
    raise InvalidInput(
        f"version {version!r} is not a version number",
        field="version",
        hint=f"use a whole number from 1 to {MAX_INTEGER} or 'latest'",
    )


def parse_ref(ref: str) -> tuple[str, int | None]:
    """``"churn@3"`` -> ``("churn", 3)``; ``"churn"`` or ``"churn@latest"`` -> ``("churn", None)``.

    ``"churn@"`` is :class:`InvalidInput` (a version left out, not the latest one).

    Example:
        >>> parse_ref("churn@3"), parse_ref("churn")
        (('churn', 3), ('churn', None))
    """
    name, sep, version = ref.partition("@")
    return check_name(name), parse_version(version if sep else "latest")


#: The environment variable holding dataset pins as JSON ``{"NAME": VERSION}``. Read here
#: rather than through the settings because it must reach every process a pipeline's steps
#: run in (process pools and Ray workers inherit the environment, not our context).
PINS_ENV = "LOOPLINE_DATASET_PINS"
_pin_stack: list[dict[str, int]] = []
_pin_lock = threading.Lock()


def _check_pins(pins: Mapping[str, object], where: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, version in pins.items():
        check_name(name, field=where)
        number = parse_version(version) if isinstance(version, int | str) else None
        if number is None:
            raise InvalidInput(
                f"{where}: the pin of dataset {name!r} is {version!r}, not a version number",
                field=where,
                hint='pin whole version numbers, e.g. {"churn": 3}',
            )
        out[name] = number
    return out


@functools.cache
def _env_pins(raw: str) -> dict[str, int]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(
            f"{PINS_ENV} is not JSON: {exc}",
            field=PINS_ENV,
            hint='set it to a JSON object of dataset name -> version, e.g. {"churn": 3}',
        ) from exc
    if not isinstance(value, dict):
        raise InvalidInput(
            f"{PINS_ENV} must be a JSON object, got {type(value).__name__}",
            field=PINS_ENV,
            hint='e.g. {"churn": 3}',
        )
    return _check_pins(value, PINS_ENV)


def pins() -> dict[str, int]:
    """The dataset versions that ``get(name)`` returns instead of ``"latest"``.

    From :data:`PINS_ENV` (set by ``loopline reproduce`` for the pipeline it reruns), then
    the innermost :func:`pinned` block on top. Process-wide, not per thread: the steps of a
    pipeline run in the executor's threads.

    Example:
        >>> with pinned({"churn": 2}):
        ...     pins()["churn"]
        2
    """
    raw = os.environ.get(PINS_ENV)
    out = dict(_env_pins(raw)) if raw else {}
    with _pin_lock:
        for layer in _pin_stack:
            out.update(layer)
    return out


@contextlib.contextmanager
def pinned(versions: Mapping[str, int]) -> Iterator[dict[str, int]]:
    """Within the block, ``get(name)`` (``"latest"``) returns the pinned version of ``name``.

    An explicit version (``get(name, 3)``) is returned as asked. Used to rerun a pipeline
    on the data versions it read the first time (``loopline reproduce``).

    Example:
        >>> with pinned({"churn": 1}) as active:
        ...     active
        {'churn': 1}
    """
    layer = _check_pins(versions, "pins")
    with _pin_lock:
        _pin_stack.append(layer)
    try:
        yield dict(layer)
    finally:
        with _pin_lock:
            _pin_stack.remove(layer)


def _load(name: str, version: int | str) -> DatasetVersion:
    check_name(name)
    number = parse_version(version)
    if number is None:
        number = pins().get(name)
    from loopline.data import catalog

    ctx = get_context()
    row = catalog.require_version(ctx.engine, name, number)
    return _version(ctx, row, catalog.files_of(ctx.engine, [row.id])[row.id])


#: Where :func:`get` also reports each version it hands out, as ``(name, version, hash,
#: asked_for_latest)``: a pipeline step sets it, so that a later run reusing the step's
#: cached output records the versions the step read (the step does not run again to read
#: them), and does not reuse it once "latest" names a newer version.
READS: contextvars.ContextVar[list[tuple[str, int, str, bool]] | None] = contextvars.ContextVar(
    "loopline_dataset_reads", default=None
)


def latest_number(name: str) -> int:
    """The version ``get(name)`` would read now (the pinned one when pinned), recording
    nothing; NotFound when there is none.

    Example:
        >>> # ll.datasets.latest_number("churn")  -> 3
    """
    return _load(name, "latest").version


def _record_lineage(v: DatasetVersion, latest: bool = False) -> None:
    reads = READS.get()
    if reads is not None:
        reads.append((v.name, v.version, v.hash, latest))
    # Imported by name: the tracking stage is optional here and may not be installed yet.
    try:
        api = importlib.import_module("loopline.tracking.api")
    except ModuleNotFoundError as exc:
        if exc.name in ("loopline.tracking.api", "loopline.tracking"):
            return
        raise
    run = api.active_run()
    if run is not None:
        run.log_input("dataset", v.name, str(v.version), v.hash)


def get(name: str, version: int | str = "latest") -> DatasetVersion:
    """Version ``version`` (a number or ``"latest"``) of dataset ``name``.

    Inside an active tracked run the run records the version as an input (lineage).
    ``"latest"`` means the pinned version when the name is pinned (:func:`pinned`).
    Raises :class:`NotFound` listing the versions (or datasets) that do exist.

    Example:
        >>> # df = ll.datasets.get("churn", version=3).to_pandas()
    """
    v = _load(name, version)
    _record_lineage(v, latest=parse_version(version) is None)
    return v


def versions(name: str) -> list[DatasetVersion]:
    """Every version of ``name``, oldest first (empty if there is no such dataset).

    Example:
        >>> # [v.version for v in ll.datasets.versions("churn")]  -> [1, 2, 3]
    """
    check_name(name)
    from loopline.data import catalog

    ctx = get_context()
    rows = catalog.versions_of(ctx.engine, name)
    files = catalog.files_of(ctx.engine, [r.id for r in rows])
    return [_version(ctx, r, files[r.id]) for r in rows]


def version_rows(
    name: str, *, limit: int | None = None, offset: int = 0, newest_first: bool = False
) -> list[VersionRow]:
    """The versions of ``name`` without their manifests (``file_count`` says how many files),
    oldest first, or newest first; ``limit`` of them from ``offset`` (None: every one). What
    a listing needs: :func:`versions` also reads every version's file list, which for a
    folder of thousands of files kept over many versions is most of the catalog (a page
    listing 30 versions of 3,000 files took 1.5 s).

    Example:
        >>> # [(r.version, r.file_count) for r in ll.datasets.version_rows("images")]
        >>> # ll.datasets.version_rows("daily", limit=50, newest_first=True)  # a page
    """
    check_name(name)
    # Bounded by what a query binds: past it SQLite raised OverflowError, not a 4xx.
    if limit is not None and (type(limit) is not int or not 1 <= limit <= MAX_INTEGER):
        raise InvalidInput(
            f"limit must be a whole number from 1 to {MAX_INTEGER}, got {limit!r}",
            field="limit",
            hint="pass limit=50, or None for every version",
        )
    if type(offset) is not int or not 0 <= offset <= MAX_INTEGER:
        raise InvalidInput(
            f"offset must be a whole number from 0 to {MAX_INTEGER}, got {offset!r}",
            field="offset",
            hint="pass offset=0 for the first page",
        )
    from loopline.data import catalog

    return catalog.versions_of(
        get_context().engine, name, limit=limit, offset=offset, newest_first=newest_first
    )


def list_datasets() -> list[DatasetSummary]:
    """Every dataset with its newest version, sorted by name.

    Example:
        >>> # [(d.name, d.latest_version) for d in ll.datasets.list_datasets()]
    """
    from loopline.data import catalog

    return catalog.summaries(get_context().engine)


def _resolve(ref: DatasetVersion | str) -> DatasetVersion:
    if isinstance(ref, DatasetVersion):
        return ref
    name, number = parse_ref(ref)
    return _load(name, number if number is not None else "latest")


def diff(
    a: DatasetVersion | str,
    b: DatasetVersion | str,
    *,
    mean_tol: float = MEAN_TOL,
    std_tol: float = STD_TOL,
    null_tol: float = NULL_TOL,
) -> DatasetDiff:
    """What changed from version ``a`` to version ``b`` (``DatasetVersion`` or ``"NAME@N"``).

    Files added/removed/changed and the kinds of both; for two tables also rows
    added/removed, columns added/removed/retyped and statistics that moved beyond the
    tolerances (see :mod:`loopline.data.diff`).

    Example:
        >>> # d = ll.datasets.diff("churn@2", "churn@3"); d.rows_added, d.stat_changes
    """
    va, vb = _resolve(a), _resolve(b)
    added, removed, changed = diff_files(list(va.files), list(vb.files))
    same = va.hash == vb.hash
    files = (va.ref, vb.ref, same, added, removed, changed)
    if va.kind != "table" or vb.kind != "table":
        return DatasetDiff(*files, kind_before=va.kind, kind_after=vb.kind)
    common = [c for c in va.schema if c in vb.schema and va.schema[c] == vb.schema[c]]
    rows_added, rows_removed = (0, 0) if same else (None, None)
    if not same and common:
        rows_added, rows_removed = diff_rows(va.path, vb.path, common)
    return DatasetDiff(
        *files,
        rows_before=va.row_count,
        rows_after=vb.row_count,
        rows_added=rows_added,
        rows_removed=rows_removed,
        rows_compared_on=common,
        columns_added=[c for c in vb.schema if c not in va.schema],
        columns_removed=[c for c in va.schema if c not in vb.schema],
        columns_type_changed={
            c: (va.schema[c], vb.schema[c])
            for c in va.schema
            if c in vb.schema and va.schema[c] != vb.schema[c]
        },
        stat_changes=diff_stats(
            va.stats, vb.stats, mean_tol=mean_tol, std_tol=std_tol, null_tol=null_tol
        ),
        kind_before=va.kind,
        kind_after=vb.kind,
    )


def checkout(
    name: str, version: int | str, dest_dir: str | os.PathLike[str], *, force: bool = False
) -> Path:
    """Make ``dest_dir`` hold the files of ``name`` at ``version``, each verified.

    Into a missing or empty folder every file is written; a folder that already holds
    exactly this version is left as it is. A folder with other content (files that differ
    from the version's, or files the version does not have) is refused with
    :class:`InvalidInput` naming them, so that local edits are never overwritten and
    versions never mixed; ``force=True`` makes the folder exactly the version (differing
    files replaced, other files and symbolic links removed, never followed out of it).
    Loopline's own home and artifact folders are never touched.

    Example:
        >>> # ll.datasets.checkout("images", 2, "work/images")
        >>> # ll.datasets.checkout("images", 3, "work/images", force=True)
    """
    if not isinstance(force, bool):
        raise InvalidInput("force must be True or False", field="force")
    v = _load(name, version)
    ctx = get_context()
    store = v._store if v._store is not None else ctx.artifacts
    own = _own_folders(ctx)
    database = _sqlite_file(ctx)
    if database is not None:  # and its journal: removing either loses the catalog
        own += [Path(f"{database}{end}") for end in ("", "-wal", "-shm", "-journal")]
    cache = HashCache(_home(ctx) / "hashcache.db")
    try:
        return _checkout_files(store, v.files, Path(dest_dir), force=force, skip=own, cache=cache)
    finally:
        cache.close()
