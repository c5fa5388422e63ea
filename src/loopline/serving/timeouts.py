"""Per-request prediction timeouts that hold even when a model never returns.

A Python thread cannot be stopped from outside, so a prediction that times out keeps its
thread until the model returns - perhaps never. :class:`PredictRunner` keeps such a call
from blocking later requests:

* predictions run on a small set of **daemon** threads (a hung one never blocks the
  process's exit, as a ``ThreadPoolExecutor`` thread would at interpreter shutdown);
* when a call times out while running, a new thread takes the lost one's place, so the
  capacity for other models stays the same;
* a model version with ``max_stuck`` calls still running past their timeout is not called
  again until one of them returns: the next request fails at once with :class:`ModelHung`
  (a :class:`TimeoutError`), so the fallback answers without waiting and a model that
  hangs forever costs at most ``max_stuck`` threads.

**A timeout is a version's own.** A call abandoned at its timeout goes on running, and
Python runs one thread at a time: a slow candidate's abandoned call took the interpreter
from the stable version that answered for it (and from the stable's next requests), which
then missed the same ``timeout_ms`` - 21 of 60 requests failed with a 504 at 2 ms though
the stable version alone answers in 0.13 ms. So a call that runs out of time while a call
of a version ``beside`` it (the model server passes the other versions of the same
deployment), abandoned past its own timeout, ran in the same process (at any time since
the call was made, on any runner sharing the :class:`AbandonedCalls`) is not failed: it
is waited for up to ``grace`` seconds in all (the server's own limit; None: no limit), and
its answer is used. Its own slowness still fails it: a version whose time ran out with no
such call beside it times out as before, and once a rollback took the slow version out of
the deployment, its calls that still hang excuse nothing.

Example:
    >>> runner = PredictRunner(workers=2)
    >>> # preds = await runner.run(served_model, "records", rows, timeout=0.5)
    >>> runner.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections.abc import Callable, Collection
from concurrent.futures import Future
from queue import SimpleQueue
from typing import Any, Protocol

#: Threads that run predictions when a timeout applies.
DEFAULT_WORKERS = 8
#: Calls of one model version that may be stuck past their timeout before it is skipped.
DEFAULT_MAX_STUCK = 2

_Job = tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]


class Runnable(Protocol):
    """What the runner calls: a served model version (see :class:`~.router.ServedModel`)."""

    name: str
    label: str

    def run(self, shape: str, rows: Any) -> list[Any]:
        """Predict."""


class ModelHung(TimeoutError):
    """A model version was not called: earlier calls of it are still running past their timeout."""


class PredictTimeout(TimeoutError):
    """A prediction took longer than ``limit`` seconds; ``excused``: its own timeout had
    run out while another version's abandoned call ran, and ``limit`` is the grace."""

    def __init__(self, limit: float, excused: bool = False) -> None:
        super().__init__(f"the prediction took longer than {limit:g} s")
        self.limit = limit
        self.excused = excused


class AbandonedCalls:
    """The calls that ran past their timeout and still run, per model version, and when the
    last of each version's returned: what excuses another version's late call (see the
    module). Touched on the event loop's thread only; runners of one server share one.

    Example:
        >>> calls = AbandonedCalls(); calls.add("slow")
        >>> calls.count("slow"), calls.ran_since(["slow"], since=0.0)
        (1, True)
        >>> calls.returned("slow", at=5.0); calls.ran_since(["slow"], since=6.0)
        False
    """

    def __init__(self) -> None:
        self._running: dict[Any, int] = {}
        self._returned: dict[Any, float] = {}

    def count(self, model: Any) -> int:
        """How many abandoned calls of ``model`` still run.

        Example:
            >>> AbandonedCalls().count("m")
            0
        """
        return self._running.get(model, 0)

    def add(self, model: Any) -> None:
        """Count one call of ``model`` abandoned at its timeout, still running.

        Example:
            >>> AbandonedCalls().add("m")
        """
        self._running[model] = self._running.get(model, 0) + 1

    def returned(self, model: Any, at: float) -> None:
        """One abandoned call of ``model`` returned at ``at`` (``time.monotonic()``).

        Example:
            >>> calls = AbandonedCalls(); calls.add("m"); calls.returned("m", 1.0)
            >>> calls.count("m")
            0
        """
        left = self._running.get(model, 0) - 1
        if left > 0:
            self._running[model] = left
        else:
            self._running.pop(model, None)
        self._returned[model] = max(at, self._returned.get(model, at))

    def ran_since(self, models: Collection[Any], since: float) -> bool:
        """Whether an abandoned call of one of ``models`` ran at any time from ``since``
        (``time.monotonic()``) until now.

        Example:
            >>> AbandonedCalls().ran_since(["m"], since=0.0)
            False
        """
        returned = self._returned
        return any(m in self._running or returned.get(m, -math.inf) >= since for m in models)


class PredictRunner:
    """Runs predictions on daemon threads with a timeout; see the module docstring.

    Example:
        >>> PredictRunner(workers=1, max_stuck=1).close()
    """

    def __init__(
        self,
        workers: int = DEFAULT_WORKERS,
        max_stuck: int = DEFAULT_MAX_STUCK,
        abandoned: AbandonedCalls | None = None,
    ) -> None:
        self.workers = workers
        self.max_stuck = max_stuck
        self._queue: SimpleQueue[_Job | None] = SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._lost_jobs: set[Future[Any]] = set()  # calls whose thread was replaced
        #: Touched on the event loop thread only; shared with the server's other runners.
        self.abandoned = abandoned if abandoned is not None else AbandonedCalls()
        for _ in range(workers):
            self._spawn()

    def _spawn(self) -> None:
        with self._lock:
            self._threads += 1
        threading.Thread(target=self._work, name="loopline-predict", daemon=True).start()

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            future, fn, args = job
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except BaseException as exc:  # handed to the request that waits for it
                    future.set_exception(exc)
            with self._lock:
                if future in self._lost_jobs:  # a replacement took this thread's place
                    self._lost_jobs.discard(future)
                    self._threads -= 1
                    return

    def stuck(self, model: Runnable) -> int:
        """How many calls of ``model`` still run past their timeout.

        Example:
            >>> # runner.stuck(served)  -> 0
        """
        return self.abandoned.count(model)

    async def run(
        self,
        model: Runnable,
        shape: str,
        rows: Any,
        timeout: float | None,
        call: Callable[[str, Any], Any] | None = None,
        grace: float | None = 0.0,
        beside: Collection[Runnable] = (),
    ) -> Any:
        """``model.run(shape, rows)`` (or ``call(shape, rows)``, a call of that model) on a
        worker thread; :class:`PredictTimeout` after ``timeout`` s (None: no limit), or
        after ``grace`` s in all (None: no limit) when an abandoned call of one of the
        versions ``beside`` it ran meanwhile (see the module; 0, the default: never).

        Example:
            >>> # await runner.run(stable, "records", [{"x": 1.0}], timeout=0.008,
            >>> #                  grace=30.0, beside=[candidate])
        """
        stuck = self.abandoned.count(model)
        if stuck >= self.max_stuck:
            raise ModelHung(
                f"{stuck} earlier predictions of version {model.label} of {model.name!r} are "
                f"still running past their timeout; it is skipped until one returns"
            )
        future: Future[Any] = Future()
        started = time.monotonic()
        self._queue.put((future, model.run if call is None else call, (shape, rows)))
        waiter = asyncio.wrap_future(future)
        # asyncio.wait, not wait_for: a call that is excused is waited for further.
        done, _ = await asyncio.wait((waiter,), timeout=timeout)
        limit, excused = timeout, False
        if not done and self._excused(beside, started, timeout, grace):
            limit, excused = grace, True
            left = None if grace is None else max(0.0, started + grace - time.monotonic())
            done, _ = await asyncio.wait((waiter,), timeout=left)
        if not done:
            assert limit is not None
            if not future.cancel() and future.running():  # it holds a thread until it returns
                self._lost(model, future, asyncio.get_running_loop())
            waiter.cancel()
            raise PredictTimeout(limit, excused)
        result = waiter.result()
        # A model that holds the GIL keeps the event loop from running the timer until it
        # returns, and the late answer is then in hand: the bound still holds.
        took = time.monotonic() - started
        if not excused and timeout is not None and took > timeout:
            if not self._excused(beside, started, timeout, grace):
                raise PredictTimeout(timeout)
            limit, excused = grace, True
        if excused and limit is not None and took > limit:
            raise PredictTimeout(limit, excused)
        return result

    def _excused(
        self,
        beside: Collection[Runnable],
        started: float,
        timeout: float | None,
        grace: float | None,
    ) -> bool:
        """Whether a call made at ``started`` that ran out of ``timeout`` is given ``grace``:
        it is longer, and an abandoned call of a version ``beside`` it ran meanwhile."""
        longer = grace is None or (timeout is not None and grace > timeout)
        return longer and bool(beside) and self.abandoned.ran_since(beside, started)

    def _lost(self, model: Runnable, future: Future[Any], loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            if future.done():  # it returned just now: its thread is free again
                return
            self._lost_jobs.add(future)
        self._spawn()
        self.abandoned.add(model)

        def returned(_: Future[Any]) -> None:
            # On the worker thread, as the call returns: the count is kept on the loop's.
            at = time.monotonic()
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to count
                loop.call_soon_threadsafe(self.abandoned.returned, model, at)

        future.add_done_callback(returned)

    def close(self) -> None:
        """Let the idle threads end (stuck ones end when their model returns).

        Example:
            >>> PredictRunner(workers=1).close()
        """
        with self._lock:
            threads = self._threads
        for _ in range(threads):
            self._queue.put(None)
