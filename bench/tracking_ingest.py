"""Benchmark: metric ingest through the SDK (``run.log_metrics`` + ``run.flush``).

Workload: one run, STEPS steps x KEYS metrics through ``run.log_metrics``, then
``run.flush()``; the clock stops when every point is committed. Also measures what one
``run.log_metric`` call costs the caller. Prints a JSON result (and writes it to ``--out``).
``--uri http://host:port`` measures the remote SDK against a ``loopline server``.

Usage:
    python bench/tracking_ingest.py [--uri sqlite:///...] [--steps 1000] [--keys 100]

Example:
    python bench/tracking_ingest.py --out /tmp/ingest.json
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa

import loopline as ll
from loopline.tracking.api import start_run
from loopline.tracking.run_handle import Run
from loopline.tracking.tables import latest_metrics, metric_chunks


def _bulk(run: Run, steps: int, keys: int) -> float:
    names = [f"m{k:03d}" for k in range(keys)]
    values = [{name: (s * keys + k) * 1e-3 for k, name in enumerate(names)} for s in range(steps)]
    started = time.perf_counter()
    for step, row in enumerate(values):
        run.log_metrics(row, step=step)
    run.flush()
    return time.perf_counter() - started


def _per_call_us(run: Run, calls: int) -> float:
    log_metric = run.log_metric
    started = time.perf_counter()
    for i in range(calls):
        log_metric("single", 0.5, step=i)
    return (time.perf_counter() - started) / calls * 1e6


def measure(uri: str, artifacts: str, steps: int, keys: int, repeat: int) -> dict[str, Any]:
    """Run the workload ``repeat`` times on ``uri`` (a database, or a server's http URL).

    Example:
        >>> # measure("sqlite:///tmp/b.db", "/tmp/art", 1000, 100, 3)["points_per_s_median"]
    """
    ctx = ll.init(uri=uri, artifacts=artifacts)
    rates, per_call, run_ids = [], [], []
    for _ in range(repeat):
        with start_run(experiment="bench-ingest") as run:
            seconds = _bulk(run, steps, keys)
            rates.append(steps * keys / seconds)
            per_call.append(_per_call_us(run, 100_000))
        run_ids.append(run.id)
        if not ctx.is_remote:
            _check_stored(ctx.engine, run.id, steps, keys)
    return {
        "benchmark": "tracking_ingest",
        "backend": "http" if ctx.is_remote else ctx.engine.dialect.name,
        "workload": f"{steps} steps x {keys} metrics via run.log_metrics + flush",
        "points_per_s_median": round(statistics.median(rates)),
        "points_per_s_all": [round(r) for r in rates],
        "log_metric_us_median": round(statistics.median(per_call), 3),
        "target_points_per_s": 225_000,
        "target_log_metric_us": 10,
        "python": platform.python_version(),
        "run_ids": run_ids,
    }


def _check_stored(engine: sa.Engine, run_id: str, steps: int, keys: int) -> None:
    with engine.connect() as conn:
        stored = conn.execute(  # points, packed in chunks
            sa.select(sa.func.sum(metric_chunks.c.points)).where(metric_chunks.c.run_id == run_id)
        ).scalar_one()
        latest = conn.execute(
            sa.select(sa.func.count())
            .select_from(latest_metrics)
            .where(latest_metrics.c.run_id == run_id)
        ).scalar_one()
    assert stored == steps * keys + 100_000, stored
    assert latest == keys + 1, latest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uri", default=None, help="metadata URI (default: a temp SQLite file)")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", default=None, help="also write the JSON result here")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ll-bench-"))
    uri = args.uri or f"sqlite:///{tmp / 'bench.db'}"
    result = measure(uri, str(tmp / "artifacts"), args.steps, args.keys, args.repeat)
    if args.out:
        Path(args.out).write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
