"""Benchmark: matching late labels to the prediction log, with and without the request-id
index (``loopline.monitoring.rid_index``).

Workload (under ``bench/.work/labels``, deleted at the end): an embedded store (SQLite + a
local folder) holding N logged predictions (1M and 5M by default) of one model, written by
the real ``PredictionLogger`` in flushes of 10,000 requests (one Parquet file each: 100
files per million), each request with 5 numeric inputs and a request id as the model server makes
them: a per-process prefix and a counter; 4 server processes take turns.

Cases, each ``ll.monitor.log_labels`` of 10,000 ids (9,500 logged + 500 unknown ones):

- **recent**: labels for a contiguous slice of traffic (the usual case: the outcome of an
  hour of requests arrives together);
- **scattered**: ids drawn at random from the whole log (the worst case for any per-file
  index: every file holds some).

"Before" is the same store with the index columns set to NULL, as files written before
migration 0010 are: every file's ``_request_id`` column is then read. "After" is the
indexed store. The matching step alone is also set against the previous code (a DuckDB
join of the ids with the ``_request_id`` column of every prediction file). Median of
``--repeat`` calls each.

Live metrics: on the same store (the labels of both cases logged), the call behind the
UI's ``/monitoring`` page, ``ll.monitor.performance(model, window=1000, last=20000)``:
it reads the files of the newest 20,000 rows only and their requests' labels, so its
time should not grow with the log. Target: under 0.2 s (it took 1.1 s at 100k rows).

Hot-path cost: the index is built on the writer thread at flush time, never on the
request's thread; its cost per flushed file of 10,000 requests is measured and divided per
request and set against the serving benchmark's one-row latency p50
(``bench/results/serving.json``); so is the cost of ``PredictionLogger.log`` on the
caller's thread. Target: together at most 5 % of a request's latency.

Usage:
    .venv/bin/python bench/bench_labels.py [--predictions 1000000,5000000] [--labels 10000]
        [--repeat 3]

Example:
    .venv/bin/python bench/bench_labels.py --predictions 200000 --repeat 1
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, WORK, fmt_ratio, median_time, write_result

FILE_REQUESTS = 10_000
#: The rows the UI's live metrics read, and the time they should take at most.
LIVE_ROWS = 20_000
LIVE_BUDGET_S = 0.2
REPLICAS = 4
MODEL = "bench-model"


def _ids(n: int) -> list[str]:
    prefixes = [secrets.token_hex(4) + "-" for _ in range(REPLICAS)]
    counters = [0] * REPLICAS
    out = []
    for f in range(0, n, FILE_REQUESTS):
        r = (f // FILE_REQUESTS) % REPLICAS
        for _ in range(min(FILE_REQUESTS, n - f)):
            counters[r] += 1
            out.append(prefixes[r] + format(counters[r], "x"))
    return out


def _fill(ctx: Any, ids: list[str]) -> float:
    """Log every request through the real logger, one flush per file; seconds of index."""
    from loopline.monitoring.prediction_log import PredictionLogger
    from loopline.monitoring.rid_index import index_columns

    rng = np.random.default_rng(0)
    index_s = []
    with PredictionLogger(ctx, start=False, max_rows=10**9, max_buffer=10**9) as logger:
        for f in range(0, len(ids), FILE_REQUESTS):
            chunk = ids[f : f + FILE_REQUESTS]
            x = rng.normal(size=(len(chunk), 5)).round(4).tolist()
            for rid, row in zip(chunk, x, strict=True):
                logger.log(rid, MODEL, "1", [dict(zip("abcde", row, strict=True))], [1], 0.3)
            logger.flush()
            start = time.perf_counter()
            index_columns(chunk)
            index_s.append(time.perf_counter() - start)
    return statistics.median(index_s)


def _log_cost() -> float:
    """Seconds per ``PredictionLogger.log_request`` call on the caller's thread (no writer):
    what the model server pays per answered request, the spool write (a one-row body and
    its answer) and the queue append. 20,000 calls: a longer burst writes faster than the
    disk takes dirty pages and times the kernel's throttling, not the call (a server at
    3,500 requests/s writes ~1 MB/s)."""
    from loopline.core.context import get_context
    from loopline.monitoring.prediction_log import PredictionLogger

    logger = PredictionLogger(get_context(), start=False, max_rows=10**9, max_buffer=10**9)
    columns = ["a", "b", "c", "d", "e"]
    data = [[1.0, 2.0, 3.0, 4.0, 5.0]]
    body = json.dumps({"dataframe_split": {"columns": columns, "data": data}}).encode()
    n = 20_000
    try:
        start = time.perf_counter()
        for i in range(n):
            rid = f"r{i:x}"
            answer = b'{"predictions":[1],"model_version":"1","request_id":"%s"}' % rid.encode()
            logger.log_request(rid, MODEL, "1", columns, 0.3, body=body, answer=answer)
        # never flushed (the writer was not started): only the caller's cost is measured
        return (time.perf_counter() - start) / n
    finally:
        # Nothing of the timing loop goes to the log: the queue emptied, the spool's
        # segments taken as written, so that close deletes them and nobody replays them.
        logger._buf.clear()
        spool = logger._spool
        for seg in () if spool is None else (spool.current, *spool.retired):
            seg.flushed = seg.size
        logger.close()


def _duckdb_scan(ctx: Any, ids: list[str]) -> int:
    """The matching step as it was before the index: a DuckDB join of the ids with the
    ``_request_id`` column of every prediction file of the model."""
    import duckdb
    import pyarrow as pa

    from loopline.monitoring.log_reads import batch_files, local_files

    with local_files(ctx, batch_files(ctx, MODEL, None, None)) as paths:
        con = duckdb.connect()
        try:
            con.register("wanted", pa.table({"rid": pa.array(ids, pa.string())}))
            rows = con.execute(
                "SELECT DISTINCT p._request_id FROM read_parquet(?, union_by_name=true) p "
                "JOIN wanted w ON p._request_id = w.rid",
                [paths],
            ).fetchall()
        finally:
            con.close()
    return len(rows)


def _serving_p50_ms() -> float | None:
    path = RESULTS / "serving.json"
    if not path.exists():
        return None
    for row in json.loads(path.read_text())["rows"]:
        if row["case"] == "sequential one-row latency p50":
            return float(row["loopline"].split()[0])
    return None


def _run(n: int, n_labels: int, repeat: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Fill a fresh store with ``n`` predictions and measure every case on it."""
    import sqlalchemy as sa

    import loopline as ll
    from loopline.monitoring.labelled_requests import candidate_files, known_request_ids
    from loopline.monitoring.tables import prediction_batches

    work = WORK / "labels"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        ctx = ll.init(uri=f"sqlite:///{work / 'meta.db'}", artifacts=str(work / "artifacts"))
        ids = _ids(n)
        t0 = time.perf_counter()
        index_per_file = _fill(ctx, ids)
        fill_s = time.perf_counter() - t0
        rng = np.random.default_rng(1)
        known = n_labels - n_labels // 20
        unknown = [f"ghost-{i}" for i in range(n_labels - known)]
        start = int(rng.integers(0, len(ids) - known))
        cases = {
            "recent": [*ids[start : start + known], *unknown],
            "scattered": [*rng.choice(np.array(ids, dtype=object), known, False), *unknown],
        }
        labels = [int(v) for v in rng.integers(0, 2, n_labels)]

        def log_labels(wanted: list[str]) -> None:
            report = ll.monitor.log_labels(wanted, labels, model=MODEL)
            assert (report.matched, report.unmatched) == (known, len(unknown)), report

        after: dict[str, float] = {}
        opened: dict[str, int] = {}
        total_files = 0
        for name, wanted in cases.items():
            log_labels(wanted)
            digests, total_files = candidate_files(wanted, MODEL)
            opened[name] = len(digests)
            after[name] = median_time(lambda w=wanted: log_labels(w), repeat)
        live = median_time(  # the /monitoring page's live metrics (server.ui.ops_views)
            lambda: ll.monitor.performance(MODEL, window=1000, last=LIVE_ROWS), repeat
        )
        match_after = {
            name: median_time(lambda w=wanted: known_request_ids(w, MODEL), repeat)
            for name, wanted in cases.items()
        }
        match_duckdb = {}
        for name, wanted in cases.items():
            assert _duckdb_scan(ctx, wanted) == known
            match_duckdb[name] = median_time(lambda w=wanted: _duckdb_scan(ctx, w), repeat)
        with ctx.engine.begin() as conn:  # the store as written before the index existed
            conn.execute(
                sa.update(prediction_batches).values(rid_min=None, rid_max=None, rid_hashes=None)
            )
        before: dict[str, float] = {}
        for name, wanted in cases.items():
            log_labels(wanted)
            before[name] = median_time(lambda w=wanted: log_labels(w), repeat)
        ctx.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    n_txt = f"{n_labels // 1000}k ids vs {n / 1e6:g}M logged predictions"
    rows: list[dict[str, Any]] = []
    for name, what in (("recent", "a recent slice"), ("scattered", "scattered ids")):
        rows.append(
            {
                "case": f"log_labels, {n_txt}, {what}",
                "loopline": f"{after[name]:.3f} s ({opened[name]}/{total_files} files read)",
                "anchor": "loopline before the index (every file read)",
                "anchor_value": f"{before[name]:.3f} s",
                "ratio": fmt_ratio(before[name] / after[name]),
                "target": ">= 2x" if name == "recent" else "not slower (>= 1x)",
            }
        )
    for name, what in (("recent", "a recent slice"), ("scattered", "scattered ids")):
        rows.append(
            {
                "case": f"matching step only, {n_txt}, {what}",
                "loopline": f"{match_after[name]:.3f} s",
                "anchor": "previous code: DuckDB join over every file",
                "anchor_value": f"{match_duckdb[name]:.3f} s",
                "ratio": fmt_ratio(match_duckdb[name] / match_after[name]),
                "target": ">= 2x" if name == "recent" else "not slower (>= 1x)",
            }
        )
    rows.append(
        {
            "case": f"live metrics page: performance(window=1000, last=20k), {n_txt}",
            "loopline": f"{live:.3f} s",
            "anchor": "the page's budget",
            "anchor_value": f"{LIVE_BUDGET_S:.3f} s",
            "ratio": fmt_ratio(LIVE_BUDGET_S / live),
            "target": f"< {LIVE_BUDGET_S:g} s",
        }
    )
    details = {
        "files": total_files,
        "live_metrics_s": round(live, 4),
        "fill_s": round(fill_s, 1),
        "before_s": {k: round(v, 4) for k, v in before.items()},
        "after_s": {k: round(v, 4) for k, v in after.items()},
        "files_read_after": opened,
        "match_after_s": {k: round(v, 4) for k, v in match_after.items()},
        "match_duckdb_every_file_s": {k: round(v, 4) for k, v in match_duckdb.items()},
        "index_ms_per_file": round(index_per_file * 1000, 3),
    }
    return rows, details


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--predictions", default="1000000,5000000", help="comma-separated")
    parser.add_argument("--labels", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    rows: list[dict[str, Any]] = []
    per_size: dict[str, Any] = {}
    for n in (int(x) for x in args.predictions.split(",")):
        size_rows, per_size[str(n)] = _run(n, args.labels, args.repeat)
        rows.extend(size_rows)
    index_ms = statistics.median(d["index_ms_per_file"] for d in per_size.values())
    log_us = _log_cost() * 1e6
    per_request_us = index_ms / 1000 / FILE_REQUESTS * 1e6
    p50 = _serving_p50_ms()
    share = None if p50 is None else (per_request_us + log_us) / (p50 * 1000) * 100
    rows.append(
        {
            "case": "prediction-log cost per request: the server's log_request (spool "
            "write) + request-id index at flush",
            "loopline": f"{log_us:.2f} us + {per_request_us:.2f} us",
            "anchor": "loopline serve one-row latency p50 (serving.json)",
            "anchor_value": "n/a" if p50 is None else f"{p50:.3f} ms",
            "ratio": "n/a" if share is None else f"{share:.2f} %",
            "target": "<= 5 %",
        }
    )
    details = {
        "requests_per_file": FILE_REQUESTS,
        "replicas": REPLICAS,
        "labels": args.labels,
        "unknown_ids": args.labels // 20,
        "repeat": args.repeat,
        "log_call_us": round(log_us, 3),
        "index_us_per_request": round(per_request_us, 3),
        "by_predictions": per_size,
    }
    path = write_result("labels", rows, details)
    print(json.dumps({"result": str(path), **details}))


if __name__ == "__main__":
    main()
