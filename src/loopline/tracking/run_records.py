"""Reading whole runs: a run's row, params, tags, latest metrics and inputs, in a few queries.

Shared by :func:`loopline.tracking.store.get_run` and every search
(:func:`loopline.tracking.query.search_runs`), so it is written for pages of hundreds of
runs: three fixed statements on the driver's cursor, rows fetched in bulk as tuples.

Example:
    >>> # [r.name for r in get_runs(engine, ["3f2a...", "9c1b..."])]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy.engine import Engine

from loopline.core.bulk import driver_fetchall
from loopline.errors import ConfigError
from loopline.tracking.entities import MetricPoint, RunInput, RunRecord

_CHUNK = 500

# What get_runs reads, as plain SQL run on the driver's own cursor: a search page reads a
# few thousand rows, and SQLAlchemy's statement and row handling cost several times the
# reading. The run ids go in as ONE bound value (see ID_LIST), so each statement is one
# fixed string whatever the page size. Every name is quoted (``key``, ``value`` and
# ``timestamp`` are words of SQL); the columns are plain text and numbers on both backends.
#
# A run's params and tags come with its row as one JSON object each, kept in key order by
# every write (runs.params_json and tags_json: loopline.tracking.run_json). A page of 250
# runs with ten params and tags each is 2,500 rows otherwise, which cost more to aggregate,
# or to make into Python objects, than the runs themselves. Latest metrics stay rows: JSON
# would round their values (SQLite's JSON and printf do not print every double exactly).
_RUNS_SQL = (
    'SELECT r."id", r."experiment_id", e."name", r."name", r."status", r."start_time", '
    'r."end_time", r."parent_run_id", r."lifecycle_stage", r."user_id", r."artifact_uri", '
    'r."params_json", r."tags_json" FROM "runs" r '
    'JOIN "experiments" e ON e."id" = r."experiment_id" WHERE r."id" {ids}'
)
# Ordered by key as Python orders text (code points: SQLite's BINARY, PostgreSQL's "C",
# not the database's locale), so each run's metrics arrive in key order with no check.
_LATEST_SQL = (
    'SELECT "run_id", "key", "step", "timestamp", "value", "is_nan" FROM "latest_metrics" '
    'WHERE "run_id" {ids} ORDER BY "run_id", "key"{collate}'
)
_CODE_POINT_ORDER = {"sqlite": "", "postgresql": ' COLLATE "C"'}
_INPUTS_SQL = (
    'SELECT "run_id", "kind", "name", "version", "digest", "context" FROM "run_inputs" '
    'WHERE "run_id" {ids} ORDER BY "logged_time", "name"'
)
#: How each backend takes a list of ids (or names) as one bound value: a JSON array that
#: SQLite's ``json_each`` unpacks, a PostgreSQL array (see :func:`list_value`).
ID_LIST = {
    "sqlite": "IN (SELECT value FROM json_each(?))",
    "postgresql": "= ANY(%s)",
}


def _statements(dialect: str) -> tuple[str, str, str]:
    clause = ID_LIST.get(dialect)
    if clause is None:
        raise ConfigError(f"the tracking store does not support the {dialect!r} database")
    runs_sql = _RUNS_SQL.format(ids=clause)
    latest_sql = _LATEST_SQL.format(ids=clause, collate=_CODE_POINT_ORDER[dialect])
    return runs_sql, latest_sql, _INPUTS_SQL.format(ids=clause)


def list_value(dialect: str, items: list[str]) -> str | list[str]:
    """``items`` as the one bound value of an :data:`ID_LIST` clause on ``dialect``.

    Example:
        >>> list_value("sqlite", ["a", "b"])
        '["a","b"]'
    """
    return orjson.dumps(items).decode() if dialect == "sqlite" else items


def get_runs(engine: Engine, run_ids: Sequence[str]) -> list[RunRecord]:
    """Load many runs in a few queries, in the order of ``run_ids`` (missing ids skipped).

    Example:
        >>> # [r.name for r in get_runs(engine, ids)]
    """
    ids = list(dict.fromkeys(run_ids))
    if not ids:
        return []
    info: dict[str, Any] = {}
    lat: dict[str, dict[str, MetricPoint]] = {}
    inp: dict[str, list[RunInput]] = {}
    nan = float("nan")
    dialect = engine.dialect.name
    runs_sql, latest_sql, inputs_sql = _statements(dialect)
    with engine.connect() as conn:
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            bound = (list_value(dialect, chunk),)
            for found in driver_fetchall(conn, runs_sql, bound):
                info[found[0]] = found
            for run_id, key, step, ts, number, is_nan in driver_fetchall(conn, latest_sql, bound):
                points = lat.get(run_id)
                if points is None:
                    points = lat[run_id] = {}
                points[key] = MetricPoint(step, ts, nan if is_nan else number)
            for run_id, *fields in driver_fetchall(conn, inputs_sql, bound):
                inp.setdefault(run_id, []).append(RunInput(*fields))
    records = []
    for i in ids:
        row = info.get(i)
        if row is None:
            continue
        (rid, exp_id, exp_name, name, status, start_time, end_time, parent, stage, user, uri,
         params_json, tags_json) = row  # fmt: skip
        records.append(
            _record(
                (
                    rid,
                    exp_id,
                    exp_name,
                    name,
                    status,
                    start_time,
                    end_time,
                    parent,
                    stage,
                    user,
                    uri,
                    orjson.loads(params_json) if params_json else {},
                    orjson.loads(tags_json) if tags_json else {},
                    lat.get(i) or {},
                    tuple(inp[i]) if i in inp else (),
                )
            )
        )
    return records


_RECORD_FIELDS = tuple(f.name for f in dataclasses.fields(RunRecord))


def _record(values: tuple[Any, ...]) -> RunRecord:
    """A :class:`RunRecord` of every field's value, in field order.

    Made without the frozen dataclass's ``__init__``, which sets each of the 15 fields
    through ``object.__setattr__`` and cost more than reading the run; the record is as
    frozen as any other (its ``__setattr__`` still refuses).
    """
    record = object.__new__(RunRecord)
    record.__dict__.update(zip(_RECORD_FIELDS, values, strict=True))
    return record
