"""The executor conformance suite: the same pipelines on local, process and Ray."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import loopline as ll
from loopline.core.context import Context
from loopline.errors import InvalidInput
from loopline.training import worker_calls
from loopline.training.executors import (
    Executor,
    LocalExecutor,
    ProcessExecutor,
    RayExecutor,
    get_executor,
)
from loopline.training.outputs import store_value
from tests.training import pipeline_steps as ps


@pytest.fixture(
    scope="module",
    params=["local", "process", pytest.param("ray", marks=pytest.mark.slow)],
)
def executor(request: pytest.FixtureRequest) -> Iterator[Executor]:
    """One executor of each kind, kept for the module (workers start once)."""
    ex: Executor
    if request.param == "local":
        ex = LocalExecutor()
    elif request.param == "process":
        ex = ProcessExecutor(max_workers=2)
    else:
        ex = RayExecutor()
    yield ex
    ex.close()
    if request.param == "ray":
        import ray

        ray.shutdown()


def test_submit_returns_futures_of_the_call(executor: Executor) -> None:
    assert executor.submit(math.factorial, 5).result(timeout=60) == 120
    futures = [executor.submit(pow, 2, i) for i in range(4)]
    assert [f.result(timeout=60) for f in futures] == [1, 2, 4, 8]
    with pytest.raises(ValueError):
        executor.submit(math.factorial, -1).result(timeout=60)


def test_same_pipeline_same_outputs(ctx: Context, executor: Executor, tmp_path: Path) -> None:
    result = ps.simple.run({"workdir": str(tmp_path), "n": 5}, executor=executor)
    assert result.summary()["steps"] == {
        "load": {"status": "finished", "attempts": 1},
        "double": {"status": "finished", "attempts": 1},
        "total": {"status": "finished", "attempts": 1},
    }
    assert result.output("total") == {"sum": 20, "rows": 5}
    assert result.record.executor == executor.name
    # The worker wrote the same bytes this process would: outputs are content-addressed.
    expected = store_value(
        pd.DataFrame({"x": np.arange(5, dtype="int64")}), ctx.artifacts, step="t"
    )
    assert result.steps["load"].output == expected
    # The cache does not care where a step ran.
    again = ps.simple.run({"workdir": str(tmp_path), "n": 5}, executor="local")
    assert {s.status for s in again.steps.values()} == {"cached"}
    assert ps.count(str(tmp_path), "load") == 1


def test_independent_steps_overlap(ctx: Context, executor: Executor) -> None:
    # Warm up: two overlapping naps make every executor start (and import into) two workers.
    # Ray starts its second worker only when the second task is waiting, which takes over a
    # second on a loaded machine: its warm-up naps outlast that start, or the first worker
    # runs both naps in turn and the measured run starts the second worker all over again.
    ps.parallel.run({"seconds": 3.0 if executor.name == "ray" else 0.3}, executor=executor)
    result = ps.parallel.run({"seconds": 0.5}, executor=executor)
    assert result.status == "finished"
    naps: list[dict[str, Any]] = [result.output("nap"), result.output("nap_2")]
    # Side by side means the two naps overlap in time: the later start comes before the
    # earlier end. (A wall-clock bound on the span would measure the machine's load too.)
    later_start = max(n["start"] for n in naps)
    earlier_end = min(n["end"] for n in naps)
    assert later_start < earlier_end, f"the steps ran one after the other: {naps}"


def test_retries_and_failure_isolation(ctx: Context, executor: Executor, tmp_path: Path) -> None:
    wd = str(tmp_path)
    flaky = ps.flaky_pipe.run({"workdir": wd, "fail_times": 1}, executor=executor)
    assert flaky.summary()["steps"] == {"flaky": {"status": "finished", "attempts": 2}}
    branches = ps.branches.run({"workdir": wd}, executor=executor)
    assert branches.status == "failed"
    assert branches.summary()["steps"] == {
        "always_fails": {"status": "failed", "attempts": 2},
        "after": {"status": "skipped", "attempts": 0},
        "independent": {"status": "finished", "attempts": 1},
    }
    assert "ValueError: boom" in (branches.steps["always_fails"].error or "")


def test_a_step_calling_sys_exit_fails_only_that_step(
    ctx: Context, executor: Executor, tmp_path: Path
) -> None:
    # SystemExit is no Exception: it went through the step's retries and ended the driver
    # (the whole `loopline pipeline run`), other branches and bookkeeping with it.
    wd = str(tmp_path)
    result = ps.exiting.run({"workdir": wd}, executor=executor)
    assert result.status == "failed"
    assert result.summary()["steps"] == {
        "exits": {"status": "failed", "attempts": 2},
        "after": {"status": "skipped", "attempts": 0},
        "independent": {"status": "finished", "attempts": 1},
    }
    assert ps.count(wd, "exits") == 2
    assert "SystemExit: the step called sys.exit(3)" in (result.steps["exits"].error or "")


def test_unstorable_output_names_the_step(ctx: Context, executor: Executor) -> None:
    result = ps.bad_output.run({}, executor=executor)
    rec = result.steps["unstorable"]
    assert rec.status == "failed"
    assert "step 'unstorable' returned a builtins.object" in (rec.error or "")


def test_typed_values_cross_the_boundary(ctx: Context, executor: Executor) -> None:
    result = ps.typed.run({"n": 3}, executor=executor)
    assert result.output("describe")["frame"] == ["DataFrame", 3, ["a", "b"]]
    assert result.output("describe")["series"] == ["Series", "s", 3.0]


def test_remote_executors_need_importable_steps(ctx: Context, executor: Executor) -> None:
    @ll.step
    def local_only(x: int) -> int:
        return x

    @ll.pipeline
    def inline(x: int = 1) -> None:
        local_only(x)

    if not executor.remote:
        assert inline.run({}, executor=executor).output("local_only") == 1
        return
    with pytest.raises(InvalidInput, match=r"local_only.*cannot be imported by another process"):
        inline.run({}, executor=executor)
    assert len(ll.search_runs()) == 0  # refused before any run was created


def test_unknown_executor_is_a_clear_error() -> None:
    with pytest.raises(InvalidInput, match=r"unknown executor 'threads'.*local, process, ray"):
        get_executor("threads")
    with pytest.raises(InvalidInput, match="'max_workers' parameter"):
        LocalExecutor(max_workers=0)


class _ReapedElsewhere:
    """A worker's process object while the pool's own thread reaps it: ``join`` returns at
    once (its sentinel is ready) and the exit code appears only when that thread stores it."""

    def __init__(self, code: int, after: float) -> None:
        self._code, self._at = code, time.monotonic() + after

    def join(self, timeout: float | None = None) -> None:
        return None

    @property
    def exitcode(self) -> int | None:
        return self._code if time.monotonic() >= self._at else None


def test_a_dead_workers_exit_code_is_read_though_another_thread_reaped_it() -> None:
    # CI read "exit code unknown" once: the pool's thread won the waitpid race.
    assert worker_calls._death(_ReapedElsewhere(3, after=0.2)) == "exit code 3"
    assert worker_calls._death(_ReapedElsewhere(-9, after=0.1)) == "killed by signal SIGKILL"
    assert worker_calls._ended_by_itself(_ReapedElsewhere(3, after=0.1))
    assert not worker_calls._ended_by_itself(_ReapedElsewhere(-15, after=0.1))
    assert worker_calls._death(None) == "exit code unknown"
