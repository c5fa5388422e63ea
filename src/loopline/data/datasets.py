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

The code lives in modules with one job each, and this module hands on their public
names (``ll.datasets``): :mod:`loopline.data.dataset_registration` (:func:`register`),
:mod:`loopline.data.dataset_reads` (:func:`get`, :func:`versions`, :func:`diff`,
:func:`checkout`, ...), :mod:`loopline.data.dataset_version` (:class:`DatasetVersion`)
and :mod:`loopline.data.dataset_refs` (:func:`parse_ref`, :func:`pins`, :func:`pinned`).

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

from loopline.data.catalog_rows import DatasetSummary
from loopline.data.dataset_reads import (
    checkout,
    diff,
    get,
    latest_number,
    list_datasets,
    version_rows,
    versions,
)
from loopline.data.dataset_refs import parse_ref, pinned, pins
from loopline.data.dataset_registration import register
from loopline.data.dataset_version import DatasetVersion
from loopline.data.diff import DatasetDiff, StatChange
from loopline.data.ingest import FileEntry, IngestReport

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
    "latest_number",
    "list_datasets",
    "parse_ref",
    "pinned",
    "pins",
    "register",
    "version_rows",
    "versions",
]
