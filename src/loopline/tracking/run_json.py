"""Each run's params, tags, latest metrics and outputs as JSON in its ``runs`` row.

Every get and search page reads whole runs, and aggregating each run's ``params``,
``tags`` and ``latest_metrics`` rows into objects at read time cost more than reading the
runs themselves. So ``runs.params_json``, ``runs.tags_json`` (migration
``0013_run_params_tags_json``) and ``runs.metrics_json`` (``0014_run_metrics_json``) hold a
copy, written by every write of those rows in the same transaction:

* a new run gets its objects with its row (:func:`object_json`);
* a write to an existing run's params or tags rebuilds the object from the rows
  (:func:`refresh`), after :func:`lock_runs` at the start of the transaction on PostgreSQL.
  The lock is what makes the rebuild right under concurrency: at READ COMMITTED a rebuild
  that waited for another writer's row lock would still read the rows as they were when it
  began, and lose that writer's keys; a writer that takes the run's lock first starts every
  later statement after the other has committed. On SQLite a write transaction already
  holds the database's write lock from its first statement (``BEGIN IMMEDIATE``).

``runs.outputs_json`` (``0018_run_outputs``) holds the run's ``run_outputs`` rows (the
models it logged) as ``[[model_id, step], ...]`` in logged order, rebuilt by
:func:`refresh_outputs` after writing them, under the same lock.

Latest metrics are ``{"key": [step, timestamp, value]}`` with ``null`` for a NaN value,
kept by Python (:func:`refresh_metrics`) with the rule the rows' upsert keeps: SQLite before
3.43 prints a REAL with 15 significant digits, and a value must read back exactly.

Objects are in code-point key order, the order in which readers hand keys out, so readers
take them as they are (SQLite's BINARY collation and PostgreSQL's ``COLLATE "C"`` compare
text by code point, as Python does). A run without rows has NULL or an empty object.

Example:
    >>> object_json({"b": "2", "a": "1"})
    '{"a":"1","b":"2"}'
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from loopline.core.bulk import driver_executemany, driver_fetchall, placeholder
from loopline.tracking.run_records import ID_LIST, list_value
from loopline.tracking.tables import run_outputs, runs

# The rebuild of one object column from its table, for the runs whose ids are bound as one
# value (:data:`~loopline.tracking.run_records.ID_LIST`).
_REBUILD = {
    # SQLite before 3.44 takes no ORDER BY inside an aggregate; an ordered subquery in FROM
    # is not flattened into an aggregate, and feeds it in order.
    "sqlite": (
        'UPDATE "runs" SET "{table}_json" = (SELECT json_group_object("key", "value") '
        'FROM (SELECT "key", "value" FROM "{table}" WHERE "run_id" = "runs"."id" '
        'ORDER BY "key")) WHERE "id" {ids}'
    ),
    "postgresql": (
        'UPDATE "runs" SET "{table}_json" = (SELECT json_object_agg("key", "value" '
        'ORDER BY "key" COLLATE "C")::text FROM "{table}" WHERE "run_id" = "runs"."id") '
        'WHERE "id" {ids}'
    ),
}
#: (dialect, table) -> the statement that rebuilds that table's column.
_REFRESH = {
    (dialect, table): sql.format(table=table, ids=ID_LIST[dialect])
    for dialect, sql in _REBUILD.items()
    for table in ("params", "tags")
}
_LOCK_SQL = f'SELECT "id" FROM "runs" WHERE "id" {ID_LIST["postgresql"]} ORDER BY "id" FOR UPDATE'
#: The runs' current copies of their latest metrics.
_COPIES_SQL = {
    dialect: f'SELECT "id", "metrics_json" FROM "runs" WHERE "id" {ID_LIST[dialect]}'
    for dialect in ("sqlite", "postgresql")
}
_SET_METRICS_SQL = 'UPDATE "runs" SET "metrics_json" = {p} WHERE "id" = {p}'


def object_json(values: Mapping[str, str | None]) -> str | None:
    """``values`` as the JSON object a new run's row holds (None when there are none).

    Example:
        >>> object_json({}) is None
        True
    """
    if not values:
        return None
    return orjson.dumps(values, option=orjson.OPT_SORT_KEYS).decode()


def lock_runs(conn: Connection, run_ids: Collection[str]) -> None:
    """On PostgreSQL, lock the runs' rows until ``conn``'s transaction ends (in id order, so
    two writers never wait on each other in a circle); nothing on SQLite (see above).

    Call it before writing the runs' params or tags rows.

    Example:
        >>> # with engine.begin() as conn: lock_runs(conn, [run_id]); ...; refresh(...)
    """
    if conn.dialect.name == "postgresql" and run_ids:
        driver_fetchall(conn, _LOCK_SQL, (list_value("postgresql", sorted(set(run_ids))),))


def refresh(
    conn: Connection, run_ids: Collection[str], *, params: bool = False, tags: bool = False
) -> None:
    """Rebuild the runs' ``params_json`` and/or ``tags_json`` from their rows, in ``conn``'s
    transaction, after writing those rows.

    Example:
        >>> # refresh(conn, [run_id], tags=True)
    """
    if not (params or tags) or not run_ids:  # a metrics-only write: nothing to do
        return
    dialect = conn.dialect.name
    bound = (list_value(dialect, sorted(set(run_ids))),)
    for table, wanted in (("params", params), ("tags", tags)):
        if wanted:
            driver_executemany(conn, _REFRESH[dialect, table], [bound])


def refresh_metrics(
    conn: Connection,
    latest: Sequence[tuple[Any, ...]],
    new_runs: Collection[str] = (),
    known: Mapping[str, dict[str, list[Any]]] | None = None,
) -> None:
    """Bring ``metrics_json`` of the runs of ``latest`` up to date with it, in ``conn``'s
    transaction, as the upsert of the same rows brings ``latest_metrics`` up to date.

    ``known`` holds copies (``run_id -> metrics_json`` as read by :func:`orjson.loads`) the
    caller read in this transaction after taking the runs' lock (on SQLite, any read in a
    write transaction): they are not read again, and are updated in place.

    ``latest`` holds stored-form rows ``(run_id, key, value, timestamp, step, is_nan)``,
    one per run and key. Each point replaces the copy's point of its key only when its
    ``(step, timestamp, value)`` is greater (NaN compared as its stored 0.0), the rule of the
    upsert: the copy stays equal to the rows without reading them back, so a write costs
    the keys it writes, not every key of the run. The runs in ``new_runs`` were created in
    this transaction and have no copy yet. On PostgreSQL call :func:`lock_runs` for the
    others before upserting the rows.

    Example:
        >>> # refresh_metrics(conn, [(run_id, "loss", 0.3, 1700000000000, 1, 0)])
    """
    if not latest:
        return
    dialect = conn.dialect.name
    copies: dict[str, dict[str, list[Any]]] = {}
    copies.update(known or {})
    stored = sorted({row[0] for row in latest if row[0] not in new_runs and row[0] not in copies})
    if stored:
        found = driver_fetchall(conn, _COPIES_SQL[dialect], (list_value(dialect, stored),))
        copies.update((run_id, orjson.loads(copy) if copy else {}) for run_id, copy in found)
    for run_id, key, value, stamp, step, nan in latest:
        points = copies.setdefault(run_id, {})
        old = points.get(key)
        if old is not None:
            old_value = 0.0 if old[2] is None else old[2]  # NaN, stored as 0.0
            if (step, stamp, value) <= (old[0], old[1], old_value):
                continue
        points[key] = [step, stamp, None if nan else value]
    updates = [
        (orjson.dumps(points, option=orjson.OPT_SORT_KEYS).decode(), run_id)
        for run_id, points in copies.items()
    ]
    driver_executemany(conn, _SET_METRICS_SQL.format(p=placeholder(conn)), updates)


def refresh_outputs(conn: Connection, run_id: str) -> None:
    """Rebuild run ``run_id``'s ``outputs_json`` from its ``run_outputs`` rows, in ``conn``'s
    transaction, after writing them (and :func:`lock_runs` before, on PostgreSQL).

    Example:
        >>> # refresh_outputs(conn, run_id)
    """
    rows = conn.execute(
        sa.select(run_outputs.c.model_id, run_outputs.c.step)
        .where(run_outputs.c.run_id == run_id)
        .order_by(run_outputs.c.logged_time, run_outputs.c.model_id, run_outputs.c.step)
    ).all()
    copy = orjson.dumps([[model_id, step] for model_id, step in rows]).decode() if rows else None
    conn.execute(runs.update().where(runs.c.id == run_id).values(outputs_json=copy))
