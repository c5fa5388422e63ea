"""The Loopline side of bench_tracking, one workload per process (as the MLflow side runs).

Usage: python loopline_tracking.py MODE URI ARTIFACTS [REPEAT|RUNS]
Modes: ingest (1,000 steps x 100 metrics via log_metrics + flush, REPEAT times),
log_metric_loop (100,000 log_metric calls + flush), runs_search (RUNS runs, then 5 searches).
URI may be a database or a ``loopline server`` URL. Prints one JSON line of figures.

Example:
    python bench/loopline_tracking.py ingest sqlite:////tmp/b.db /tmp/art 3
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loopline as ll
import tracking_ingest
from loopline.tracking.api import start_run


def log_metric_loop(uri: str, artifacts: str, points: int = 100_000) -> dict[str, Any]:
    """Seconds for ``points`` ``run.log_metric`` calls then ``flush``."""
    ll.init(uri=uri, artifacts=artifacts)
    with start_run(experiment="bench-log-metric") as run:
        log_metric = run.log_metric
        started = time.perf_counter()
        for i in range(points):
            log_metric("loss", 1.0 / (i + 1), step=i)
        run.flush()
        seconds = time.perf_counter() - started
    return {"points": points, "seconds": seconds}


def runs_search(uri: str, artifacts: str, runs: int = 1000) -> dict[str, Any]:
    """Create ``runs`` runs (2 params, 2 metrics, ended), then search them 5 times."""
    ll.init(uri=uri, artifacts=artifacts)
    started = time.perf_counter()
    for i in range(runs):
        with ll.start_run(experiment="bench-runs") as run:
            run.log_params({"model": "lgbm" if i % 2 else "rf", "depth": i % 10})
            run.log_metrics({"auc": (i % 100) / 100, "loss": 1 - (i % 100) / 100})
    create = time.perf_counter() - started
    times, found = [], 0
    for _ in range(5):
        started = time.perf_counter()
        page = ll.search_runs(
            "bench-runs",
            filter="metrics.auc > 0.5 and params.model = 'lgbm'",
            order_by=["metrics.auc DESC"],
            max_results=1000,
        )
        times.append(time.perf_counter() - started)
        found = len(page)
    return {
        "runs": runs,
        "create_seconds": create,
        "search_seconds": times[0],
        "search_seconds_median": statistics.median(times),
        "found": found,
    }


if __name__ == "__main__":
    mode, uri, artifacts, *rest = sys.argv[1:]
    n = int(rest[0]) if rest else None
    if mode == "ingest":
        result = tracking_ingest.measure(uri, artifacts, 1000, 100, n or 3)
    elif mode == "log_metric_loop":
        result = log_metric_loop(uri, artifacts)
    else:
        result = runs_search(uri, artifacts, n or 1000)
    print(json.dumps(result))
