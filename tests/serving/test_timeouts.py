"""PredictRunner: timeouts, replacement of hung threads, skipping a version that hangs."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Coroutine
from typing import Any

import pytest

from loopline.serving.timeouts import ModelHung, PredictRunner, PredictTimeout


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


class Greedy(Quick):
    """A version whose call is 0.05 s of pure Python: it holds the GIL throughout."""

    name = "greedy"

    def run(self, shape: str, rows: Any) -> list[Any]:
        end = time.perf_counter() + 0.05
        while time.perf_counter() < end:
            pass
        return ["late"]


def _run_with_a_long_switch_interval(scenario: Coroutine[Any, Any, None]) -> None:
    """Run ``scenario`` where a thread keeps the GIL for 1 s when another asks for it: the
    loop's thread gets it back only when a call that holds it returns."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1.0)
    try:
        asyncio.run(scenario)
    finally:
        sys.setswitchinterval(interval)


def test_hung_calls_time_out_and_never_take_the_threads_of_others() -> None:
    async def scenario() -> None:
        runner = PredictRunner(workers=2, max_stuck=2)
        hung, quick = Blocking("hung"), Quick()
        for _ in range(2):
            # The same message whichever way the call timed out (wait_for's own says nothing).
            # 0.5 s: a call no worker thread has started by its timeout is cancelled, not
            # stuck (right), and on a loaded machine a thread took longer than 0.05 s to start.
            with pytest.raises(TimeoutError, match=r"took longer than 0\.5 s"):
                await runner.run(hung, "records", [{}], timeout=0.5)
        assert runner.stuck(hung) == 2 and hung.calls == 2
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
    async def scenario() -> None:
        runner = PredictRunner(workers=1)
        with pytest.raises(TimeoutError, match=r"took longer than 0\.001 s"):
            await runner.run(Greedy(), "records", [{}], timeout=0.001)
        assert await runner.run(Quick(), "records", [{}, {}], timeout=5) == [2]
        runner.close()

    _run_with_a_long_switch_interval(scenario())


class Sleepy(Quick):
    """A version slower than the timeouts below on its own: 0.1 s a call."""

    name = "sleepy"

    def run(self, shape: str, rows: Any) -> list[Any]:
        time.sleep(0.1)
        return ["slow"]


def test_a_call_late_beside_another_versions_abandoned_call_is_waited_for() -> None:
    """A slow candidate's call abandoned at its timeout goes on running and took the
    interpreter from the stable version answering for it, which then missed the same
    timeout: a 504 for a request the stable version answers in 0.13 ms alone."""

    async def scenario() -> None:
        runner = PredictRunner(workers=2)
        candidate, stable = Blocking("candidate"), Sleepy()
        with pytest.raises(PredictTimeout, match=r"longer than 0\.05 s") as e:
            await runner.run(candidate, "records", [{}], timeout=0.05, beside=[stable])
        assert not e.value.excused and runner.stuck(candidate) == 1
        # Late while the candidate's abandoned call runs: given the grace, and answered.
        answer = await runner.run(
            stable, "records", [{}], timeout=0.05, grace=None, beside=[candidate]
        )
        assert answer == ["slow"]
        assert await runner.run(stable, "records", [{}], 0.05, grace=5, beside=[candidate])
        # The grace is a bound too, and the error says which limit it was.
        with pytest.raises(PredictTimeout, match=r"longer than 0\.07 s") as e:
            await runner.run(stable, "records", [{}], 0.05, grace=0.07, beside=[candidate])
        assert e.value.excused
        # Only the versions beside it excuse it; with no grace (the default), nothing does.
        for kwargs in ({"grace": None, "beside": []}, {"beside": [candidate]}):
            with pytest.raises(PredictTimeout, match=r"longer than 0\.05 s"):
                await runner.run(stable, "records", [{}], timeout=0.05, **kwargs)
        # Once the abandoned call returned, a call made afterwards is late on its own.
        candidate.release.set()
        for _ in range(100):
            if runner.stuck(candidate) == 0:
                break
            await asyncio.sleep(0.01)
        with pytest.raises(PredictTimeout) as e:
            await runner.run(stable, "records", [{}], 0.05, grace=None, beside=[candidate])
        assert not e.value.excused
        runner.close()

    asyncio.run(scenario())


def test_a_call_the_abandoned_one_starved_of_the_loop_is_excused_too() -> None:
    """The late-answer check (the loop got the GIL back only as the call returned) takes the
    same excuse: a call past its timeout beside another version's abandoned call."""

    async def scenario() -> None:
        runner = PredictRunner(workers=2)
        candidate, stable = Blocking("candidate"), Greedy()
        with pytest.raises(PredictTimeout):
            await runner.run(candidate, "records", [{}], timeout=0.01)
        assert await runner.run(stable, "records", [{}], 0.001, grace=None, beside=[candidate])
        with pytest.raises(PredictTimeout, match=r"longer than 0\.001 s"):
            await runner.run(stable, "records", [{}], 0.001, grace=None)
        candidate.release.set()
        runner.close()

    _run_with_a_long_switch_interval(scenario())
