"""Packed metric history: chunks, the latest point per batch, history order, the migration."""

from __future__ import annotations

import math
import random

import pytest
import sqlalchemy as sa
from alembic import command

from loopline.core.context import Context
from loopline.core.db import alembic_config, create_engine_for, current_revision, upgrade
from loopline.errors import InvalidInput
from loopline.tracking import store
from loopline.tracking._dialect import MetricRow
from loopline.tracking.entities import MetricPoint
from loopline.tracking.metrics import latest_of, pack_chunks, stored_points, unpack_chunk
from loopline.tracking.validation import MAX_FLOAT

RUN_A, RUN_B = "a" * 32, "b" * 32


def _random_rows(seed: int, n: int) -> list[MetricRow]:
    rng = random.Random(seed)
    rows: list[MetricRow] = []
    for _ in range(n):
        nan = rng.random() < 0.1
        rows.append(
            (
                rng.choice([RUN_A, RUN_B]),
                rng.choice(["loss", "acc", "lr"]),
                0.0 if nan else rng.choice([0.0, 0.5, 1.0, -MAX_FLOAT]),
                rng.randint(0, 3),  # few timestamps and steps: many ties
                rng.randint(0, 3),
                int(nan),
            )
        )
    return rows


@pytest.mark.parametrize("seed", range(20), ids=lambda s: f"seed{s}")
def test_each_chunk_holds_its_groups_distinct_points_in_order_and_the_latest_row(
    seed: int,
) -> None:
    rows = _random_rows(seed, 200)  # few values, steps and timestamps: many repeated points
    chunks, latest = pack_chunks(rows)
    expected = latest_of(rows)
    assert latest == [expected[k] for k in sorted(expected)]
    assert [(c[0], c[1]) for c in chunks] == sorted(expected)
    for run_id, key, points, steps, stamps, values, *span in chunks:
        group = [r for r in rows if (r[0], r[1]) == (run_id, key)]
        distinct = list(dict.fromkeys(r[2:] for r in group))  # the first of each, in order
        unpacked = unpack_chunk(steps, stamps, values)
        assert points == len(distinct) == len(unpacked)
        for (value, ts, step, nan), point in zip(distinct, unpacked, strict=True):
            assert (point.step, point.timestamp) == (step, ts)
            assert math.isnan(point.value) if nan else point.value == value
        pairs = [(r[4], r[3]) for r in group]
        assert span == [*min(pairs), *max(pairs)]
    assert sum(c[2] for c in chunks) < len(rows)  # some repeats were dropped


def test_a_step_beyond_64_bits_is_refused_naming_the_field() -> None:
    with pytest.raises(InvalidInput, match="metric step does not fit in 64 bits"):
        pack_chunks([(RUN_A, "loss", 0.5, 1, 2**63, 0)])


def test_history_merges_chunks_by_step_then_timestamp_then_logged_order(ctx: Context) -> None:
    run = store.create_run(ctx.engine, 0)
    batches: list[list[MetricRow]] = [
        [(run.id, "loss", 3.0, 10, 2, 0), (run.id, "loss", 1.0, 10, 1, 0)],
        [(run.id, "loss", 0.0, 10, 1, 1), (run.id, "loss", math.inf, 5, 1, 0)],
        [(run.id, "loss", 2.0, 10, 1, 0), (run.id, "acc", 0.9, 1, 0, 0)],
    ]
    for rows in batches:  # one transaction (so one chunk per key) each
        store.log_batch(ctx.engine, run.id, rows=rows)
    history = store.get_metric_history(ctx.engine, run.id, "loss")
    assert [(p.step, p.timestamp) for p in history] == [(1, 5), (1, 10), (1, 10), (1, 10), (2, 10)]
    values = [p.value for p in history]
    assert values[0] == math.inf and values[1] == 1.0 and math.isnan(values[2])
    assert values[3:] == [2.0, 3.0]
    assert store.get_metric_history(ctx.engine, run.id, "acc") == [MetricPoint(0, 1, 0.9)]
    with ctx.engine.connect() as conn:
        chunks = conn.execute(sa.text("SELECT count(*) FROM metric_chunks")).scalar_one()
        assert len(stored_points(conn, [run.id])) == 6
    assert chunks == 4


def test_a_deleted_run_takes_its_chunks_with_it(ctx: Context) -> None:
    run = store.create_run(ctx.engine, 0)
    store.log_batch(ctx.engine, run.id, rows=[(run.id, "loss", 0.5, 1, 1, 0)])
    with ctx.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM runs WHERE id = :id"), {"id": run.id})
    with ctx.engine.connect() as conn:
        assert stored_points(conn, [run.id]) == []


def test_the_migration_moves_existing_points_into_chunks_and_back(db_uri: str) -> None:
    engine = create_engine_for(db_uri)
    upgrade(engine, "0010_monitoring_index")
    run_id = "c" * 32
    old = [  # (id, key, value, timestamp, step, is_nan), ids out of step order on purpose
        (1, "loss", 0.5, 100, 2, False),
        (2, "loss", 0.0, 90, 1, True),
        (3, "acc", MAX_FLOAT, 80, 0, False),
        (4, "loss", 0.25, 90, 1, False),
    ]
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO runs (id, experiment_id, status, start_time, lifecycle_stage) "
                "VALUES (:id, 0, 'RUNNING', 1, 'active')"
            ),
            {"id": run_id},
        )
        conn.execute(
            sa.text(
                'INSERT INTO metrics (id, run_id, "key", value, timestamp, step, is_nan) '
                "VALUES (:id, :run_id, :key, :value, :ts, :step, :nan)"
            ),
            [
                {"id": i, "run_id": run_id, "key": k, "value": v, "ts": t, "step": s, "nan": n}
                for i, k, v, t, s, n in old
            ],
        )
    upgrade(engine)
    assert "metrics" not in sa.inspect(engine).get_table_names()
    loss = store.get_metric_history(engine, run_id, "loss")
    assert [(p.step, p.timestamp) for p in loss] == [(1, 90), (1, 90), (2, 100)]
    assert math.isnan(loss[0].value) and [p.value for p in loss[1:]] == [0.25, 0.5]
    assert store.get_metric_history(engine, run_id, "acc") == [MetricPoint(0, 80, MAX_FLOAT)]

    command.downgrade(alembic_config(engine), "0010_monitoring_index")
    assert current_revision(engine) == "0010_monitoring_index"
    assert "metric_chunks" not in sa.inspect(engine).get_table_names()
    with engine.connect() as conn:
        back = conn.execute(
            sa.text('SELECT "key", value, timestamp, step, is_nan FROM metrics ORDER BY id')
        ).all()
    by_key = sorted((k, t, s, bool(n), v) for k, v, t, s, n in back)
    assert by_key == sorted((k, t, s, n, v) for _i, k, v, t, s, n in old)
    upgrade(engine)
    engine.dispose()
