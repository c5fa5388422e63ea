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

Example:
    >>> runner = PredictRunner(workers=2)
    >>> # preds = await runner.run(served_model, "records", rows, timeout=0.5)
    >>> runner.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
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


class PredictRunner:
    """Runs predictions on daemon threads with a timeout; see the module docstring.

    Example:
        >>> PredictRunner(workers=1, max_stuck=1).close()
    """

    def __init__(self, workers: int = DEFAULT_WORKERS, max_stuck: int = DEFAULT_MAX_STUCK) -> None:
        self.workers = workers
        self.max_stuck = max_stuck
        self._queue: SimpleQueue[_Job | None] = SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._lost_jobs: set[Future[Any]] = set()  # calls whose thread was replaced
        self._stuck: dict[Runnable, int] = {}  # touched on the event loop thread only
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
        return self._stuck.get(model, 0)

    async def run(
        self,
        model: Runnable,
        shape: str,
        rows: Any,
        timeout: float | None,
        call: Callable[[str, Any], Any] | None = None,
    ) -> Any:
        """``model.run(shape, rows)`` (or ``call(shape, rows)``, a call of that model) on a
        worker thread; :class:`TimeoutError` after ``timeout`` s (None: no limit).

        Example:
            >>> # await runner.run(served, "records", [{"x": 1.0}], timeout=1.0)
        """
        stuck = self._stuck.get(model, 0)
        if stuck >= self.max_stuck:
            raise ModelHung(
                f"{stuck} earlier predictions of version {model.label} of {model.name!r} are "
                f"still running past their timeout; it is skipped until one returns"
            )
        future: Future[Any] = Future()
        started = time.monotonic()
        self._queue.put((future, model.run if call is None else call, (shape, rows)))
        waiter = asyncio.wrap_future(future)
        try:
            result = await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            if future.running():  # it holds a thread until the model returns
                self._lost(model, future, asyncio.get_running_loop())
            # wait_for's own TimeoutError says nothing; both ways of timing out say the same.
            raise TimeoutError(f"the prediction took longer than {timeout:g} s") from None
        # A model that holds the GIL keeps the event loop from running wait_for's timer until
        # it returns, and wait_for then hands back the late answer: the bound still holds.
        if timeout is not None and time.monotonic() - started > timeout:
            raise TimeoutError(f"the prediction took longer than {timeout:g} s")
        return result

    def _lost(self, model: Runnable, future: Future[Any], loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            if future.done():  # it returned just now: its thread is free again
                return
            self._lost_jobs.add(future)
        self._spawn()
        self._stuck[model] = self._stuck.get(model, 0) + 1

        def returned(_: Future[Any]) -> None:
            # On the worker thread: the count is kept on the event loop's thread.
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to count
                loop.call_soon_threadsafe(self._released, model)

        future.add_done_callback(returned)

    def _released(self, model: Runnable) -> None:
        left = self._stuck.get(model, 0) - 1
        if left > 0:
            self._stuck[model] = left
        else:
            self._stuck.pop(model, None)

    def close(self) -> None:
        """Let the idle threads end (stuck ones end when their model returns).

        Example:
            >>> PredictRunner(workers=1).close()
        """
        with self._lock:
            threads = self._threads
        for _ in range(threads):
            self._queue.put(None)
