"""Reading whole runs: a run's row, params, tags, latest metrics, inputs and outputs, in a
few queries.

Shared by :func:`loopline.tracking.run_state.get_run` and every search
(:func:`loopline.tracking.query.search_runs`), so it is written for pages of hundreds of
runs: two fixed statements on the driver's cursor, rows fetched in bulk as tuples.

Example:
    >>> # [r.name for r in get_runs(engine, ["3f2a...", "9c1b..."])]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy.engine import Connection, Engine

from loopline.core.bulk import driver_fetchall
from loopline.core.db import read_on
from loopline.errors import ConfigError
from loopline.tracking.entities import MetricPoint, RunInput, RunOutput, RunRecord

_CHUNK = 500

# What get_runs reads, as plain SQL run on the driver's own cursor: a search page reads a
# few hundred runs, and SQLAlchemy's statement and row handling cost several times the
# reading. The run ids go in as ONE bound value (see ID_LIST), so each statement is one
# fixed string whatever the page size. Every name is quoted (``key``, ``value`` and
# ``timestamp`` are words of SQL); the columns are plain text and numbers on both backends.
#
# A run's params, tags and latest metrics come with its row as one JSON object each, kept
# in key order by every write (runs.params_json, tags_json and metrics_json:
# loopline.tracking.run_json). A page of 250 runs with ten params, tags and metrics each is
# 7,500 rows otherwise, which cost more to read, or to make into Python objects, than the
# runs themselves.
# So do its outputs (runs.outputs_json, the models it logged, [[model_id, step], ...]): a
# subquery on run_outputs per run made a page of 250 runs 40 % slower on SQLite.
_RUNS_SQL = (
    'SELECT r."id", r."experiment_id", e."name", r."name", r."status", r."start_time", '
    'r."end_time", r."parent_run_id", r."lifecycle_stage", r."user_id", r."artifact_uri", '
    'r."params_json", r."tags_json", r."metrics_json", r."outputs_json" FROM "runs" r '
    'JOIN "experiments" e ON e."id" = r."experiment_id" WHERE r."id" {ids}'
)
_INPUTS_SQL = (
    'SELECT "run_id", "kind", "name", "version", "digest", "context", "details" '
    'FROM "run_inputs" '
    'WHERE "run_id" {ids} ORDER BY "logged_time", "name"'
)
#: How each backend takes a list of ids (or names) as one bound value: a JSON array that
#: SQLite's ``json_each`` unpacks, a PostgreSQL array (see :func:`list_value`).
ID_LIST = {
    "sqlite": "IN (SELECT value FROM json_each(?))",
    "postgresql": "= ANY(%s)",
}


def _statements(dialect: str) -> tuple[str, str]:
    clause = ID_LIST.get(dialect)
    if clause is None:
        raise ConfigError(f"the tracking store does not support the {dialect!r} database")
    return _RUNS_SQL.format(ids=clause), _INPUTS_SQL.format(ids=clause)


def list_value(dialect: str, items: list[str]) -> str | list[str]:
    """``items`` as the one bound value of an :data:`ID_LIST` clause on ``dialect``.

    Example:
        >>> list_value("sqlite", ["a", "b"])
        '["a","b"]'
    """
    return orjson.dumps(items).decode() if dialect == "sqlite" else items


def get_runs(bind: Engine | Connection, run_ids: Sequence[str]) -> list[RunRecord]:
    """Load many runs in a few queries, in the order of ``run_ids`` (missing ids skipped),
    on ``bind``: an engine, or a connection held open outside any transaction
    (:func:`loopline.core.db.read_on`).

    Example:
        >>> # [r.name for r in get_runs(engine, ids)]
    """
    if not run_ids:
        return []
    with read_on(bind) as conn:
        return runs_in(conn, run_ids)


def runs_in(conn: Connection, run_ids: Sequence[str]) -> list[RunRecord]:
    """:func:`get_runs` in the caller's transaction on ``conn`` (a write reads back what it
    wrote before it commits).

    Example:
        >>> # with engine.begin() as conn: runs_in(conn, [run_id])[0].status
    """
    ids = list(dict.fromkeys(run_ids))
    info: dict[str, Any] = {}
    inp: dict[str, list[RunInput]] = {}
    dialect = conn.dialect.name
    runs_sql, inputs_sql = _statements(dialect)
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        bound = (list_value(dialect, chunk),)
        for found in driver_fetchall(conn, runs_sql, bound):
            info[found[0]] = found
        for run_id, *fields in driver_fetchall(conn, inputs_sql, bound):
            inp.setdefault(run_id, []).append(RunInput(*fields))
    records = []
    loads = orjson.loads
    new, set_attr = object.__new__, object.__setattr__
    for i in ids:
        row = info.get(i)
        if row is None:
            continue
        (rid, exp_id, exp_name, name, status, start_time, end_time, parent, stage, user, uri,
         params_json, tags_json, metrics_json, outputs_json) = row  # fmt: skip
        # The frozen dataclass's __init__ sets each of the 16 fields through
        # object.__setattr__, which cost more than reading the run: the record gets its
        # fields as one dict instead (as frozen as any other; tests/tracking keep the names
        # equal to the dataclass's fields).
        record = new(RunRecord)
        set_attr(
            record,
            "__dict__",
            {
                "id": rid,
                "experiment_id": exp_id,
                "experiment": exp_name,
                "name": name,
                "status": status,
                "start_time": start_time,
                "end_time": end_time,
                "parent_run_id": parent,
                "lifecycle_stage": stage,
                "user_id": user,
                "artifact_uri": uri,
                "params": loads(params_json) if params_json else {},
                "tags": loads(tags_json) if tags_json else {},
                "latest_metrics": _latest_points(loads(metrics_json)) if metrics_json else {},
                "inputs": tuple(inp[i]) if i in inp else (),
                "outputs": _outputs(outputs_json) if outputs_json else (),
            },
        )
        records.append(record)
    return records


_NAN = float("nan")


def _outputs(found: str) -> tuple[RunOutput, ...]:
    """A run's ``outputs_json`` array (in the order they were logged) as outputs."""
    return tuple(RunOutput(model_id, step) for model_id, step in orjson.loads(found))


_new_tuple = tuple.__new__


def _latest_points(latest: dict[str, list[Any]]) -> dict[str, MetricPoint]:
    """A run's ``metrics_json`` object as points (``null`` is a NaN value).

    Each ``[step, timestamp, value]`` list becomes the point's tuple directly: the named
    tuple's own ``__new__`` is a Python function, called 2,500 times for a page of 250 runs
    with ten metrics.
    """
    points: dict[str, MetricPoint] = {}
    for key, point in latest.items():
        if point[2] is None:
            point[2] = _NAN
        points[key] = _new_tuple(MetricPoint, point)
    return points
