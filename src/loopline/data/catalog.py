"""The dataset catalog in the metadata database: the only module that touches the data tables
(but for the read-only, stdlib lookup of :mod:`loopline.data.quick_readd`; keep it in step).

Registering a version runs in one transaction: the dataset row is locked (``FOR UPDATE`` on
PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already serialises writers), the next version
number is taken, the version and its file rows are inserted and the audit event appended.
Two writers racing to create the same new name collide on the unique name; the loser
retries. Each version keeps the description it was registered with; registering the
newest version's content again with another description replaces that version's
description (audit event ``dataset.describe``) instead of making a version.

Example:
    >>> # done = register_version(ctx, name="churn", kind="table", ...); done.row.version
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from loopline.core.db import reading
from loopline.data.catalog_rows import DatasetSummary, VersionRow
from loopline.data.ingest import FileEntry
from loopline.data.tables import dataset_files, dataset_versions, datasets
from loopline.errors import Conflict, NotFound

if TYPE_CHECKING:
    from loopline.core.context import Context

_ATTEMPTS = 3


def _version_query() -> sa.Select[Any]:
    return sa.select(dataset_versions)


def _row(r: Any) -> VersionRow:
    return VersionRow(
        id=int(r.id),
        name=r.name,
        version=int(r.version),
        created=float(r.created),
        hash=r.hash,
        kind=r.kind,
        schema=dict(r.schema or {}),
        stats=dict(r.stats or {}),
        row_count=None if r.row_count is None else int(r.row_count),
        byte_size=int(r.byte_size),
        file_count=int(r.file_count),
        actor=r.actor,
        description=r.description,
    )


def dataset_names(engine: Engine) -> list[str]:
    """Every dataset name, sorted."""
    with reading(engine) as conn:
        return list(conn.scalars(sa.select(datasets.c.name).order_by(datasets.c.name)))


def version_numbers(engine: Engine, name: str) -> list[int]:
    """The version numbers of ``name``, oldest first (empty when there is no such dataset)."""
    with reading(engine) as conn:
        return list(
            conn.scalars(
                sa.select(dataset_versions.c.version)
                .where(dataset_versions.c.name == name)
                .order_by(dataset_versions.c.version)
            )
        )


def find_version(engine: Engine, name: str, version: int | None) -> VersionRow | None:
    """The row of ``name`` at ``version`` (None: the newest), or None when absent."""
    query = _version_query().where(dataset_versions.c.name == name)
    if version is None:
        query = query.order_by(dataset_versions.c.version.desc()).limit(1)
    else:
        query = query.where(dataset_versions.c.version == version)
    with reading(engine) as conn:
        found = conn.execute(query).one_or_none()
    return None if found is None else _row(found)


def versions_of(
    engine: Engine,
    name: str,
    *,
    limit: int | None = None,
    offset: int = 0,
    newest_first: bool = False,
) -> list[VersionRow]:
    """The version rows of ``name``, oldest first (or newest first), ``limit`` of them from
    ``offset`` (None: every one)."""
    number = dataset_versions.c.version
    query = (
        _version_query()
        .where(dataset_versions.c.name == name)
        .order_by(number.desc() if newest_first else number)
        .limit(limit)
        .offset(offset)
    )
    with reading(engine) as conn:
        return [_row(r) for r in conn.execute(query)]


def files_of(engine: Engine, version_ids: Sequence[int]) -> dict[int, list[FileEntry]]:
    """The manifest entries of each version id, sorted by path."""
    out: dict[int, list[FileEntry]] = {vid: [] for vid in version_ids}
    if not version_ids:
        return out
    query = (
        sa.select(
            dataset_files.c.version_id,
            dataset_files.c.path,
            dataset_files.c.digest,
            dataset_files.c.size,
        )
        .where(dataset_files.c.version_id.in_(list(version_ids)))
        .order_by(dataset_files.c.version_id, dataset_files.c.path)
    )
    with reading(engine) as conn:
        for r in conn.execute(query):
            out[int(r.version_id)].append(FileEntry(r.path, r.digest, int(r.size)))
    return out


def summaries(engine: Engine) -> list[DatasetSummary]:
    """Every dataset with its newest version, sorted by name."""
    counts = (
        sa.select(
            dataset_versions.c.dataset_id,
            sa.func.count().label("n"),
            sa.func.max(dataset_versions.c.version).label("latest"),
        )
        .group_by(dataset_versions.c.dataset_id)
        .subquery()
    )
    latest = dataset_versions.alias("latest")
    query = (
        sa.select(
            datasets.c.name,
            latest.c.description,
            datasets.c.created,
            counts.c.n,
            latest.c.version,
            latest.c.hash,
            latest.c.kind,
            latest.c.created.label("latest_created"),
            latest.c.byte_size,
            latest.c.row_count,
        )
        .select_from(datasets)
        .outerjoin(counts, counts.c.dataset_id == datasets.c.id)
        .outerjoin(
            latest,
            sa.and_(latest.c.dataset_id == datasets.c.id, latest.c.version == counts.c.latest),
        )
        .order_by(datasets.c.name)
    )
    with reading(engine) as conn:
        return [
            DatasetSummary(
                name=r.name,
                description=r.description,
                created=float(r.created),
                versions=int(r.n or 0),
                latest_version=r.version,
                latest_hash=r.hash,
                latest_kind=r.kind,
                latest_created=r.latest_created,
                latest_byte_size=r.byte_size,
                latest_row_count=r.row_count,
            )
            for r in conn.execute(query)
        ]


def _lock_dataset(conn: Connection, name: str, now: float) -> int:
    found = conn.execute(
        sa.select(datasets.c.id).where(datasets.c.name == name).with_for_update()
    ).scalar_one_or_none()
    if found is None:
        return int(
            conn.execute(
                datasets.insert().values(name=name, created=now).returning(datasets.c.id)
            ).scalar_one()
        )
    return int(found)


@dataclass(frozen=True)
class Registered:
    """What :func:`register_version` did: the version's row, whether the version is new,
    and whether the newest version (same content) got the description given."""

    row: VersionRow
    created: bool
    description_updated: bool = False


def _describe(
    ctx: Context, conn: Connection, row: VersionRow, description: str | None
) -> Registered:
    """The newest version, its description replaced by ``description`` when that is given
    and another: the same content is the same version, and the description is what the
    person registering it says it is now (audited, with what it was)."""
    if description is None or description == row.description:
        return Registered(row, created=False)
    conn.execute(
        dataset_versions.update()
        .where(dataset_versions.c.id == row.id)
        .values(description=description)
    )
    ctx.audit(
        conn,
        action="dataset.describe",
        object_type="dataset",
        object_id=f"{row.name}@{row.version}",
        before={"description": row.description},
        after={"description": description},
    )
    return Registered(dataclasses.replace(row, description=description), False, True)


def register_version(
    ctx: Context,
    *,
    name: str,
    description: str | None,
    kind: str,
    manifest_hash: str,
    entries: Sequence[FileEntry],
    schema: dict[str, str],
    stats: dict[str, dict[str, Any]],
    row_count: int | None,
) -> Registered:
    """Insert the next version of ``name`` unless its newest version has the same content.

    The audit event ``dataset.register`` is written in the same transaction as the rows.
    When the newest version has the same content and ``description`` is another one, that
    version's description is replaced (audit event ``dataset.describe``).

    Example:
        >>> # done = register_version(ctx, name="churn", kind="table", ...); done.row.version
    """
    byte_size = sum(e.size for e in entries)
    for attempt in range(_ATTEMPTS):
        try:
            with ctx.engine.begin() as conn:
                now = time.time()
                dataset_id = _lock_dataset(conn, name, now)
                newest = conn.execute(
                    _version_query()
                    .where(dataset_versions.c.name == name)
                    .order_by(dataset_versions.c.version.desc())
                    .limit(1)
                ).one_or_none()
                if newest is not None and newest.hash == manifest_hash and newest.kind == kind:
                    return _describe(ctx, conn, _row(newest), description)
                number = 1 if newest is None else int(newest.version) + 1
                values = {
                    "dataset_id": dataset_id,
                    "name": name,
                    "version": number,
                    "created": now,
                    "hash": manifest_hash,
                    "kind": kind,
                    "schema": schema,
                    "stats": stats,
                    "row_count": row_count,
                    "byte_size": byte_size,
                    "file_count": len(entries),
                    "actor": ctx.settings.actor_name,
                    "description": description,
                }
                version_id = int(
                    conn.execute(
                        dataset_versions.insert().values(**values).returning(dataset_versions.c.id)
                    ).scalar_one()
                )
                conn.execute(
                    dataset_files.insert(),
                    [
                        {
                            "version_id": version_id,
                            "path": e.path,
                            "digest": e.digest,
                            "size": e.size,
                        }
                        for e in entries
                    ],
                )
                ctx.audit(
                    conn,
                    action="dataset.register",
                    object_type="dataset",
                    object_id=f"{name}@{number}",
                    after={
                        "hash": manifest_hash,
                        "kind": kind,
                        "files": len(entries),
                        "bytes": byte_size,
                        "rows": row_count,
                        "description": description,
                    },
                )
                current = conn.execute(
                    _version_query().where(dataset_versions.c.id == version_id)
                ).one()
                return Registered(_row(current), created=True)
        except sa.exc.IntegrityError as exc:
            if attempt == _ATTEMPTS - 1:
                raise Conflict(
                    f"dataset {name!r} was changed by another writer {_ATTEMPTS} times in a row",
                    hint="register it again",
                ) from exc
    raise AssertionError("unreachable")


def require_version(engine: Engine, name: str, version: int | None) -> VersionRow:
    """Like :func:`find_version` but raise :class:`NotFound` saying what does exist."""
    found = find_version(engine, name, version)
    if found is not None:
        return found
    numbers = version_numbers(engine, name)
    if not numbers:
        names = dataset_names(engine)
        known = ", ".join(names[:20]) + (" ..." if len(names) > 20 else "") if names else "none"
        raise NotFound(
            f"there is no dataset named {name!r} (datasets: {known})",
            hint="register it first: loopline data add NAME PATH",
        )
    listed = ", ".join(str(n) for n in numbers)
    raise NotFound(
        f"dataset {name!r} has no version {version} (versions: {listed})",
        hint=f"use one of the versions listed, or 'latest' (= {numbers[-1]})",
    )
