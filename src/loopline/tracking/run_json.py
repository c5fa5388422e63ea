"""Each run's params and tags as one JSON object in its ``runs`` row, kept with the rows.

Every get and search page reads whole runs, and aggregating each run's ``params`` and
``tags`` rows into objects at read time cost more than reading the runs themselves. So
``runs.params_json`` and ``runs.tags_json`` hold a copy (migration
``0013_run_params_tags_json``), written by every write of those rows in the same
transaction:

* a new run gets its objects with its row (:func:`object_json`);
* a write to an existing run's params or tags rebuilds the object from the rows
  (:func:`refresh`), after :func:`lock_runs` at the start of the transaction on PostgreSQL.
  The lock is what makes the rebuild right under concurrency: at READ COMMITTED a rebuild
  that waited for another writer's row lock would still read the rows as they were when it
  began, and lose that writer's keys; a writer that takes the run's lock first starts every
  later statement after the other has committed. On SQLite a write transaction already
  holds the database's write lock from its first statement (``BEGIN IMMEDIATE``).

Objects are in code-point key order, the order in which readers hand keys out, so readers
take them as they are (SQLite's BINARY collation and PostgreSQL's ``COLLATE "C"`` compare
text by code point, as Python does). A run without rows has NULL or an empty object.

Example:
    >>> object_json({"b": "2", "a": "1"})
    '{"a":"1","b":"2"}'
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import orjson
from sqlalchemy.engine import Connection

from loopline.core.bulk import driver_executemany, driver_fetchall
from loopline.tracking.run_records import ID_LIST, list_value

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
