"""Step timeouts, and a worker process that dies, on the process executor (and Ray)."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import loopline as ll
from loopline.core.context import Context
from loopline.errors import InvalidInput
from loopline.training.executors import LocalExecutor, ProcessExecutor, RayExecutor
from loopline.training.pipeline import list_pipeline_runs
from loopline.training.worker_calls import TaskTimedOut, WorkerDied
from tests.training import pipeline_steps as ps


@pytest.fixture(scope="module")
def process() -> Iterator[ProcessExecutor]:
    """Two worker processes, kept for the module (workers start once)."""
    ex = ProcessExecutor(max_workers=2)
    yield ex
    ex.close()


def test_a_call_past_its_timeout_is_killed_and_the_pool_goes_on(process: ProcessExecutor) -> None:
    start = time.monotonic()
    late = process.submit_with_timeout(0.5, time.sleep, 30)
    beside = process.submit(math.factorial, 10)
    assert isinstance(late.exception(timeout=20), TaskTimedOut)
    assert time.monotonic() - start < 10  # not the 30 s the call would have slept
    assert beside.result(timeout=20) == 3628800
    assert process.submit(pow, 2, 8).result(timeout=20) == 256


def test_a_dying_worker_fails_its_call_only(process: ProcessExecutor) -> None:
    import os

    # Python's pool broke as a whole: every call in it failed with BrokenProcessPool.
    running = process.submit(time.sleep, 1.0)
    time.sleep(0.5)  # the sleep has started in one worker
    dead = process.submit(os._exit, 3)
    queued = [process.submit(pow, 3, i) for i in range(4)]
    error = dead.exception(timeout=30)
    assert isinstance(error, WorkerDied) and "exit code 3" in str(error)
    assert running.result(timeout=30) is None
    assert [f.result(timeout=30) for f in queued] == [1, 3, 9, 27]


def test_the_local_executor_cannot_time_out_a_call() -> None:
    with LocalExecutor() as ex, pytest.raises(InvalidInput, match="cannot stop") as err:
        ex.submit_with_timeout(1.0, len, "abc")
    assert err.value.field == "timeout"


def test_a_hung_step_times_out_and_fails_its_branch_only(
    ctx: Context, process: ProcessExecutor, tmp_path: Path
) -> None:
    wd = str(tmp_path)
    start = time.monotonic()
    result = ps.hanging.run({"workdir": wd}, executor=process)
    assert time.monotonic() - start < 30  # the step would have slept 60 s
    assert result.status == "failed"
    assert result.summary()["steps"] == {
        "hangs": {"status": "failed", "attempts": 1},
        "after": {"status": "skipped", "attempts": 0},
        "independent": {"status": "finished", "attempts": 1},
    }
    assert "step 'hangs' timed out after 0.5 s" in (result.steps["hangs"].error or "")
    child = ll.get_run(result.steps["hangs"].run_id or "")
    assert child.status == "FAILED" and "timed out" in (child.tags["loopline.error"] or "")


def test_a_timeout_is_retried_like_any_failure(
    ctx: Context, process: ProcessExecutor, tmp_path: Path
) -> None:
    wd = str(tmp_path)
    result = ps.hanging_once.run({"workdir": wd}, executor=process)
    assert result.summary()["steps"] == {"hangs_once": {"status": "finished", "attempts": 2}}
    assert result.output("hangs_once") == "ok after 2"
    assert ps.count(wd, "hangs_once") == 2


def test_a_step_killing_its_worker_fails_alone(
    ctx: Context, process: ProcessExecutor, tmp_path: Path
) -> None:
    # The dying worker broke the whole pool: 'bystander', running beside it, failed as
    # "the executor lost the step".
    wd = str(tmp_path)
    result = ps.dying.run({"workdir": wd}, executor=process)
    assert result.summary()["steps"] == {
        "bystander": {"status": "finished", "attempts": 1},
        "dies": {"status": "failed", "attempts": 1},
        "after": {"status": "skipped", "attempts": 0},
    }
    error = result.steps["dies"].error or ""
    assert "the worker process died (exit code 3) while it ran step 'dies'" in error
    assert result.output("bystander") == "survived"


def test_the_local_executor_refuses_a_timed_step_before_the_run(
    ctx: Context, tmp_path: Path
) -> None:
    # A thread cannot be killed: the run would hang past the timeout.
    with pytest.raises(InvalidInput, match=r"step 'hangs' has a timeout of 0\.5 s") as err:
        ps.hanging.run({"workdir": str(tmp_path)}, executor="local")
    assert err.value.field == "executor"
    assert "--executor process" in (err.value.hint or "")
    assert list_pipeline_runs("hanging") == []
    assert ps.count(str(tmp_path), "hangs") == 0


def test_the_timeout_is_not_part_of_the_cache_key(ctx: Context) -> None:
    from loopline.training.cache import cache_key

    def f(x: int) -> int:
        return x

    args: dict[str, Any] = {"x": {"v": 1}}
    assert cache_key(ll.step(f), args) == cache_key(ll.step(timeout=5)(f), args)


@pytest.mark.slow
def test_a_hung_step_is_cancelled_on_ray(ctx: Context, tmp_path: Path) -> None:
    ex = RayExecutor()
    try:
        result = ps.hanging.run({"workdir": str(tmp_path)}, executor=ex)
        assert result.steps["hangs"].status == "failed"
        assert "timed out after 0.5 s" in (result.steps["hangs"].error or "")
        assert result.steps["independent"].status == "finished"
    finally:
        ex.close()
