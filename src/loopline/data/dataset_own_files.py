"""Loopline's own files where data lives: its home, its local artifact store, its database.

Registering a folder must not take Loopline's home or artifact store inside it for data,
and checking out into a folder must never touch them (:func:`_own_folders`, and the
SQLite database file, :func:`_sqlite_file`). Killed ``data add`` runs leave temp files in
``LOOPLINE_HOME/tmp`` and the store's ``tmp/``: :func:`sweep_temp_files` removes them
(``loopline doctor`` reports them, keeping :data:`HOME_TMP_IN_USE`). Kept apart because
registration (:mod:`loopline.data.dataset_registration`), checkout
(:mod:`loopline.data.dataset_reads`) and the doctor all need the same answer.

Example:
    >>> # _own_folders(get_context())  -> [Path('/work/.loopline'), Path('/work/art')]
"""

from __future__ import annotations

from pathlib import Path

from loopline.core.context import Context
from loopline.core.scratch import Sweep, sweep


def _home(ctx: Context) -> Path:
    return ctx.settings.home.expanduser().resolve()


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
