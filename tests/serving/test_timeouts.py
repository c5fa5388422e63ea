"""PredictRunner: timeouts, replacement of hung threads, skipping a version that hangs."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from typing import Any

import pytest

from loopline.serving.timeouts import ModelHung, PredictRunner


class Blocking:
    """A model version whose calls wait until ``release`` is set."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.label = "1"
        self.release = threading.Event()
        self.calls = 0

    def run(self, shape: str, rows: Any) -> list[Any]:
        self.calls += 1
        self.release.wait()
        return ["late"]


class Quick:
    name = "quick"
    label = "1"

    def run(self, shape: str, rows: Any) -> list[Any]:
        return [len(rows)]


def test_hung_calls_time_out_and_never_take_the_threads_of_others() -> None:
    async def scenario() -> None:
        runner = PredictRunner(workers=2, max_stuck=2)
        hung, quick = Blocking("hung"), Quick()
        for _ in range(2):
            # The same message whichever way the call timed out (wait_for's own says nothing).
            with pytest.raises(TimeoutError, match=r"took longer than 0\.05 s"):
                await runner.run(hung, "records", [{}], timeout=0.05)
        assert runner.stuck(hung) == 2
        # Two threads are stuck, yet both workers' places were taken by new threads.
        started = time.monotonic()
        answers = await asyncio.gather(
            *[runner.run(quick, "records", [{}, {}], timeout=5) for _ in range(20)]
        )
        assert answers == [[2]] * 20 and time.monotonic() - started < 2
        # A third call of the hung version is not made: it fails at once.
        started = time.monotonic()
        with pytest.raises(ModelHung, match="still running past their timeout"):
            await runner.run(hung, "records", [{}], timeout=5)
        assert time.monotonic() - started < 0.05 and hung.calls == 2
        # Once the hung calls return, the version is called again.
        hung.release.set()
        for _ in range(100):
            if runner.stuck(hung) == 0:
                break
            await asyncio.sleep(0.01)
        assert runner.stuck(hung) == 0
        assert await runner.run(hung, "records", [{}], timeout=5) == ["late"]
        runner.close()

    asyncio.run(scenario())


def test_a_model_error_reaches_the_caller() -> None:
    class Failing(Quick):
        def run(self, shape: str, rows: Any) -> list[Any]:
            raise ValueError("bad row")

    async def scenario() -> None:
        runner = PredictRunner(workers=1)
        with pytest.raises(ValueError, match="bad row"):
            await runner.run(Failing(), "records", [{}], timeout=5)
        runner.close()

    asyncio.run(scenario())


def test_a_late_answer_is_a_timeout_even_when_the_model_starved_the_event_loop() -> None:
    # A model that holds the GIL for its whole call kept the loop from running wait_for's
    # timer until it returned; wait_for then handed back the late answer, and a version
    # past its timeout_ms answered (seen in CI with a brute-force KNN at timeout_ms=1).
    class Greedy(Quick):
        def run(self, shape: str, rows: Any) -> list[Any]:
            end = time.perf_counter() + 0.05
            while time.perf_counter() < end:  # pure Python: holds the GIL throughout
                pass
            return ["late"]

    async def scenario() -> None:
        runner = PredictRunner(workers=1)
        with pytest.raises(TimeoutError, match=r"took longer than 0\.001 s"):
            await runner.run(Greedy(), "records", [{}], timeout=0.001)
        assert await runner.run(Quick(), "records", [{}, {}], timeout=5) == [2]
        runner.close()

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1.0)  # the loop's thread gets the GIL back only when run() ends
    try:
        asyncio.run(scenario())
    finally:
        sys.setswitchinterval(interval)
