"""Reading whole runs: a run's row, params, tags, latest metrics and inputs, in a few queries.

Shared by :func:`loopline.tracking.store.get_run` and every search
(:func:`loopline.tracking.query.search_runs`), so it is written for pages of hundreds of
runs: the statements are built once, rows are fetched in bulk and unpacked as tuples.

Example:
    >>> # [r.name for r in get_runs(engine, ["3f2a...", "9c1b..."])]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from loopline.tracking.entities import MetricPoint, RunInput, RunRecord
from loopline.tracking.tables import experiments, latest_metrics, run_inputs, runs
from loopline.tracking.tables import params as params_table
from loopline.tracking.tables import tags as tags_table

_CHUNK = 500

# The statements get_runs runs, built once: a search page reads a few thousand rows, and
# building the statements (and unpacking rows by name) would cost more than reading them.
_IDS: sa.BindParameter[list[str]] = sa.bindparam("ids", expanding=True)
_RUNS_QUERY = (
    sa.select(
        runs.c.id,
        runs.c.experiment_id,
        experiments.c.name,
        runs.c.name,
        runs.c.status,
        runs.c.start_time,
        runs.c.end_time,
        runs.c.parent_run_id,
        runs.c.lifecycle_stage,
        runs.c.user_id,
        runs.c.artifact_uri,
    )
    .join(experiments, experiments.c.id == runs.c.experiment_id)
    .where(runs.c.id.in_(_IDS))
)
_PARAMS_QUERY = sa.select(params_table.c.run_id, params_table.c.key, params_table.c.value).where(
    params_table.c.run_id.in_(_IDS)
)
_TAGS_QUERY = sa.select(tags_table.c.run_id, tags_table.c.key, tags_table.c.value).where(
    tags_table.c.run_id.in_(_IDS)
)
_LATEST_QUERY = sa.select(
    latest_metrics.c.run_id,
    latest_metrics.c.key,
    latest_metrics.c.step,
    latest_metrics.c.timestamp,
    latest_metrics.c.value,
    latest_metrics.c.is_nan,
).where(latest_metrics.c.run_id.in_(_IDS))
_INPUTS_QUERY = (
    sa.select(
        run_inputs.c.run_id,
        run_inputs.c.kind,
        run_inputs.c.name,
        run_inputs.c.version,
        run_inputs.c.digest,
        run_inputs.c.context,
    )
    .where(run_inputs.c.run_id.in_(_IDS))
    .order_by(run_inputs.c.logged_time, run_inputs.c.name)
)


def get_runs(engine: Engine, run_ids: Sequence[str]) -> list[RunRecord]:
    """Load many runs in a few queries, in the order of ``run_ids`` (missing ids skipped).

    Example:
        >>> # [r.name for r in get_runs(engine, ids)]
    """
    ids = list(dict.fromkeys(run_ids))
    info: dict[str, Any] = {}
    prm: dict[str, dict[str, str]] = {i: {} for i in ids}
    tgs: dict[str, dict[str, str | None]] = {i: {} for i in ids}
    lat: dict[str, dict[str, MetricPoint]] = {i: {} for i in ids}
    inp: dict[str, list[RunInput]] = {i: [] for i in ids}
    nan = float("nan")
    with engine.connect() as conn:
        for start in range(0, len(ids), _CHUNK):
            chunk = {"ids": ids[start : start + _CHUNK]}
            for found in conn.execute(_RUNS_QUERY, chunk).all():
                info[found[0]] = found
            for run_id, key, text in conn.execute(_PARAMS_QUERY, chunk).all():
                prm[run_id][key] = text
            for run_id, key, value in conn.execute(_TAGS_QUERY, chunk).all():
                tgs[run_id][key] = value
            for run_id, key, step, ts, number, is_nan in conn.execute(_LATEST_QUERY, chunk).all():
                lat[run_id][key] = MetricPoint(step, ts, nan if is_nan else number)
            for run_id, *fields in conn.execute(_INPUTS_QUERY, chunk).all():
                inp[run_id].append(RunInput(*fields))
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
