"""The Prefect side of bench_pipeline: runs in the anchor venv (bench/.envs/prefect).

Usage: python prefect_pipeline.py STEPS WORKDIR
A flow of STEPS chained no-op tasks, run locally (Prefect's ephemeral local API on SQLite
under WORKDIR, no server started by hand). Measured: a first run with task caching on
inputs + source (every task runs), then the same flow again (every task a cache hit).
Prints one JSON line of figures.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

steps, workdir = int(sys.argv[1]), sys.argv[2]
os.environ.setdefault("PREFECT_HOME", str(Path(workdir) / "prefect-home"))
os.environ.setdefault("PREFECT_LOCAL_STORAGE_PATH", str(Path(workdir) / "prefect-results"))
os.environ.setdefault("PREFECT_RESULTS_PERSIST_BY_DEFAULT", "true")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# The ephemeral API server can take long to start on a busy machine (default limit: 20 s).
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "300")

import prefect  # noqa: E402
from prefect import flow, task  # noqa: E402
from prefect.cache_policies import INPUTS, TASK_SOURCE  # noqa: E402

RAN: list[int] = []  # task bodies that ran (a cache hit runs none)


@task(cache_policy=INPUTS + TASK_SOURCE, persist_result=True)
def noop(i: int, prev: object = None) -> None:
    RAN.append(i)


@flow(log_prints=False)
def chain(n: int, salt: str) -> None:
    prev = None
    for i in range(n):
        prev = noop(i, (salt, prev))


def timed(n: int, salt: str) -> float:
    start = time.perf_counter()
    chain(n, salt)
    return time.perf_counter() - start


warm = timed(2, "warm-up")  # starts the ephemeral API, creates the database
salt = str(time.time_ns())
RAN.clear()
first = timed(steps, salt)
ran_first = len(RAN)
RAN.clear()
cached = timed(steps, salt)
print(
    json.dumps(
        {
            "version": prefect.__version__,
            "steps": steps,
            "warmup_s": warm,
            "uncached_s": first,
            "cached_s": cached,
            "ran_uncached": ran_first,
            "ran_cached": len(RAN),
        }
    )
)
