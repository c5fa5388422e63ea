"""The prediction log: batched Parquet files + one index row each, durable once flushed."""

from __future__ import annotations

import gc
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest
import sqlalchemy as sa

import loopline as ll
from loopline.core.context import Context
from loopline.core.db import create_engine_for
from loopline.core.db_migrations import current_revision, upgrade
from loopline.monitoring import tables
from loopline.monitoring.log_reads import read_predictions
from loopline.monitoring.log_records import SERVED
from loopline.monitoring.prediction_log import PredictionLogger, flush_default
from tests.cli_run import Process, popen
from tests.schema_diff import schema_diffs

NAMES = {
    t.name
    for t in (
        tables.prediction_batches,
        tables.label_batches,
        tables.business_events,
        tables.alerts,
        tables.loop_state,
        tables.loop_events,
        tables.drift_results,
        tables.loop_leader,
        tables.prediction_spool,
    )
}


def test_the_migration_creates_exactly_the_tables_module_and_downgrades(db_uri: str) -> None:
    from alembic import command

    from loopline.core.db_migrations import alembic_config

    engine = create_engine_for(db_uri)
    upgrade(engine)
    assert set(sa.inspect(engine).get_table_names()) >= NAMES
    assert schema_diffs(engine, NAMES) == []
    command.downgrade(alembic_config(engine), "0007_serving")
    assert not NAMES & set(sa.inspect(engine).get_table_names())
    assert current_revision(engine) == "0007_serving"
    upgrade(engine)
    engine.dispose()


def test_0024_adds_the_spool_marks_and_downgrades(db_uri: str) -> None:
    from alembic import command

    from loopline.core.db_migrations import alembic_config

    engine = create_engine_for(db_uri)
    upgrade(engine, "0023_label_batches_index")
    assert "prediction_spool" not in sa.inspect(engine).get_table_names()
    upgrade(engine, "0024_prediction_spool")
    assert schema_diffs(engine, {"prediction_spool"}) == []
    mark = {"segment": "1-ab-000001.seg", "flushed": 2**40, "updated": 1.5}  # past 4 GiB
    with engine.begin() as conn:
        conn.execute(sa.insert(tables.prediction_spool).values(mark))
    with engine.connect() as conn:
        assert conn.execute(sa.select(tables.prediction_spool)).one()._asdict() == mark
    command.downgrade(alembic_config(engine), "0023_label_batches_index")
    assert "prediction_spool" not in sa.inspect(engine).get_table_names()
    upgrade(engine)
    engine.dispose()


def test_logged_requests_come_back_batched_by_model_and_hour(ctx: Context) -> None:
    logger = PredictionLogger(ctx, start=False)
    for i in range(300):
        model = "a" if i % 3 else "b"
        logger.log(f"r{i}", model, 1 + i % 2, [{"x": float(i), "c": "k"}], [i % 2], 1.0 + i)
    logger.log("multi", "a", "2", [{"x": 1.0, "c": "k"}, {"x": 2.0, "c": "j"}], [0, 1], 3.0)
    assert read_predictions("a").empty  # nothing is written on the caller's thread
    assert logger.flush() == 302
    with ctx.engine.connect() as conn:
        rows = conn.execute(sa.select(tables.prediction_batches)).all()
    assert sorted(r.model for r in rows) == ["a", "b"]  # one file per model (same hour)
    assert sum(r.rows for r in rows) == 302 and all(r.hour % 3600 == 0 for r in rows)
    a = read_predictions("a")
    assert len(a) == 202 and set(a["_version"]) == {"1", "2"}
    multi = a[a["_request_id"] == "multi"]
    assert multi["_row"].tolist() == [0, 1] and multi["_prediction"].tolist() == [0, 1]
    assert multi["c"].tolist() == ["k", "j"]
    assert read_predictions("a", last=3)["_request_id"].tolist()[-1] == "multi"
    assert read_predictions("b", start=time.time() + 60).empty
    # content-addressed: the digest in the index is the file's hash in the store
    assert all(ctx.artifacts.exists(r.digest) for r in rows)


def test_log_is_cheap_on_the_callers_thread(embedded_ctx: Context) -> None:
    logger = PredictionLogger(embedded_ctx, start=False, max_rows=10**9)
    inputs = [{"temp": 41.0, "distance": 1400.0}]
    n = 20_000
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for _i in range(n):
            logger.log("r", "m", "1", inputs, [1], 0.8)
        best = min(best, (time.perf_counter() - t) / n)
    print(f"log(): {best * 1e6:.2f} us per call")
    # a few microseconds: under 5 % of a 1 ms request even on a shared, noisy machine
    assert best < 25e-6
    assert logger.flush() == 3 * n


def test_the_background_writer_flushes_on_size_and_interval(embedded_ctx: Context) -> None:
    with PredictionLogger(embedded_ctx, max_rows=50, interval=0.2) as logger:
        for i in range(120):
            logger.log(f"r{i}", "m", "1", [{"x": i}], [0], 1.0)
        deadline = time.monotonic() + 10
        while logger.written_rows < 120 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert logger.written_rows == 120
    assert len(read_predictions("m")) == 120


_WRITER = textwrap.dedent(
    """
    import os, signal, sys, time
    import loopline as ll
    from loopline.monitoring.prediction_log import PredictionLogger
    ctx = ll.init(uri=sys.argv[1], artifacts=sys.argv[2])
    mode = sys.argv[3]
    if mode == "sdk":  # the process's default logger, as a user's script has it
        for i in range(50):
            ll.monitor.log_prediction(f"s{i}", "m", 1, [{"x": float(i)}], [i % 2], 1.0)
        print("logged", flush=True)
        time.sleep(60)
    logger = PredictionLogger(ctx, interval=3600, max_rows=10**9)
    for i in range(500):
        logger.log(f"r{i}", "m", "1", [{"x": float(i)}], [i % 2], 1.0)
    if mode == "kill":
        logger.flush()
        for i in range(500, 700):
            logger.log(f"r{i}", "m", "1", [{"x": float(i)}], [i % 2], 1.0)
        print("flushed", flush=True)
        time.sleep(60)
    if mode == "kill-after-commit":
        logger.flush()
        for i in range(500, 700):
            logger.log(f"r{i}", "m", "1", [{"x": float(i)}], [i % 2], 1.0)
        # Dies at the first step after the commit of the files' index rows and the mark.
        PredictionLogger._release_done = lambda self: os.kill(os.getpid(), signal.SIGKILL)
        logger.flush()
    """
)


def _writer(ctx: Context, tmp_path: Path, mode: str) -> Process:
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    return popen(
        [sys.executable, str(script), ctx.settings.metadata_uri, ctx.settings.artifacts_uri, mode],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )


def _spooled(ctx: Context) -> list[Path]:
    return sorted(ctx.settings.spool_dir.glob("*/*.seg"))


def _marks(ctx: Context) -> list[Any]:
    with ctx.engine.connect() as conn:
        return list(conn.execute(sa.select(tables.prediction_spool)))


def test_what_a_sigkilled_writer_had_not_written_is_replayed_once(
    ctx: Context, tmp_path: Path
) -> None:
    """The 200 requests logged after the last flush died with the process: they are in its
    spool, and the next logger on the store writes them, after the 500 flushed ones."""
    proc = _writer(ctx, tmp_path, "kill")
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "flushed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    frame = read_predictions("m")
    assert sorted(frame["_request_id"]) == sorted(f"r{i}" for i in range(500))  # flushed
    assert len(_spooled(ctx)) == 1 and len(_marks(ctx)) == 1
    with PredictionLogger(ctx, start=False) as logger:
        assert logger.recover() == 200  # past the mark of the flushed 500 only
        assert logger.flush() == 0  # the replay is written, nothing is left waiting
    frame = read_predictions("m")
    assert sorted(frame["_request_id"]) == sorted(f"r{i}" for i in range(700))  # once each
    assert frame.set_index("_request_id").loc["r650", "x"] == 650.0
    assert _spooled(ctx) == [] and _marks(ctx) == []  # the dead segment and its mark: gone


def test_a_kill_right_after_the_commit_replays_nothing_twice(ctx: Context, tmp_path: Path) -> None:
    """The mark moves in the transaction of the files' index rows: a process killed at the
    first step after that commit left a segment whose records are all written."""
    proc = _writer(ctx, tmp_path, "kill-after-commit")
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert sorted(read_predictions("m")["_request_id"]) == sorted(f"r{i}" for i in range(700))
    assert len(_spooled(ctx)) == 1  # not deleted: the kill came first
    with PredictionLogger(ctx, start=False) as logger:
        assert logger.recover() == 0
    frame = read_predictions("m")
    assert len(frame) == 700 and frame["_request_id"].is_unique
    assert _spooled(ctx) == [] and _marks(ctx) == []


def test_the_sdks_log_prediction_is_spooled_and_replayed(ctx: Context, tmp_path: Path) -> None:
    proc = _writer(ctx, tmp_path, "sdk")
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "logged"
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert read_predictions("m").empty  # nothing was flushed before the kill
    # A started logger replays on its writer thread, as the model server's does.
    with PredictionLogger(ctx, interval=0.1) as logger:
        wait = time.monotonic() + 30
        while logger.recovered < 50 and time.monotonic() < wait:
            time.sleep(0.05)
    frame = read_predictions("m").sort_values("_ts")
    assert frame["_request_id"].tolist() == [f"s{i}" for i in range(50)]
    assert frame["_prediction"].tolist() == [i % 2 for i in range(50)]
    assert frame["_version"].unique().tolist() == ["1"]


def test_what_is_buffered_is_written_at_exit(ctx: Context, tmp_path: Path) -> None:
    proc = _writer(ctx, tmp_path, "exit")
    proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert len(read_predictions("m")) == 500
    assert _spooled(ctx) == [] and _marks(ctx) == []  # written in full: the spool is gone


TYPES = ["float", "int"]


def served(
    logger: PredictionLogger,
    rid: str,
    payload: dict[str, Any],
    names: list[str] | None = None,
    preds: list[Any] | None = None,
    types: list[str] | None = None,
) -> None:
    """Log a request as the model server does: the body parsed by the server's parser, the
    answer as the server makes it."""
    body = orjson.dumps(payload)
    preds = [0] if preds is None else preds
    answer = orjson.dumps({"predictions": preds, "model_version": "1", "request_id": rid})
    logger.log_request(rid, "m", "1", names, 1.0, types, body=body, answer=answer)


def test_read_predictions_rejects_a_bad_last(embedded_ctx: Context) -> None:
    with pytest.raises(ll.InvalidInput, match="last"):
        read_predictions("m", last=0)


def test_the_newest_rows_read_one_older_file_of_each_column_layout(embedded_ctx: Context) -> None:
    # 8 files: the first alone has the column "old" (and ints in "x"), the next five one
    # layout (floats in "x"), the last two add "new". The newest 15 rows are in the last
    # two; of the older files only the first of each layout is needed for the columns.
    layouts = [{"x": 1, "old": "o"}] + [{"x": 1.5}] * 5 + [{"x": 2.5, "new": "n"}] * 2
    with PredictionLogger(embedded_ctx, start=False) as logger:
        for f, row in enumerate(layouts):
            for i in range(10):
                logger.log(f"r{f}-{i}", "m", "1", [dict(row)], [i % 2], 1.0)
            logger.flush()
    t = tables.prediction_batches
    with embedded_ctx.engine.connect() as conn:
        index = conn.execute(sa.select(t.c.id, t.c.digest, t.c.schema_digest).order_by(t.c.id))
        ids, digests, layout = zip(*index, strict=True)
    assert len(digests) == 8 and len(set(layout)) == 3

    def recorded(layouts: tuple[str | None, ...]) -> None:
        with embedded_ctx.engine.begin() as conn:
            for row_id, digest in zip(ids, layouts, strict=True):
                conn.execute(sa.update(t).where(t.c.id == row_id).values(schema_digest=digest))

    # Without the layouts (as files indexed before 0025): every file is named, as before.
    recorded((None,) * 8)
    every = read_predictions("m", last=15)
    recorded(layout)
    whole = read_predictions("m")
    # Files 3-6 (older, of file 2's layout) are never opened: gone from the store, the
    # newest rows read the same, with every column of the log, its types and order.
    for digest in digests[2:6]:
        embedded_ctx.artifacts.local_path(digest).unlink()
    got = read_predictions("m", last=15)
    pd.testing.assert_frame_equal(got, every)
    tail = whole.tail(15).reset_index(drop=True)  # its rows; "old", all null here, aside
    pd.testing.assert_frame_equal(got.drop(columns="old"), tail.drop(columns="old"))
    assert got.columns.tolist() == whole.columns.tolist() and got["old"].isna().all()
    assert got["x"].dtype == "float64"  # the first file's ints and the others' floats
    with pytest.raises(ll.NotFound):  # they were the log's files: a whole read needs them
        read_predictions("m")
    # A file indexed before its layout was recorded (NULL) is named by every read.
    recorded((*layout[:3], None, *layout[4:]))
    with pytest.raises(ll.NotFound, match=digests[3]):
        read_predictions("m", last=15)


def test_0025_adds_the_files_column_layout_keeps_old_rows_and_downgrades(db_uri: str) -> None:
    from alembic import command

    from loopline.core.db_migrations import alembic_config

    engine = create_engine_for(db_uri)
    upgrade(engine, "0024_prediction_spool")
    old = {"model": "m", "hour": 0.0, "digest": "d" * 64, "rows": 2, "requests": 1}
    old |= {"ts_min": 1.0, "ts_max": 2.0, "created": 3.0}
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO prediction_batches (model, hour, digest, rows, requests, ts_min, "
                "ts_max, created) VALUES (:model, :hour, :digest, :rows, :requests, :ts_min, "
                ":ts_max, :created)"
            ),
            old,
        )
    upgrade(engine, "0025_prediction_batches_schema")
    t = tables.prediction_batches
    with engine.connect() as conn:
        row = conn.execute(sa.select(t.c.digest, t.c.rows, t.c.schema_digest)).one()
    assert tuple(row) == ("d" * 64, 2, None)  # not filled in: such a file is always read
    indexes = {i["name"]: i["column_names"] for i in sa.inspect(engine).get_indexes(t.name)}
    assert indexes["ix_prediction_batches_model_schema"] == ["model", "schema_digest"]
    command.downgrade(alembic_config(engine), "0024_prediction_spool")
    columns = {c["name"] for c in sa.inspect(engine).get_columns("prediction_batches")}
    assert "schema_digest" not in columns and {"digest", "rid_hashes"} <= columns
    indexes = {i["name"] for i in sa.inspect(engine).get_indexes(t.name)}
    assert indexes == {"ix_prediction_batches_model_hour"}
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT digest, rows FROM prediction_batches")).all() == [
            ("d" * 64, 2)
        ]
    upgrade(engine)
    engine.dispose()


def test_the_model_servers_parsed_bodies_become_named_rows(embedded_ctx: Context) -> None:
    with PredictionLogger(embedded_ctx, start=False) as logger:
        served(logger, "a", {"instances": [{"x": 1.0, "y": 2.0}]}, None, [0])
        served(logger, "b", {"instances": [[3.0, 4.0]]}, ["x", "y"], [1])
        served(logger, "c", {"dataframe_split": {"columns": ["x", "y"], "data": [[5.0, 6.0]]}})
    frame = read_predictions("m").set_index("_request_id")
    assert frame.loc[["a", "b", "c"], "x"].tolist() == [1.0, 3.0, 5.0]
    assert frame.loc[["a", "b", "c"], "y"].tolist() == [2.0, 4.0, 6.0]


def test_a_served_request_waits_in_the_queue_as_bytes_the_collector_never_walks(
    embedded_ctx: Context,
) -> None:
    # The parsed rows and predictions held until the batch (~7 objects a request) made the
    # collector's passes cost ~14 us a served request; its spool record costs none.
    with PredictionLogger(embedded_ctx, start=False) as logger:
        served(logger, "a", {"dataframe_split": {"columns": ["x"], "data": [[1.0], [2.0]]}})
        (entry,) = logger._buf
        ts, rid, model, version, record, outputs, latency, _segment, _end = entry
        assert outputs is SERVED and isinstance(record, bytes)
        assert not any(gc.is_tracked(v) for v in (ts, rid, model, version, record, latency))
    frame = read_predictions("m")
    assert frame["x"].tolist() == [1.0, 2.0] and frame["_prediction"].iloc[0] == 0


BAD_PREDICTIONS = [
    ({"inputs": [{"x": 1.0}], "outputs": [1, 0]}, "outputs", "1 input rows and 2 outputs"),
    ({"inputs": [{"x": 1.0}, {"x": 2.0}], "outputs": [1]}, "outputs", "2 input rows"),
    ({"inputs": [], "outputs": []}, "inputs", "not a non-empty list"),
    ({"outputs": 1}, "outputs", "not a non-empty list"),
    ({"latency_ms": -3.0}, "latency_ms", "-3.0"),
    ({"latency_ms": float("nan")}, "latency_ms", "nan"),
    ({"latency_ms": "fast"}, "latency_ms", "fast"),
    ({"model": "../m"}, "model", "'../m' is not a valid model name"),
    ({"model": ""}, "model", "not a valid model name"),
    ({"request_id": None}, "request_id", "a request id is a text"),
]


@pytest.mark.parametrize(
    ("change", "field", "words"),
    BAD_PREDICTIONS,
    ids=[
        "more-outputs",
        "fewer-outputs",
        "no-rows",
        "outputs-not-a-list",
        "negative-latency",
        "nan-latency",
        "text-latency",
        "dotdot-model",
        "empty-model",
        "none-request-id",
    ],
)
def test_log_prediction_refuses_what_it_cannot_log_as_given(
    embedded_ctx: Context, change: dict[str, Any], field: str, words: str
) -> None:
    call: dict[str, Any] = {
        "request_id": "r-1",
        "model": "m",
        "version": 1,
        "inputs": [{"x": 1.0}],
        "outputs": [1],
        "latency_ms": 1.0,
    }
    with pytest.raises(ll.InvalidInput, match=re.escape(words)) as err:
        ll.monitor.log_prediction(**{**call, **change})
    assert err.value.field == field
    ll.monitor.log_prediction(**call)  # the same call, right, is logged
    flush_default()
    logged = ll.monitor.read_predictions("m")
    assert logged["_request_id"].tolist() == ["r-1"] and logged["_prediction"].tolist() == [1]


def test_a_request_the_log_cannot_store_is_dropped_alone_and_the_rest_is_written(
    embedded_ctx: Context, caplog: pytest.LogCaptureFixture
) -> None:
    """One entry Arrow or Parquet cannot store used to fail its whole batch for good: the
    batch went back to the head of the queue, and every later flush failed on it again."""
    logger = PredictionLogger(embedded_ctx, start=False)
    logger.log("g1", "m", "1", [{"x": 1.0}], [0], 1.0)
    logger.log("huge", "m", "1", [{"x": 2**64}], [0], 1.0)  # no Arrow integer holds it
    logger.log("g2", "m", "1", [{"x": 2.0}], [1], 1.0)
    logger.log("empty", "m", "1", [{"x": 3.0, "y": {}}], [0], 1.0)  # Parquet: no empty struct
    logger.log("other", "n", "1", [{"z": 1}], [0], 1.0)
    # Each fine alone, not side by side in one file: both kept, in two files.
    logger.log("number", "t", "1", [{"x": 1.5}], [0], 1.0)
    logger.log("text", "t", "1", [{"x": "text"}, {"x": 2**64}], [0, 1], 1.0)
    logger.log("word", "t", "1", [{"x": "word"}], [0], 1.0)
    with caplog.at_level("ERROR", logger="loopline.monitoring"):
        assert logger.flush() == 5
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1  # one line for the batch, naming what was dropped and why
    assert "3 of 8 requests" in errors[0].getMessage() and "'huge'" in errors[0].getMessage()
    assert logger.dropped == 3
    assert logger.flush() == 0  # the dropped ones were not put back in the queue
    frame = read_predictions("m").set_index("_request_id")
    assert sorted(frame.index) == ["g1", "g2"]
    assert frame.loc[["g1", "g2"], "x"].tolist() == [1.0, 2.0]
    assert read_predictions("n")["_request_id"].tolist() == ["other"]
    assert sorted(read_predictions("t")["_request_id"]) == ["number", "word"]


def test_a_store_that_fails_keeps_every_storable_request_for_the_next_flush(
    embedded_ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    logger = PredictionLogger(embedded_ctx, start=False)
    for i in range(3):
        logger.log(f"r{i}", "m", "1", [{"x": float(i)}], [0], 1.0)
    logger.log("huge", "m", "1", [{"x": 2**64}], [0], 1.0)
    store = embedded_ctx.artifacts
    real = store.put_bytes

    def down(data: bytes) -> str:
        raise OSError("the disk is full")

    monkeypatch.setattr(store, "put_bytes", down)
    with pytest.raises(OSError, match="disk is full"):
        logger.flush()
    assert logger.dropped == 1  # counted once, not again on each retry
    monkeypatch.setattr(store, "put_bytes", real)
    assert logger.flush() == 3 and logger.dropped == 1
    assert sorted(read_predictions("m")["_request_id"]) == ["r0", "r1", "r2"]


def test_the_model_servers_rows_are_logged_in_their_columns_types(
    embedded_ctx: Context,
) -> None:
    """An int for a float column is the float the model took (2**63 has no int64), and an
    integral float for an int column the int, so that a column keeps one type in a file."""
    with PredictionLogger(embedded_ctx, start=False) as logger:
        served(logger, "a", {"instances": [{"x": 2**63, "k": 3.0}]}, ["x", "k"], [0], TYPES)
        served(logger, "b", {"instances": [[1, 4]]}, ["x", "k"], [0], TYPES)
    frame = read_predictions("m").set_index("_request_id")
    assert frame.loc[["a", "b"], "x"].tolist() == [float(2**63), 1.0]
    assert frame["k"].dtype.kind == "i" and frame.loc[["a", "b"], "k"].tolist() == [3, 4]


def test_values_json_would_change_are_logged_in_memory_only_with_one_warning(
    embedded_ctx: Context, caplog: pytest.LogCaptureFixture
) -> None:
    """Never coerced for the spool: a numpy number replayed as a float would be another
    column type. Such a request is written from memory as before, counted."""
    import numpy as np

    logger = PredictionLogger(embedded_ctx, start=False)
    with caplog.at_level("WARNING", logger="loopline.monitoring"):
        logger.log("n1", "m", "1", [{"x": 1.0}], [np.int64(1)], 1.0)
        logger.log("n2", "n", "1", [{"pair": (1, 2)}], [0], 1.0)
        logger.log("fine", "m", "1", [{"x": float("nan")}], [0], 1.0)  # NaN is spooled as is
    warned = [r.getMessage() for r in caplog.records if "memory only" in r.getMessage()]
    assert len(warned) == 1 and "int64" in warned[0]
    assert logger.unspooled == 2
    assert logger.flush() == 3
    logger.close()
    assert sorted(read_predictions("m")["_request_id"]) == ["fine", "n1"]
    assert read_predictions("n")["pair"].tolist()[0].tolist() == [1, 2]
