"""The label files' index (model, request-id range, fingerprints): read_labels opens only
the files that can hold what it is asked for, and reads the same labels as without it;
migration 0023 adds the columns."""

from __future__ import annotations

import random
import time
from typing import Any

import pandas as pd
import pyarrow as pa
import sqlalchemy as sa
from alembic import command

import loopline as ll
from loopline.core.context import Context
from loopline.core.db import create_engine_for
from loopline.core.db_migrations import alembic_config, current_revision, upgrade
from loopline.monitoring.label_reads import label_files, read_labels
from loopline.monitoring.log_files import _parquet_bytes
from loopline.monitoring.rid_index import build_fingerprints
from loopline.monitoring.tables import label_batches

MODELS = ["a", "b", "c", "d", None]
PREFIXES = ["5f0e1c2a-", "9b7d3e01-", "c4a8f6d2-", "01e9b7aa-"]
INDEX = ("model", "rid_min", "rid_max", "rid_hashes")


def _insert_as_before(ctx: Context, table: pa.Table) -> None:
    """A label batch stored as the code before 0023 stored it: the row has no index."""
    digest = ctx.artifacts.put_bytes(_parquet_bytes(table))
    with ctx.engine.begin() as conn:
        conn.execute(
            sa.insert(label_batches).values(
                digest=digest, rows=table.num_rows, matched=0, created=time.time()
            )
        )


def _old_batch(ids: list[str], labels: list[int], model: str | None) -> pa.Table:
    """A batch as the old code wrote it (``model`` None: before the file had that column)."""
    n = len(ids)
    columns: dict[str, pa.Array] = {
        "request_id": pa.array(ids, pa.string()),
        "label": pa.array([str(v) for v in labels], pa.string()),
        "label_num": pa.array([float(v) for v in labels], pa.float64()),
        "arrived": pa.array([time.time()] * n, pa.float64()),
        "seq": pa.array(range(n), pa.int64()),
    }
    if model is not None:
        columns |= {
            "model": pa.array([model] * n, pa.string()),
            "row": pa.nulls(n, pa.int64()),
            "all_rows": pa.array([False] * n, pa.bool_()),
        }
    return pa.table(columns)


def _fill(ctx: Context) -> list[list[str]]:
    """~90 label files over five models (one for any model) and four id prefixes, as a
    server's ids are; corrections of earlier labels; rows; three files without an index.
    Returns each prefix's ids, in order."""
    rng = random.Random(7)
    ids = [[f"{p}{i:x}" for i in range(400)] for p in PREFIXES]
    _insert_as_before(ctx, _old_batch(ids[0][:30], [1] * 30, None))
    for call in range(84):
        prefix = ids[call % len(PREFIXES)]
        start = (call // len(PREFIXES)) * 18
        chunk = prefix[start : start + 20]  # the outcome of a stretch of one server's traffic
        if call % 7 == 3:  # corrections of labels sent long before, from anywhere
            chunk = chunk[:5] + rng.sample([i for p in ids for i in p[:start]] or chunk, 6)
        model = MODELS[call % len(MODELS)]
        labels = [rng.randint(0, 2) for _ in chunk]
        if call % 11 == 5:
            rows = [i % 3 for i in range(len(chunk))]
            ll.monitor.log_labels(chunk, labels, model=model, rows=rows)
        elif call % 13 == 6:
            ll.monitor.log_labels(chunk, labels, model=model, rows="all")
        else:
            ll.monitor.log_labels(chunk, labels, model=model)
        if call == 40:
            _insert_as_before(ctx, _old_batch(ids[1][10:50], [0] * 40, "b"))
            _insert_as_before(ctx, _old_batch(ids[2][:5] + ids[3][100:105], [2] * 10, "c"))
    return ids


def _queries(ids: list[list[str]]) -> list[tuple[str | None, list[str] | None]]:
    rng = random.Random(3)
    everyone = [i for p in ids for i in p]
    asked: list[list[str] | None] = [
        None,
        ids[0][:25],  # in the files without an index, and in indexed ones
        ids[1][100:140],  # a stretch of one prefix
        ids[3][300:],  # mostly labelled by no file
        rng.sample(everyone, 200),  # scattered over every file
        rng.sample(everyone, 3),
        ["nobody-1", "nobody-2"],
        [ids[2][0]] * 3,
    ]
    return [(model, wanted) for model in [*MODELS, "never-labelled"] for wanted in asked]


def _read_all(queries: list[tuple[str | None, list[str] | None]]) -> list[pd.DataFrame]:
    key = ["request_id", "row", "model"]
    return [
        read_labels(model, request_ids=wanted)
        .sort_values(key, na_position="first")
        .reset_index(drop=True)
        for model, wanted in queries
    ]


def test_read_labels_reads_the_same_labels_with_and_without_the_index(ctx: Context) -> None:
    ids = _fill(ctx)
    queries = _queries(ids)
    every = label_files()
    assert len(every) == 87
    pruned = [len(label_files(model, wanted)) for model, wanted in queries]
    indexed = _read_all(queries)
    assert sum(len(f) for f in indexed) > 2000  # the queries do find labels
    keys = [(model, None if wanted is None else tuple(wanted)) for model, wanted in queries]
    old_only = indexed[keys.index(("never-labelled", tuple(ids[0][:25])))]
    assert len(old_only) == 25 and old_only["model"].isna().all()  # the oldest file's
    with ctx.engine.begin() as conn:  # every row as a file written before 0023
        conn.execute(sa.update(label_batches).values(dict.fromkeys(INDEX)))
    assert all(label_files(model, wanted) == every for model, wanted in queries)
    for (model, wanted), got, expected in zip(queries, indexed, _read_all(queries), strict=True):
        pd.testing.assert_frame_equal(got, expected, obj=f"read_labels({model!r}, {wanted})")
    # the index did leave files unopened: a model's own (and the old ones), and of those
    # the ones whose ids are asked
    by_query = dict(zip(keys, pruned, strict=True))
    assert by_query["a", None] == 3 + 17 + 16  # unindexed, a's own, for any model
    assert by_query["a", tuple(ids[1][100:140])] <= 3 + 4
    assert by_query["never-labelled", ("nobody-1", "nobody-2")] == 3  # the unindexed ones
    assert sum(pruned) < len(every) * len(queries) / 3


def test_log_labels_stores_the_model_and_the_request_id_index(ctx: Context) -> None:
    ll.monitor.log_labels(["r-2", "r-10", "r-1", "r-2"], [1, 0, 1, 0], model="churn")
    ll.monitor.log_labels(["x-1"], [1])
    with ctx.engine.connect() as conn:
        rows = conn.execute(sa.select(label_batches).order_by(label_batches.c.id)).all()
    assert [(r.model, r.rid_min, r.rid_max) for r in rows] == [
        ("churn", "r-1", "r-2"),
        (None, "x-1", "x-1"),
    ]
    assert bytes(rows[0].rid_hashes) == build_fingerprints(["r-1", "r-10", "r-2"])
    assert label_files("churn", ["r-10"]) == [rows[0].digest]
    assert label_files("other", ["r-10", "x-1"]) == [rows[1].digest]  # for any model
    assert label_files("churn", ["r-3"]) == []  # in the range, not in the fingerprints
    assert read_labels("churn", request_ids=["r-3"]).empty


def test_read_labels_finds_nothing_with_the_columns_it_always_has(ctx: Context) -> None:
    ll.monitor.log_labels(["r-1"], [1], model="a", rows=[0])
    found = read_labels("a", request_ids=["r-1"])
    for model, wanted in [("a", ["r-2"]), ("b", None), ("a", [])]:
        none = read_labels(model, request_ids=wanted)
        assert none.empty
        pd.testing.assert_series_equal(none.dtypes, found.dtypes)


def test_0023_adds_the_label_index_keeps_old_rows_and_downgrades(db_uri: str) -> None:
    engine = create_engine_for(db_uri)
    upgrade(engine, "0022_metric_points_once")
    old: dict[str, Any] = {"digest": "d" * 64, "rows": 4, "matched": 3, "created": 1.5}
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO label_batches (digest, rows, matched, created) "
                "VALUES (:digest, :rows, :matched, :created)"
            ),
            old,
        )
    upgrade(engine, "0023_label_batches_index")
    assert current_revision(engine) == "0023_label_batches_index"
    with engine.connect() as conn:
        row = conn.execute(sa.select(label_batches)).one()._asdict()
    assert row == {"id": row["id"], **old, **dict.fromkeys(INDEX)}  # not filled in
    indexes = sa.inspect(engine).get_indexes("label_batches")
    assert {i["name"]: i["column_names"] for i in indexes} == {"ix_label_batches_model": ["model"]}
    command.downgrade(alembic_config(engine), "0022_metric_points_once")
    columns = {c["name"] for c in sa.inspect(engine).get_columns("label_batches")}
    assert columns == {"id", "digest", "rows", "matched", "created"}
    assert sa.inspect(engine).get_indexes("label_batches") == []
    with engine.connect() as conn:
        kept = conn.execute(sa.text("SELECT digest, rows, matched, created FROM label_batches"))
        assert [tuple(r) for r in kept] == [tuple(old.values())]
    upgrade(engine, "0023_label_batches_index")
    assert current_revision(engine) == "0023_label_batches_index"
    engine.dispose()
