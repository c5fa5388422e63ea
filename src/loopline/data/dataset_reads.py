"""Reading stored dataset versions: :func:`get` (with lineage), listings, diff, checkout.

:func:`get` loads a version from the catalog (``"latest"`` follows the pins of
:mod:`loopline.data.dataset_refs`) and records it as an input of the active run and of
the pipeline step reading it (:data:`READS`); :func:`versions`, :func:`version_rows` and
:func:`list_datasets` list what is stored; :func:`diff` compares two versions
(:mod:`loopline.data.diff`) and :func:`checkout` writes one's files into a folder
(:mod:`loopline.data.checkout`). The public face is :mod:`loopline.data.datasets`
(``ll.datasets``).

Example:
    >>> # df = ll.datasets.get("churn", version=3).to_pandas()
"""

from __future__ import annotations

import contextvars
import importlib
import os
from pathlib import Path

from loopline.core.columns import MAX_INTEGER
from loopline.core.context import get_context
from loopline.data.catalog_rows import DatasetSummary, VersionRow
from loopline.data.checkout import checkout as _checkout_files
from loopline.data.dataset_own_files import _home, _own_folders, _sqlite_file
from loopline.data.dataset_refs import check_name, parse_ref, parse_version, pins
from loopline.data.dataset_version import DatasetVersion, _version
from loopline.data.diff import (
    MEAN_TOL,
    NULL_TOL,
    STD_TOL,
    DatasetDiff,
    diff_files,
    diff_rows,
    diff_stats,
)
from loopline.data.hashcache import HashCache
from loopline.errors import InvalidInput


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
