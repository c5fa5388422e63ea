"""The matching step of labels with the request-id index gives what reading every file
gives: the same rows per id, the same reports (multi-row requests, an id logged twice,
unknown ids in and out of the files' ranges, duplicates, ids beyond ASCII)."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

import loopline as ll
from loopline.core.context import Context
from loopline.monitoring.labelled_requests import _FEW_FILES, candidate_files, logged_rows
from loopline.monitoring.prediction_log import PredictionLogger
from loopline.monitoring.rid_index import WantedIds, build_fingerprints, fingerprints, index_columns
from loopline.monitoring.tables import prediction_batches

ROWS = [{"x": 1.0}, {"x": 2.0}, {"x": 3.0}]


def _flush(ctx: Context, requests: list[tuple[str, int]], model: str = "m") -> None:
    """One prediction file of ``requests`` (request id, rows)."""
    with PredictionLogger(ctx, start=False) as logger:
        for rid, n in requests:
            logger.log(rid, model, "1", ROWS[:n], [1] * n, 1.0)


def _store(ctx: Context, files: int) -> dict[str, int]:
    """``files`` prediction files from 3 "servers" (an id prefix each, a hex counter, as
    the model server makes them); every third file has requests of several rows; one id
    is logged again in a later file with more rows. The rows of each logged id."""
    truth: dict[str, int] = {}
    prefixes = ["0a1b2c3d-", "f00dcafe-", "éü-€-😀-"]  # the last: beyond ASCII and the BMP
    counters = [0, 0, 0]
    for f in range(files):
        p = f % 3
        requests = []
        for _ in range(40):
            counters[p] += 1
            n = 1 + counters[p] % 3 if f % 3 == 1 else 1
            requests.append((f"{prefixes[p]}{counters[p]:x}", n))
        if f == files - 1:
            requests.append((next(iter(truth)), 3))  # logged again, with 3 rows
        _flush(ctx, requests)
        for rid, n in requests:
            truth[rid] = max(truth.get(rid, 0), n)
    return truth


def _unindex(ctx: Context) -> None:
    with ctx.engine.begin() as conn:  # as files written before migration 0010
        conn.execute(
            sa.update(prediction_batches).values(rid_min=None, rid_max=None, rid_hashes=None)
        )


@pytest.mark.parametrize("files", [6, _FEW_FILES + 4])
def test_the_indexed_match_is_the_match_of_every_file(ctx: Context, files: int) -> None:
    truth = _store(ctx, files)
    logged = list(truth)
    rng = random.Random(files)
    recent = logged[-70:-10]
    scattered = rng.sample(logged, 50)
    unknown = ["0a1b2c3d-ffff", "f00dcafe-3ffff", "éü-€-😀-zz", "ghost", "Ωmega", "0"]
    cases = {
        "recent": [*recent, *unknown],
        "scattered": [*scattered, *unknown],
        "duplicates": [*recent[:5], *recent[:5], unknown[0], unknown[0], logged[0]],
        "unknown only": unknown,
    }
    indexed = {name: logged_rows(ids, "m") for name, ids in cases.items()}
    reports = {
        name: ll.monitor.log_labels(ids, [1] * len(ids), model="m").to_dict()
        for name, ids in cases.items()
    }
    rows_reports = {
        name: ll.monitor.log_labels(ids, [1] * len(ids), model="m", rows=[0] * len(ids)).to_dict()
        for name, ids in cases.items()
    }
    for name, ids in cases.items():
        assert indexed[name] == {rid: truth[rid] for rid in ids if rid in truth}, name
    assert len(candidate_files(cases["recent"], "m")[0]) < files  # the index was used
    _unindex(ctx)
    assert len(candidate_files(cases["recent"], "m")[0]) == files
    for name, ids in cases.items():
        assert logged_rows(ids, "m") == indexed[name], name
        report = ll.monitor.log_labels(ids, [1] * len(ids), model="m").to_dict()
        assert report == reports[name], name
        by_row = ll.monitor.log_labels(ids, [1] * len(ids), model="m", rows=[0] * len(ids))
        assert by_row.to_dict() == rows_reports[name], name
    assert reports["duplicates"]["duplicates"] == 6
    assert reports["unknown only"]["unmatched"] == len(unknown)


def test_wanted_ids_are_sorted_by_code_point_and_each_kept_once() -> None:
    # UTF-8 bytes and code points sort alike; UTF-16 would put U+FF5E after U+1F600
    ids = ["b", "\uff5e", "a", "😀", "é", "b", "A", "a-10", "a-9", "\uff5e"]
    wanted = WantedIds(ids)
    assert wanted.sorted.tolist() == sorted(set(ids))
    assert wanted.in_range("a", "b") == (1, 5)
    assert WantedIds(iter(ids)).sorted.tolist() == sorted(set(ids))
    assert WantedIds([]).in_range(None, None) is None


def test_wanted_ids_of_other_kinds_are_sorted_as_python_sorts_them() -> None:
    ids: list[Any] = [b"b", b"a", b"b"]
    assert WantedIds(ids).sorted.tolist() == [b"a", b"b"]
    assert WantedIds([3, 1, 3]).sorted.tolist() == [1, 3]  # type: ignore[list-item]
    with pytest.raises(TypeError):  # as sorted() refuses them
        WantedIds(["a", b"a"])
    assert WantedIds(["b-1", "a-1"]).as_arrow().to_pylist() == ["a-1", "b-1"]


def test_a_slice_of_fingerprints_is_picked_in_order() -> None:
    wanted = WantedIds(f"{i:x}-r" for i in range(2_000))
    rng = random.Random(0)
    for lo, hi in [(0, 2_000), (0, 1), (1_999, 2_000), *((rng.randrange(1_000), 1_500),) * 5]:
        picked = wanted.prints_sorted(lo, hi)
        assert picked.tolist() == sorted(wanted.prints[lo:hi].tolist()), (lo, hi)


def test_the_ranges_of_many_files_are_those_of_each() -> None:
    wanted = WantedIds(["a-1", "a-10", "a-2", "b-1", "éé", "😀"])
    ranges: list[tuple[str | None, str | None]] = [
        ("a-1", "a-2"), ("a-10", "a-10"), ("a-3", "a-9"), ("0", "zz"), (None, None),
        ("a-1", None), ("c", "d"), ("0", "a-1"), ("😀", "😀"), ("b-1", "é"), ("z", "a"),
    ]  # fmt: skip
    assert wanted.in_ranges(ranges) == [wanted.in_range(lo, hi) for lo, hi in ranges]
    assert WantedIds([]).in_ranges([("a", "b"), (None, None)]) == [None, None]


@pytest.mark.parametrize("n", [0, 1, 2, 1_000, 70_000])
def test_an_index_holds_the_distinct_fingerprints_sorted(n: int) -> None:
    # a duplicated id repeats its fingerprint (as two ids of 70,000 may, ~40 % of runs)
    rng = random.Random(n)
    ids = [f"{rng.getrandbits(40):x}-r" for _ in range(n)] + ["dup", "dup"] * (n > 1)
    plain = b"LLF1" + np.unique(fingerprints(ids)).astype("<u4").tobytes()
    assert build_fingerprints(ids) == plain
    columns = index_columns(ids)
    assert columns["rid_hashes"] == (plain if ids else None)
    assert WantedIds(ids).index_columns() == columns
