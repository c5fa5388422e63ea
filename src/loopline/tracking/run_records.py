"""Reading whole runs: a run's row, params, tags, latest metrics and inputs, in a few queries.

Shared by :func:`loopline.tracking.store.get_run` and every search
(:func:`loopline.tracking.query.search_runs`), so it is written for pages of hundreds of
runs: five fixed statements on the driver's cursor, rows fetched in bulk as tuples.

Example:
    >>> # [r.name for r in get_runs(engine, ["3f2a...", "9c1b..."])]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy.engine import Engine

from loopline.errors import ConfigError
from loopline.tracking.entities import MetricPoint, RunInput, RunRecord

_CHUNK = 500

# What get_runs reads, as plain SQL run on the driver's own cursor: a search page reads a
# few thousand rows, and SQLAlchemy's statement and row handling cost several times the
# reading. The run ids go in as ONE bound value (see _ID_LIST), so each statement is one
# fixed string whatever the page size. Every name is quoted (``key``, ``value`` and
# ``timestamp`` are words of SQL); the columns are plain text and numbers on both backends.
_RUNS_SQL = (
    'SELECT r."id", r."experiment_id", e."name", r."name", r."status", r."start_time", '
    'r."end_time", r."parent_run_id", r."lifecycle_stage", r."user_id", r."artifact_uri" '
    'FROM "runs" r JOIN "experiments" e ON e."id" = r."experiment_id" WHERE r."id" {ids}'
)
_PARAMS_SQL = 'SELECT "run_id", "key", "value" FROM "params" WHERE "run_id" {ids}'
_TAGS_SQL = 'SELECT "run_id", "key", "value" FROM "tags" WHERE "run_id" {ids}'
_LATEST_SQL = (
    'SELECT "run_id", "key", "step", "timestamp", "value", "is_nan" FROM "latest_metrics" '
    'WHERE "run_id" {ids}'
)
_INPUTS_SQL = (
    'SELECT "run_id", "kind", "name", "version", "digest", "context" FROM "run_inputs" '
    'WHERE "run_id" {ids} ORDER BY "logged_time", "name"'
)
#: How each backend takes a list of ids as one bound value: a JSON array that SQLite's
#: ``json_each`` unpacks, a PostgreSQL array.
_ID_LIST = {
    "sqlite": "IN (SELECT value FROM json_each(?))",
    "postgresql": "= ANY(%s)",
}


def _statements(dialect: str) -> tuple[str, str, str, str, str]:
    clause = _ID_LIST.get(dialect)
    if clause is None:
        raise ConfigError(f"the tracking store does not support the {dialect!r} database")
    return (
        _RUNS_SQL.format(ids=clause),
        _PARAMS_SQL.format(ids=clause),
        _TAGS_SQL.format(ids=clause),
        _LATEST_SQL.format(ids=clause),
        _INPUTS_SQL.format(ids=clause),
    )


def get_runs(engine: Engine, run_ids: Sequence[str]) -> list[RunRecord]:
    """Load many runs in a few queries, in the order of ``run_ids`` (missing ids skipped).

    Example:
        >>> # [r.name for r in get_runs(engine, ids)]
    """
    ids = list(dict.fromkeys(run_ids))
    if not ids:
        return []
    info: dict[str, Any] = {}
    prm: dict[str, dict[str, str]] = {i: {} for i in ids}
    tgs: dict[str, dict[str, str | None]] = {i: {} for i in ids}
    lat: dict[str, dict[str, MetricPoint]] = {i: {} for i in ids}
    inp: dict[str, list[RunInput]] = {i: [] for i in ids}
    nan = float("nan")
    dialect = engine.dialect.name
    runs_sql, params_sql, tags_sql, latest_sql, inputs_sql = _statements(dialect)
    with engine.connect() as conn:
        cur: Any = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start : start + _CHUNK]
                bound = (orjson.dumps(chunk).decode() if dialect == "sqlite" else chunk,)
                cur.execute(runs_sql, bound)
                for found in cur.fetchall():
                    info[found[0]] = found
                cur.execute(params_sql, bound)
                for run_id, key, text in cur.fetchall():
                    prm[run_id][key] = text
                cur.execute(tags_sql, bound)
                for run_id, key, value in cur.fetchall():
                    tgs[run_id][key] = value
                cur.execute(latest_sql, bound)
                for run_id, key, step, ts, number, is_nan in cur.fetchall():
                    lat[run_id][key] = MetricPoint(step, ts, nan if is_nan else number)
                cur.execute(inputs_sql, bound)
                for run_id, *fields in cur.fetchall():
                    inp[run_id].append(RunInput(*fields))
        finally:
            cur.close()
    records = []
    for i in ids:
        row = info.get(i)
        if row is None:
            continue
        rid, exp_id, exp_name, name, status, start_time, end_time, parent, stage, user, uri = row
        records.append(
            RunRecord(
                id=rid,
                experiment_id=exp_id,
                experiment=exp_name,
                name=name,
                status=status,
                start_time=start_time,
                end_time=end_time,
                parent_run_id=parent,
                lifecycle_stage=stage,
                user_id=user,
                artifact_uri=uri,
                params=dict(sorted(prm[i].items())),
                tags=dict(sorted(tgs[i].items())),
                latest_metrics=dict(sorted(lat[i].items())),
                inputs=tuple(inp[i]),
            )
        )
    return records
