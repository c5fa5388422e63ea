"""Packed metric history: chunks, the latest point per batch, history order, each point stored
once, the migrations."""

from __future__ import annotations

import math
import random
from array import array

import pytest
import sqlalchemy as sa
from alembic import command

from loopline.core.context import Context
from loopline.core.db import create_engine_for
from loopline.core.db_migrations import alembic_config, current_revision, upgrade
from loopline.errors import InvalidInput
from loopline.tracking import run_creation, run_data, run_state
from loopline.tracking._dialect import MetricRow
from loopline.tracking.entities import LoggedBatch, Metric, MetricPoint
from loopline.tracking.metrics import latest_of, pack_chunks, stored_points, unpack_chunk
from loopline.tracking.validation import MAX_FLOAT

RUN_A, RUN_B = "a" * 32, "b" * 32


def _insert_bare_run(conn: sa.Connection, run_id: str) -> None:
    """A run row as an old schema held it, written with SQL (the migrations' starting point)."""
    conn.execute(
        sa.text(
            "INSERT INTO runs (id, experiment_id, status, start_time, lifecycle_stage) "
            "VALUES (:id, 0, 'RUNNING', 1, 'active')"
        ),
        {"id": run_id},
    )


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
    run = run_creation.create_run(ctx.engine, 0)
    batches: list[list[MetricRow]] = [
        [(run.id, "loss", 3.0, 10, 2, 0), (run.id, "loss", 1.0, 10, 1, 0)],
        [(run.id, "loss", 0.0, 10, 1, 1), (run.id, "loss", math.inf, 5, 1, 0)],
        [(run.id, "loss", 2.0, 10, 1, 0), (run.id, "acc", 0.9, 1, 0, 0)],
    ]
    for rows in batches:  # one transaction (so one chunk per key) each
        run_data.log_batch(ctx.engine, run.id, rows=rows)
    history = run_data.get_metric_history(ctx.engine, run.id, "loss")
    assert [(p.step, p.timestamp) for p in history] == [(1, 5), (1, 10), (1, 10), (1, 10), (2, 10)]
    values = [p.value for p in history]
    assert values[0] == math.inf and values[1] == 1.0 and math.isnan(values[2])
    assert values[3:] == [2.0, 3.0]
    assert run_data.get_metric_history(ctx.engine, run.id, "acc") == [MetricPoint(0, 1, 0.9)]
    with ctx.engine.connect() as conn:
        chunks = conn.execute(sa.text("SELECT count(*) FROM metric_chunks")).scalar_one()
        assert len(stored_points(conn, [run.id])) == 6
    assert chunks == 4


def test_a_deleted_run_takes_its_chunks_with_it(ctx: Context) -> None:
    run = run_creation.create_run(ctx.engine, 0)
    run_data.log_batch(ctx.engine, run.id, rows=[(run.id, "loss", 0.5, 1, 1, 0)])
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
        _insert_bare_run(conn, run_id)
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
    loss = run_data.get_metric_history(engine, run_id, "loss")
    assert [(p.step, p.timestamp) for p in loss] == [(1, 90), (1, 90), (2, 100)]
    assert math.isnan(loss[0].value) and [p.value for p in loss[1:]] == [0.25, 0.5]
    assert run_data.get_metric_history(engine, run_id, "acc") == [MetricPoint(0, 80, MAX_FLOAT)]

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


def _chunk_count(ctx: Context) -> int:
    with ctx.engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM metric_chunks")).scalar_one())


def _stored(ctx: Context, run_id: str) -> list[tuple[str, int, int, float]]:
    with ctx.engine.connect() as conn:
        return [(k, p.step, p.timestamp, p.value) for _r, k, p in stored_points(conn, [run_id])]


def test_a_point_logged_twice_is_stored_once_as_mlflow_stores_it(ctx: Context) -> None:
    run = run_creation.create_run(ctx.engine, 0)
    point = (run.id, "loss", 0.5, 10, 1, 0)
    assert run_data.log_batch(ctx.engine, run.id, rows=[point]) == LoggedBatch(True, stored=1)
    chunks = _chunk_count(ctx)
    # the same point again: nothing added, and the answer counts nothing
    assert run_data.log_batch(ctx.engine, run.id, rows=[point]).stored == 0
    again = run_data.log_batch(
        ctx.engine, run.id, metrics=[Metric("loss", 0.5, 10, 1)]
    )  # as MLflow
    assert again == LoggedBatch(applied=True, stored=0)
    assert run_data.get_metric_history(ctx.engine, run.id, "loss") == [MetricPoint(1, 10, 0.5)]
    assert _chunk_count(ctx) == chunks
    # Same step and timestamp, another value: another point (MLflow's key holds the value).
    run_data.log_batch(ctx.engine, run.id, rows=[(run.id, "loss", 0.25, 10, 1, 0)])
    assert [p.value for p in run_data.get_metric_history(ctx.engine, run.id, "loss")] == [0.5, 0.25]
    # NaN equals NaN (stored as 0 with is_nan, as MLflow stores it) but not 0.0; -0.0 is 0.0.
    nan = Metric("loss", math.nan, 10, 1)
    assert run_data.log_batch(ctx.engine, run.id, metrics=[nan, nan]).stored == 1
    zero = Metric("loss", 0.0, 10, 1)
    assert run_data.log_batch(ctx.engine, run.id, metrics=[nan, zero]).stored == 1
    assert run_data.log_batch(ctx.engine, run.id, metrics=[Metric("loss", -0.0, 10, 1)]).stored == 0
    values = [p.value for p in run_data.get_metric_history(ctx.engine, run.id, "loss")]
    assert len(values) == 4 and values[:2] == [0.5, 0.25] and math.isnan(values[2])
    assert values[3] == 0.0
    # The latest point and the run's copy of it are the ones MLflow keeps.
    assert run_state.get_run(ctx.engine, run.id).latest_metrics["loss"] == MetricPoint(1, 10, 0.5)


def test_a_retried_batch_adds_only_the_points_not_stored_yet(ctx: Context) -> None:
    run = run_creation.create_run(ctx.engine, 0)
    batch: list[MetricRow] = [
        (run.id, key, float(step), 1000 + step, step, 0) for step in range(50) for key in "ab"
    ]
    assert run_data.log_batch(ctx.engine, run.id, rows=batch).stored == 100
    # a client's retry after a lost answer: nothing stored, and the answer says so
    assert run_data.log_batch(ctx.engine, run.id, rows=batch).stored == 0
    assert len(_stored(ctx, run.id)) == 100
    # Sent again with new points in the middle and at the end, and repeats inside itself.
    more = [(run.id, "a", 0.5, 1000, 0, 0), (run.id, "b", 99.0, 2000, 99, 0)]
    resent = run_data.log_batch(ctx.engine, run.id, rows=batch[:60] + more + batch[40:] + more)
    assert resent.stored == 2
    stored = _stored(ctx, run.id)
    assert len(stored) == 102 and len(set(stored)) == 102
    assert run_state.get_run(ctx.engine, run.id).metrics == {"a": 49.0, "b": 99.0}


def test_a_batch_reaching_back_finds_its_repeats_in_every_stored_chunk(ctx: Context) -> None:
    run = run_creation.create_run(ctx.engine, 0)
    rid = run.id
    # Step 0 throughout (MLflow's default step), so only the timestamps tell points apart.
    for start in (0, 100, 50, 200):  # chunks whose spans interleave
        rows = [(rid, "x", float(t % 7), t, 0, 0) for t in range(start, start + 60, 3)]
        run_data.log_batch(ctx.engine, rid, rows=rows)
    before = _stored(ctx, rid)
    assert len(before) == len(set(before)) == 80
    replay = [(rid, "x", float(t % 7), t, 0, 0) for t in range(0, 300)]
    run_data.log_batch(ctx.engine, rid, rows=replay)
    after = _stored(ctx, rid)
    assert after[: len(before)] == before  # what was stored stays, in its order
    assert sorted(after) == sorted(("x", 0, t, float(t % 7)) for t in range(300))


@pytest.mark.parametrize("seed", range(8), ids=lambda s: f"seed{s}")
def test_random_batches_store_each_distinct_point_once(ctx: Context, seed: int) -> None:
    rng = random.Random(seed)
    run_a, run_b = run_creation.create_run(ctx.engine, 0), run_creation.create_run(ctx.engine, 0)
    rows = [
        (rng.choice([run_a.id, run_b.id]), *row[1:])
        for row in _random_rows(seed, 400)  # many repeats and ties, NaN included
    ]
    cuts = sorted(rng.sample(range(1, len(rows)), 9))
    for start, end in zip([0, *cuts], [*cuts, len(rows)], strict=True):
        run_data.log_batch(ctx.engine, run_a.id, rows=rows[start:end])
    for start in range(0, len(rows), 37):  # everything again, cut differently
        run_data.log_batch(ctx.engine, run_a.id, rows=rows[start : start + 37])
    with ctx.engine.connect() as conn:
        stored = stored_points(conn, [run_a.id, run_b.id])
    found = [
        (r, k, p.step, p.timestamp, 0.0 if p.value != p.value else p.value, p.value != p.value)
        for r, k, p in stored
    ]
    expected = {(r, k, step, ts, value, bool(nan)) for r, k, value, ts, step, nan in rows}
    assert len(found) == len(set(found)) and set(found) == expected
    latest = latest_of(rows)
    for run_id in (run_a.id, run_b.id):
        got = run_state.get_run(ctx.engine, run_id).latest_metrics
        for (r, key), (_r, _k, value, ts, step, nan) in latest.items():
            if r == run_id:
                point = got[key]
                assert (point.step, point.timestamp) == (step, ts)
                assert math.isnan(point.value) if nan else point.value == value


def test_0022_removes_stored_copies_keeps_first_ones_and_spans_every_chunk(
    db_uri: str,
) -> None:
    engine = create_engine_for(db_uri)
    upgrade(engine, "0021_feedback_label_ids")
    run_id = "d" * 32
    nan = math.nan

    def chunk(key: str, points: list[tuple[int, int, float]]) -> dict[str, object]:
        steps, stamps, values = (list(col) for col in zip(*points, strict=True))
        return {
            "run_id": run_id,
            "key": key,
            "points": len(points),
            "steps": array("q", steps).tobytes(),
            "timestamps": array("q", stamps).tobytes(),
            "metric_values": array("d", values).tobytes(),
        }

    old = [  # in written order; (step, timestamp, value)
        chunk("loss", [(1, 10, 0.5), (1, 10, 0.5), (0, 12, nan), (2, 5, 0.1)]),
        chunk("loss", [(0, 12, nan), (1, 10, 0.5)]),  # every point a copy: deleted
        chunk("loss", [(1, 10, 0.75), (3, 1, 0.5), (0, 12, 0.0)]),  # new values (0.0 is not NaN)
        chunk("acc", [(1, 10, 0.5), (1, 10, -0.0)]),  # another key: its own points
    ]
    with engine.begin() as conn:
        _insert_bare_run(conn, run_id)
        conn.execute(
            sa.text(
                'INSERT INTO metric_chunks (run_id, "key", points, steps, timestamps, '
                "metric_values) VALUES (:run_id, :key, :points, :steps, :timestamps, "
                ":metric_values)"
            ),
            old,
        )
    upgrade(engine)
    with engine.connect() as conn:
        stored = [(k, p.step, p.timestamp, p.value) for _r, k, p in stored_points(conn, [run_id])]
        spans = conn.execute(
            sa.text(
                'SELECT "key", points, min_step, min_timestamp, max_step, max_timestamp '
                "FROM metric_chunks ORDER BY id"
            )
        ).all()
    assert [s[:3] for s in stored] == [
        ("loss", 1, 10),
        ("loss", 0, 12),
        ("loss", 2, 5),
        ("loss", 1, 10),
        ("loss", 3, 1),
        ("loss", 0, 12),
        ("acc", 1, 10),
        ("acc", 1, 10),
    ]
    values = [s[3] for s in stored]
    assert (
        values[0] == 0.5
        and math.isnan(values[1])
        and values[2:] == [0.1, 0.75, 0.5, 0.0, 0.5, -0.0]
    )
    assert [tuple(s) for s in spans] == [
        ("loss", 3, 0, 12, 2, 5),
        ("loss", 3, 0, 12, 3, 1),
        ("acc", 2, 1, 10, 1, 10),
    ]
    index = {i["name"]: i["column_names"] for i in sa.inspect(engine).get_indexes("metric_chunks")}
    assert index == {
        "ix_metric_chunks_run_id_key_span": [
            "run_id", "key", "max_step", "max_timestamp", "min_step", "min_timestamp"
        ]
    }  # fmt: skip
    command.downgrade(alembic_config(engine), "0021_feedback_label_ids")
    columns = {c["name"] for c in sa.inspect(engine).get_columns("metric_chunks")}
    assert columns.isdisjoint({"min_step", "min_timestamp", "max_step", "max_timestamp"})
    index = {i["name"]: i["column_names"] for i in sa.inspect(engine).get_indexes("metric_chunks")}
    assert index == {"ix_metric_chunks_run_id_key": ["run_id", "key"]}
    with engine.connect() as conn:
        assert [(k, p.step, p.timestamp) for _r, k, p in stored_points(conn, [run_id])] == [
            s[:3] for s in stored
        ]
    upgrade(engine, "0022_metric_points_once")
    assert current_revision(engine) == "0022_metric_points_once"
    engine.dispose()
