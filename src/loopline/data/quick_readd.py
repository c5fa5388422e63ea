"""The quick re-add: answer ``loopline data add NAME PATH [--json]`` for unchanged data with
the standard library alone.

Re-adding a folder that has not changed is a question, not work: every file's stat still
matches the hash cache and the manifest they make is the newest version's. Its answer costs
a few milliseconds; importing SQLAlchemy, pydantic-settings and Typer to give it costs
~0.4 s. So the ``loopline`` script asks this module first (:mod:`loopline.cli.entry`), and
this module reads the settings, the hash cache (:class:`~loopline.data.hashcache.HashCache`,
the same code as the full path) and the catalog (one ``SELECT`` through :mod:`sqlite3`)
without them.

It only ever answers when it can be sure the full path
(:func:`loopline.data.datasets.register`) would answer the same and write nothing; on
anything else it returns None and the full path runs (and migrates, stores, reports the
error, ...). It returns None when:

- a setting it does not read is set (any ``LOOPLINE_*`` variable but ``LOOPLINE_HOME``,
  ``LOOPLINE_URI``, ``LOOPLINE_ARTIFACTS`` and ``LOOPLINE_ACTOR``, a lower-case spelling, a
  ``loopline.toml`` or ``LOOPLINE_CONFIG``): the typed settings decide those;
- the metadata store is not a SQLite file (``sqlite:///path``), the file does not exist, or
  its schema is not the newest (the full path would migrate it);
- the source is a table (CSV/Parquet: its schema and statistics need pyarrow), an empty
  folder, or not there;
- a file's digest is not in the hash cache with the file's current stat, the dataset has no
  version, or the newest version holds other content;
- SQLite or the file system raises anything.

Keep in step with :mod:`loopline.data.catalog` (the columns read here) and
:func:`loopline.data.datasets.register` (the answer); ``tests/data/test_quick_readd.py``
compares both paths' output byte for byte.

Example:
    >>> import os
    >>> unchanged_readd("churn", "no/such/folder", environ={}) is None
    True
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from loopline.core.artifacts import hash_bytes
from loopline.core.schema_revision import HEAD_REVISION
from loopline.data import formats
from loopline.data.hashcache import HashCache
from loopline.data.ingest import (
    IngestReport,
    SourceFile,
    cached_digests,
    known_entries,
    manifest_bytes,
    scan_folder,
    single_file,
)
from loopline.errors import LooplineError

#: The settings this module reads itself (their defaults are those of loopline.config).
_READ = ("LOOPLINE_HOME", "LOOPLINE_URI", "LOOPLINE_ARTIFACTS")
#: Settings that cannot change an unchanged re-add's answer (any text is a valid actor; the
#: actor shown is the one recorded with the version).
_HARMLESS = ("LOOPLINE_ACTOR",)
_DEFAULT_HOME = ".loopline"
_SQLITE = "sqlite:///"
# The newest version's row, as catalog.find_version reads it.
_NEWEST = (
    "SELECT version, created, hash, kind, schema, stats, row_count, byte_size, actor,"
    " description FROM dataset_versions WHERE name = ? ORDER BY version DESC LIMIT 1"
)


def _store_paths(environ: Mapping[str, str]) -> tuple[Path, Path, str] | None:
    """(home, metadata SQLite file, artifacts setting), or None when the typed settings must
    decide."""
    for key in environ:
        upper = key.upper()
        if upper.startswith("LOOPLINE_") and (key != upper or key not in _READ + _HARMLESS):
            return None
    if "LOOPLINE_CONFIG" in environ or Path("loopline.toml").exists():
        return None
    home_setting = environ.get("LOOPLINE_HOME", _DEFAULT_HOME)
    home = Path(home_setting)
    uri = environ.get("LOOPLINE_URI") or f"{_SQLITE}{(home / 'loopline.db').as_posix()}"
    database = uri.removeprefix(_SQLITE)
    # Anything SQLAlchemy would read differently from a plain file name is left to it.
    if (
        not home_setting
        or not uri.startswith(_SQLITE)
        or not database
        or database == ":memory:"
        or any(c in database for c in "?#%~")
    ):
        return None
    artifacts = environ.get("LOOPLINE_ARTIFACTS") or str(home / "artifacts")
    return home.expanduser().resolve(), Path(database), artifacts


def _source_files(source: str, skip: list[Path]) -> tuple[str, list[SourceFile]] | None:
    """The files of a folder or of a single non-table file, as the full path scans them."""
    path = Path(source).expanduser()
    if path.is_dir():
        files = scan_folder(path, skip=skip)
        return ("files", files) if files else None
    if path.is_file() and not (formats.is_csv(path) or formats.is_parquet(path)):
        return "files", [single_file(path, path.name)]
    return None


def _newest(database: Path, name: str) -> dict[str, Any] | None:
    """The newest version of ``name`` (None when absent or the schema is not the newest)."""
    # mode=rw: never create a missing database (the full path creates and migrates it).
    conn = sqlite3.connect(f"file:{database}?mode=rw", uri=True, timeout=30)
    try:
        revisions = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        if revisions != [(HEAD_REVISION,)]:
            return None
        row = conn.execute(_NEWEST, (name,)).fetchone()
    finally:
        conn.close()
    if row is None:
        return None
    version, created, digest, kind, schema, stats, row_count, size, actor, description = row
    # The JSON columns decode as SQLAlchemy's JSON type decodes them (json.loads).
    return {
        "version": int(version),
        "created": float(created),
        "hash": digest,
        "kind": kind,
        "schema": dict(json.loads(schema) or {}) if schema is not None else {},
        "stats": dict(json.loads(stats) or {}) if stats is not None else {},
        "row_count": None if row_count is None else int(row_count),
        "byte_size": int(size),
        "actor": actor,
        "description": description,
    }


def unchanged_readd(
    name: str, source: str, *, environ: Mapping[str, str] | None = None
) -> dict[str, Any] | None:
    """What ``loopline data add NAME SOURCE --json`` prints when ``SOURCE`` is unchanged
    since the newest version of ``NAME`` (a dict for JSON; the people's output is made
    from it too), or None when this cannot be
    decided here (the full path then runs; see the module docstring).

    ``environ`` defaults to the process environment.

    Example:
        >>> # unchanged_readd("images", "data/images/")  -> {"ref": "images@3", ...} or None
    """
    env = os.environ if environ is None else environ
    try:
        paths = _store_paths(env)
        if paths is None:
            return None
        home, database, artifacts = paths
        skip = [home]
        artifacts = artifacts.removeprefix("file://")
        if "://" not in artifacts:
            skip.append(Path(artifacts).expanduser())
        cache_file = home / "hashcache.db"
        if not cache_file.is_file() or not database.is_file():
            return None
        scanned = _source_files(source, skip)
        if scanned is None:
            return None
        kind, files = scanned
        cache = HashCache(cache_file)
        try:
            entries = known_entries(files, cached_digests(files, cache))
        finally:
            cache.close()
        if entries is None:
            return None
        newest = _newest(database, name)
        if (
            newest is None
            or newest["kind"] != kind
            or newest["hash"] != hash_bytes(manifest_bytes(entries))
        ):
            return None
    except (LooplineError, OSError, sqlite3.Error, ValueError):
        # The full path reports (or recovers from) whatever went wrong here.
        return None
    report = IngestReport(
        files=len(entries), bytes=sum(e.size for e in entries), cached=len(entries)
    )
    # The keys and their order of DatasetVersion.to_dict(with_files=False).
    return {
        "name": name,
        "version": newest["version"],
        "ref": f"{name}@{newest['version']}",
        "hash": newest["hash"],
        "kind": newest["kind"],
        "created": newest["created"],
        "description": newest["description"],
        "actor": newest["actor"],
        "row_count": newest["row_count"],
        "byte_size": newest["byte_size"],
        "file_count": len(entries),
        "schema": newest["schema"],
        "stats": newest["stats"],
        "created_now": False,
        "description_updated": False,
        "ingest": report.to_dict(),
    }
