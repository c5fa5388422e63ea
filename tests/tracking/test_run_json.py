"""``runs.params_json``, ``tags_json`` and ``metrics_json`` always equal the run's rows."""

from __future__ import annotations

import json
import math
import sys
import threading

import sqlalchemy as sa

import loopline as ll
from loopline.core.context import Context
from loopline.tracking import run_batch, run_data
from loopline.tracking.entities import Metric, now_ms


def _assert_copies_match_rows(engine: sa.Engine) -> int:
    """Check every run; return how many were checked."""
    with engine.connect() as conn:
        found = conn.execute(sa.text("SELECT id, params_json, tags_json FROM runs")).all()
        for run_id, params_json, tags_json in found:
            for table, copy in (("params", params_json), ("tags", tags_json)):
                rows = conn.execute(
                    sa.text(f'SELECT "key", "value" FROM {table} WHERE run_id = :r'),
                    {"r": run_id},
                ).all()
                copied = json.loads(copy or "{}")
                assert copied == dict(rows), (run_id, table)
                assert list(copied) == sorted(copied), (run_id, table)  # code-point order
            latest = conn.execute(
                sa.text(
                    'SELECT "key", step, "timestamp", "value", is_nan FROM latest_metrics '
                    "WHERE run_id = :r"
                ),
                {"r": run_id},
            ).all()
            metrics_json = conn.execute(
                sa.text("SELECT metrics_json FROM runs WHERE id = :r"), {"r": run_id}
            ).scalar()
            copied = json.loads(metrics_json or "{}")
            assert copied == {
                key: [step, stamp, None if nan else value]
                for key, step, stamp, value, nan in latest
            }, run_id  # exactly: json reads back the same doubles
            assert list(copied) == sorted(copied), run_id
    return len(found)


def test_every_write_keeps_the_copies_equal_to_the_rows(ctx: Context) -> None:
    engine = ctx.engine
    with ll.start_run(experiment="json", tags={"b": "2", "a": "1"}) as run:
        run.log_params({"z": "1", "é": "2", "A": "3", "a/b": "4"})
        run.set_tag("stage", "x")
        run.set_tags({"stage": "y", "Zed": "z"})
        with ll.start_run(name="child", nested=True) as child:
            child.log_param("depth", 3)
        run.log_metric("loss", 0.5)
        run.log_metrics({"b": 0.1 + 0.2, "a": float("nan"), "é": float("inf"), "Z": 1e-310})
        run.flush()
        run.log_metric("loss", 0.25, step=2)
    run_data.delete_tag(engine, run.id, "stage")
    # a late point (an older step) does not replace the latest one, in the copy either
    run_data.log_batch(engine, run.id, metrics=[Metric("loss", 9.0, now_ms(), 1)])
    # same step and time: the greater value wins, NaN counting as its stored 0.0
    ts = now_ms()
    for key, first, then in (("tie", math.nan, -0.5), ("tie2", 0.5, math.nan), ("t3", -1.0, 2.0)):
        run_data.log_batch(engine, run.id, metrics=[Metric(key, first, ts, 5)])
        run_data.log_batch(engine, run.id, metrics=[Metric(key, then, ts, 5)])
    assert run_data.log_batch(engine, run.id, tags={"late": "1"}, batch=("writer-1", 1)).applied
    assert not run_data.log_batch(engine, run.id, tags={"late": "2"}, batch=("writer-1", 1)).applied
    with ll.start_run(experiment="json", name="pipeline") as parent:
        p = run_batch.parent_of(parent)
        step = run_batch.ChildRun(
            run_batch.new_run_id(), "fit", now_ms(), tags={"s": "1"}, params={"k": "v"}
        )
        with engine.begin() as conn:
            run_batch.write_runs(conn, p, created=[step])
        end = run_batch.RunEnd(step.id, "FINISHED", now_ms(), {"s": "2", "done": "yes"})
        with engine.begin() as conn:
            run_batch.write_runs(conn, p, ended=[end])
    assert _assert_copies_match_rows(engine) == 4
    stored = ll.get_run(run.id)
    assert stored.params == {"A": "3", "a/b": "4", "z": "1", "é": "2"}
    assert "stage" not in stored.tags and stored.tags["Zed"] == "z" and stored.tags["late"] == "1"
    assert stored.tags["loopline.ingest.writer-1"] == "1"
    assert list(stored.tags) == sorted(stored.tags)
    assert ll.get_run(step.id).tags["s"] == "2"
    assert stored.metrics["loss"] == 0.25 and stored.metrics["b"] == 0.1 + 0.2
    assert math.isnan(stored.metrics["a"]) and stored.metrics["Z"] == 1e-310
    assert stored.metrics["é"] == sys.float_info.max  # +inf is stored as MLflow stores it
    assert list(stored.metrics) == sorted(stored.metrics)
    assert math.isnan(stored.metrics["tie"]) and stored.metrics["tie2"] == 0.5
    assert stored.metrics["t3"] == 2.0


def test_writers_of_one_run_at_once_lose_no_key(ctx: Context) -> None:
    engine = ctx.engine
    with ll.start_run(experiment="json-concurrent") as run:
        run_id = run.id
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def write(n: int) -> None:
        try:
            start.wait()
            for i in range(5):
                run_data.log_batch(
                    engine, run_id, params={f"p{n}-{i}": str(i)}, tags={f"t{n}-{i}": str(n)}
                )
            run_data.log_batch(engine, run_id, tags={"shared": str(n)}, batch=(f"w{n}", 1))
            for i in range(5):  # metrics only, and metrics with a param, to one run at once
                metric = Metric(f"m{n}", float(i), now_ms(), i)
                run_data.log_batch(engine, run_id, metrics=[metric])
                run_data.log_batch(engine, run_id, metrics=[metric], params={f"q{n}-{i}": "1"})
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    _assert_copies_match_rows(engine)
    stored = ll.get_run(run_id)
    assert {f"p{n}-{i}" for n in range(8) for i in range(5)} <= set(stored.params)
    assert {f"t{n}-{i}" for n in range(8) for i in range(5)} <= set(stored.tags)
    assert {f"loopline.ingest.w{n}" for n in range(8)} <= set(stored.tags)
    assert stored.metrics == {f"m{n}": 4.0 for n in range(8)}
