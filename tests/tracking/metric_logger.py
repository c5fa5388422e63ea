"""Child process for the ingest tests: logs metrics through the SDK in several modes.

``concurrent URI ARTIFACTS GO_FILE INDEX STEPS KEYS``: prints READY, waits for GO_FILE, logs
STEPS x KEYS points in one run of the experiment "concurrent", prints the run id.
``killed URI ARTIFACTS KEYS``: logs steps forever, flushing every 10 steps and printing
``ACK <run_id> <step>`` only after the flush returned.
``exit URI ARTIFACTS N [fail]``: starts a run without ``with``, logs N points without
flushing, prints the run id and exits (normally, or by an uncaught exception).
``fork URI ARTIFACTS``: queues 100 points, forks; the child logs 50 more to the inherited run
and exits normally; the parent logs 10 more and ends the run; prints the run id.
``same URI ARTIFACTS GO_FILE RUN_ID POINTS``: prints READY, waits for GO_FILE, writes the
points 0..POINTS-1 of key "same" to the run in batches of 7 (each point in two batches), the
same points as every other process in this mode; prints DONE.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import loopline
from loopline.tracking import run_data


def concurrent(uri: str, artifacts: str, go: str, index: int, steps: int, keys: int) -> None:
    loopline.init(uri=uri, artifacts=artifacts)
    print("READY", flush=True)
    while not Path(go).exists():
        time.sleep(0.005)
    with loopline.start_run(experiment="concurrent", name=f"worker-{index}") as run:
        run.log_param("worker", index)
        for step in range(steps):
            run.log_metrics({f"m{k}": index * 1e6 + step * 100 + k for k in range(keys)}, step=step)
            if step % 50 == 0:
                run.log_metric("single", step, step=step)
    print(run.id, flush=True)


def killed(uri: str, artifacts: str, keys: int) -> None:
    loopline.init(uri=uri, artifacts=artifacts)
    run = loopline.start_run(experiment="killed")
    step = 0
    while True:
        run.log_metrics({f"m{k}": float(step) for k in range(keys)}, step=step)
        if step % 10 == 9:
            run.flush()
            sys.stdout.write(f"ACK {run.id} {step}\n")
            sys.stdout.flush()
        step += 1


def exit_without_flush(uri: str, artifacts: str, n: int, fail: bool) -> None:
    loopline.init(uri=uri, artifacts=artifacts)
    run = loopline.start_run(experiment="exit")
    for i in range(n):
        run.log_metric("x", float(i), step=i)
    print(run.id, flush=True)
    if fail:
        raise RuntimeError("the script crashed")


def fork(uri: str, artifacts: str) -> None:
    loopline.init(uri=uri, artifacts=artifacts)
    run = loopline.start_run(experiment="fork")
    for i in range(100):
        run.log_metric("parent", float(i), step=i)  # queued, not yet written
    pid = os.fork()
    if pid == 0:
        for i in range(50):
            run.log_metric("child", float(i), step=i)
        sys.exit(0)  # atexit flushes the child's points and leaves the run open
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert loopline.get_run(run.id).status == "RUNNING"
    for i in range(100, 110):
        run.log_metric("parent", float(i), step=i)
    run.end()
    print(run.id, flush=True)


def same(uri: str, artifacts: str, go: str, run_id: str, points: int) -> None:
    ctx = loopline.init(uri=uri, artifacts=artifacts)
    rows = [(run_id, "same", float(i % 5), 1_000 + i, i // 3, 0) for i in range(points)]
    print("READY", flush=True)
    while not Path(go).exists():
        time.sleep(0.005)
    for start in range(0, points, 5):  # batches of 7 that overlap by 2
        run_data.log_batch(ctx.engine, run_id, rows=rows[start : start + 7])
    print("DONE", flush=True)


if __name__ == "__main__":
    mode, uri, artifacts, *rest = sys.argv[1:]
    if mode == "concurrent":
        concurrent(uri, artifacts, rest[0], int(rest[1]), int(rest[2]), int(rest[3]))
    elif mode == "same":
        same(uri, artifacts, rest[0], rest[1], int(rest[2]))
    elif mode == "fork":
        fork(uri, artifacts)
    elif mode == "killed":
        killed(uri, artifacts, int(rest[0]))
    else:
        exit_without_flush(uri, artifacts, int(rest[0]), rest[1:] == ["fail"])
