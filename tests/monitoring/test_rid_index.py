"""The request-id index of the prediction log: labels open only the files that can match."""

from __future__ import annotations

import secrets

import numpy as np
import pytest
import sqlalchemy as sa

import loopline as ll
from loopline.core.context import Context
from loopline.monitoring.labelled_requests import candidate_files, known_request_ids
from loopline.monitoring.prediction_log import PredictionLogger
from loopline.monitoring.rid_index import (
    SAMPLE_FILES,
    SAMPLE_FROM,
    FileIndex,
    WantedIds,
    build_fingerprints,
    contains,
    fingerprints,
    hash_ids,
    index_columns,
    may_hold,
)
from loopline.monitoring.tables import prediction_batches


def test_the_hash_is_pinned_so_stored_indexes_stay_valid() -> None:
    # a change here (a new pandas hashing) would make old indexes miss ids: bump LLF1
    assert hash_ids(["abc", "r-1"]).tolist() == [5171166672679695367, 3208915759941256481]


def test_fingerprints_never_miss_and_rarely_lie_for_a_batch_of_ids() -> None:
    ids = [f"{secrets.token_hex(4)}-{i:x}" for i in range(10_000)]
    index = build_fingerprints(ids)
    assert len(index) <= 4 + 4 * 10_000  # 4 bytes per request
    assert contains(index, fingerprints(ids)).all()
    # 100 files of 10k ids, 10k wanted ids in none of them: few files are opened in vain
    wanted = WantedIds(secrets.token_hex(8) for _ in range(10_000))
    vain = 0
    for _ in range(100):
        other = build_fingerprints([secrets.token_hex(8) for _ in range(10_000)])
        vain += wanted.may_be_in(FileIndex("d", None, None, other))
    assert vain <= 10  # expected about 2 (10k x 10k / 2**32 per file)


def test_the_range_rules_out_files_before_the_fingerprints() -> None:
    entry = FileIndex("d", "b-1", "b-2", None)
    assert not WantedIds(["a-1", "c-1"]).may_be_in(entry)
    assert WantedIds(["a-1", "b-15"]).may_be_in(entry)  # in range, no fingerprints: a candidate
    long_id = "x" * 300
    cols = index_columns([long_id, "y"])
    assert cols["rid_min"] is None and cols["rid_max"] is None  # wider than the column
    assert isinstance(cols["rid_hashes"], bytes)
    assert WantedIds([long_id]).may_be_in(FileIndex("d", None, None, cols["rid_hashes"]))
    assert not WantedIds(["z"]).may_be_in(FileIndex("d", None, None, cols["rid_hashes"]))
    with pytest.raises(ValueError, match="not a Loopline request-id index"):
        WantedIds(["y"]).may_be_in(FileIndex("d", None, None, b"junk!!!!"))


def test_ids_in_every_file_keep_every_file_without_reading_each_ones_fingerprints() -> None:
    # 100 files of UUID-like ids (each file's range is the whole space): wanted ids
    # scattered over all of them keep all of them after 16 files' fingerprints; wanted ids
    # of one file are still found by every file's fingerprints.
    files = [[secrets.token_hex(8) for _ in range(200)] for _ in range(100)]
    stored = {i: build_fingerprints(ids) for i, ids in enumerate(files)}
    rows = [(i, min(ids), max(ids)) for i, ids in enumerate(files)]
    asked: list[int] = []

    def load(row_ids: list[int]) -> dict[int, bytes | None]:
        asked.extend(row_ids)
        return {i: stored[i] for i in row_ids}

    scattered = WantedIds([ids[7] for ids in files])
    assert may_hold(scattered, rows, load) == list(range(100)) and len(asked) == SAMPLE_FILES
    asked.clear()
    assert may_hold(WantedIds(files[42][:50]), rows, load) == [42]
    assert len(asked) == SAMPLE_FILES + 100  # the sample was not all kept: every file read
    asked.clear()
    few = rows[: SAMPLE_FROM - 1]  # too few files in range to sample
    assert may_hold(scattered, few, load) == list(range(SAMPLE_FROM - 1))
    assert len(asked) == SAMPLE_FROM - 1


def _log(ctx: Context, prefix: str, n: int, model: str = "m") -> list[str]:
    ids = [f"{prefix}-{i:x}" for i in range(n)]
    with PredictionLogger(ctx, start=False) as logger:
        for rid in ids:
            logger.log(rid, model, "1", [{"x": 1.0}], [1], 1.0)
    return ids


def test_labels_open_only_the_files_that_can_hold_them(ctx: Context) -> None:
    files = {p: _log(ctx, p, 300) for p in ("aaaa1111", "bbbb2222", "cccc3333", "dddd4444")}
    wanted = files["bbbb2222"][10:60]
    digests, total = candidate_files(wanted, "m")
    assert total == 4 and len(digests) == 1
    assert known_request_ids([*wanted, "bbbb2222-ffff"], "m") == set(wanted)
    report = ll.monitor.log_labels([*wanted, "ghost"], [1] * len(wanted) + [0], model="m")
    assert (report.matched, report.unmatched, report.unmatched_ids) == (50, 1, ["ghost"])
    everywhere = [ids[0] for ids in files.values()]
    assert len(candidate_files(everywhere, "m")[0]) == 4
    assert candidate_files(everywhere, "other-model") == ([], 0)


def test_files_written_before_the_index_are_still_matched(ctx: Context) -> None:
    old = _log(ctx, "0ld0ld00", 100)
    with ctx.engine.begin() as conn:  # as a file written before migration 0010
        conn.execute(
            sa.update(prediction_batches).values(rid_min=None, rid_max=None, rid_hashes=None)
        )
    new = _log(ctx, "9ew9ew99", 100)
    assert len(candidate_files(new[:5], "m")[0]) == 2  # the unindexed file is always opened
    assert len(candidate_files(old[:5], "m")[0]) == 1
    report = ll.monitor.log_labels([old[3], new[4]], [0, 1])
    assert report.matched == 2


def test_duplicates_in_one_call_are_counted_and_the_last_wins(ctx: Context) -> None:
    ids = _log(ctx, "dup00000", 10)
    report = ll.monitor.log_labels([ids[0], ids[1], ids[0]], [0, 1, 1], model="m")
    assert (report.received, report.matched, report.duplicates) == (3, 3, 1)
    labels = ll.monitor.read_labels().set_index("request_id")
    assert labels.loc[ids[0], "label_num"] == 1.0


def test_a_numeric_model_takes_numeric_labels(ctx: Context) -> None:
    ids = _log(ctx, "num00000", 5)
    with pytest.raises(
        ll.InvalidInput, match="label 1 is 'yes', but model 'm' predicts numbers"
    ) as e:
        ll.monitor.log_labels(ids[:2], [1, "yes"], model="m")
    assert e.value.field == "labels[1]"
    assert ll.monitor.log_labels(ids[:2], [np.int64(1), None], model="m").matched == 2
    assert ll.monitor.log_labels(ids[:1], ["yes"]).matched == 1  # no model named: not checked


def test_many_candidate_files_are_joined_in_one_scan(ctx: Context) -> None:
    files = [_log(ctx, f"{i:08x}", 20) for i in range(10)]  # more than _FEW_FILES
    wanted = [ids[i] for i, ids in enumerate(files)] + ["ghost"]
    assert len(candidate_files(wanted, "m")[0]) == 10
    assert known_request_ids(wanted, "m") == set(wanted[:-1])
    assert ll.monitor.log_labels(wanted, [1] * 11, model="m").unmatched_ids == ["ghost"]
