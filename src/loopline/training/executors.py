"""Where steps and tuning trials run: in threads, in local processes, or on Ray.

One small boundary, :class:`Executor`; three implementations chosen by name with
:func:`get_executor`: ``local`` (threads of this process, the default), ``process``
(:class:`concurrent.futures.ProcessPoolExecutor` on the ``spawn`` start method) and ``ray``
(Ray tasks; ``ray.init(address=LOOPLINE_RAY_ADDRESS)`` when that setting is given, else a
local Ray with 2 CPUs). The same pipeline runs unchanged on each; the conformance suite in
``tests/training/test_executors.py`` runs over all three.

Functions sent to ``process`` and ``ray`` travel by import path, so steps and objectives
must be defined at the top level of an importable module (:func:`check_importable` says so
before anything runs). A local Ray is given this process's ``sys.path`` as the workers'
``PYTHONPATH``; on a cluster, ship your code with Ray's ``runtime_env``.

The checks made before anything runs are in :mod:`loopline.training.executor_checks`; what
runs in a worker process, and how a call fails there, in :mod:`loopline.training.worker_calls`.

Example:
    >>> with get_executor("local") as ex:
    ...     ex.submit(sum, [1, 2, 3]).result()
    6
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import itertools
import logging
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import Connection
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, TypeVar

from loopline.errors import ConfigError, InvalidInput
from loopline.training.worker_calls import (
    _MARK,
    _MAX_LOST,
    TaskTimedOut,
    WorkerDied,
    _Call,
    _death,
    _ended_by_itself,
    _marked_call,
    _process,
    _worker_init,
)

T = TypeVar("T")
EXECUTORS = ("local", "process", "ray")
_log = logging.getLogger(__name__)


class Executor(ABC):
    """Runs functions for the pipeline runner and the tuner; returns futures.

    A subclass must:

    * return at once from :meth:`submit` a :class:`concurrent.futures.Future` of
      ``fn(*args)``; futures of tasks submitted without waiting run side by side, up to
      :attr:`max_workers` at a time;
    * let the future raise only when the executor itself breaks (a task cannot be sent),
      when the call's worker died (:class:`WorkerDied`) or when it ran past the timeout of
      :meth:`submit_with_timeout` (:class:`TaskTimedOut`; only where :attr:`can_time_out`):
      :func:`loopline.training.worker.execute_step` turns a step's own exceptions into a
      FAILED outcome, so the runner records any raising future as the step's error (and
      tries the step again after the last two);
    * when :attr:`remote` is true, run ``fn`` in another process: then ``fn`` and every
      argument must pickle, and functions travel by import path (the runner checks with
      :func:`check_importable` first). Workers write outputs to the artifact store and
      return digests; they never write the metadata database;
    * release its workers in :meth:`close` (idempotent; also on ``with`` exit).

    Example:
        >>> class Inline(Executor):
        ...     name = "inline"
        ...     def submit(self, fn, /, *args):
        ...         f = Future(); f.set_result(fn(*args)); return f
        >>> Inline().submit(len, "abc").result()
        3
    """

    name: ClassVar[str]
    #: Whether tasks run in another process (arguments are pickled, code imported).
    remote: ClassVar[bool] = False
    #: Whether :meth:`submit_with_timeout` can stop a call that runs too long.
    can_time_out: ClassVar[bool] = False

    def __init__(self, max_workers: int | None = None) -> None:
        if max_workers is not None and (not isinstance(max_workers, int) or max_workers < 1):
            raise InvalidInput(
                "The 'max_workers' parameter of the executor must be an int >= 1. "
                f"Got {max_workers!r} instead.",
                field="max_workers",
            )
        self.max_workers = max(2, os.cpu_count() or 1) if max_workers is None else max_workers

    @abstractmethod
    def submit(self, fn: Callable[..., T], /, *args: Any) -> Future[T]:
        """Start ``fn(*args)`` and return its future at once.

        Example:
            >>> # executor.submit(execute_step, task).result().status  -> 'finished'
        """

    def submit_with_timeout(self, timeout: float, fn: Callable[..., T], /, *args: Any) -> Future[T]:
        """Like :meth:`submit`, but a call still running ``timeout`` seconds after it
        started is stopped, and its future raises :class:`TaskTimedOut`.

        Only executors whose :attr:`can_time_out` is true can: a thread cannot be stopped,
        so the base class refuses.

        Example:
            >>> get_executor("local").submit_with_timeout(1.0, len, "abc")  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            loopline.errors.InvalidInput: the local executor cannot stop a call that runs ...
        """
        raise InvalidInput(
            f"the {self.name} executor cannot stop a call that runs too long",
            field="timeout",
            hint="use the process or ray executor",
        )

    def close(self) -> None:  # noqa: B027 - executors without workers need no cleanup
        """Release the workers; wait for running tasks.

        Example:
            >>> get_executor("local").close()
        """

    def __enter__(self) -> Executor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} max_workers={self.max_workers}>"


class LocalExecutor(Executor):
    """Threads of this process: no start-up cost; independent steps overlap where they wait
    or release the GIL (I/O, sleeping, NumPy/pandas/scikit-learn work).

    Example:
        >>> with LocalExecutor(max_workers=2) as ex:
        ...     ex.submit(pow, 2, 10).result()
        1024
    """

    name = "local"

    def __init__(self, max_workers: int | None = None) -> None:
        super().__init__(max(4, os.cpu_count() or 1) if max_workers is None else max_workers)
        self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="loopline-step")

    def submit(self, fn: Callable[..., T], /, *args: Any) -> Future[T]:
        # In a copy of the submitter's context, as asyncio's to_thread does: a step of a
        # loop pass commits under the pass's leadership fence (loopline.loop.leader), and
        # a server request's actor reaches the audit log. A pool thread alone starts empty.
        return self._pool.submit(contextvars.copy_context().run, fn, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class ProcessExecutor(Executor):
    """Local worker processes (``spawn``): true parallelism for pure-Python steps.

    Workers start on first use (about a second each: they import the step's module).

    Each worker says which call it starts (a mark on a pipe, read by a watcher thread), so
    the executor knows what runs where. A call given a timeout
    (:meth:`submit_with_timeout`) that is still running ``timeout`` seconds after it
    started has its worker killed (SIGKILL) and raises :class:`TaskTimedOut`.

    A worker that dies (``os._exit``, a signal, the OOM killer, a timeout's kill) breaks
    Python's whole process pool, and every call in it used to fail. Now the pool is
    replaced and the calls are sorted by the marks: a call no worker had started is
    submitted again; when one call had started, it is the one that died (its future
    raises :class:`WorkerDied` with the exit code or signal) and the others run again;
    when several had started, the executor cannot tell which one died, so they run again
    one at a time in a pool of one worker, where a death can only be the one running call.
    Calls run again are not retries: they did not fail.

    Example:
        >>> # with ProcessExecutor(max_workers=2) as ex: ex.submit(math.factorial, 20).result()
    """

    name = "process"
    remote = True
    can_time_out = True

    def __init__(self, max_workers: int | None = None) -> None:
        super().__init__(max_workers)
        self._mp = multiprocessing.get_context("spawn")
        self._pool: ProcessPoolExecutor | None = None
        #: A pool of one worker where calls suspected of killing a pool run one at a time.
        self._solo: ProcessPoolExecutor | None = None
        self._lock = threading.RLock()
        self._calls: dict[int, _Call] = {}
        #: Every worker process by pid, kept from each pool as it spawns them: a broken pool
        #: drops its own, and a worker's first mark can be read before the pool lists it,
        #: so the exit code of a dead worker is read from here.
        self._workers: dict[int, Any] = {}
        self._ids = itertools.count()
        self._broken: list[ProcessPoolExecutor] = []
        #: Pools in which we killed a worker (for a timeout): their breakage has a known cause.
        self._killed: list[ProcessPoolExecutor] = []
        self._marks: tuple[Connection, Connection] | None = None
        self._watcher: threading.Thread | None = None
        self._closing = False

    def submit(self, fn: Callable[..., T], /, *args: Any) -> Future[T]:
        return self._submit(None, fn, args)

    def submit_with_timeout(self, timeout: float, fn: Callable[..., T], /, *args: Any) -> Future[T]:
        """Run ``fn(*args)`` in a worker; kill the worker if the call is still running
        ``timeout`` seconds after it started (its future then raises TaskTimedOut).

        Example:
            >>> # ex.submit_with_timeout(0.5, time.sleep, 10).exception()  -> TaskTimedOut
        """
        return self._submit(timeout, fn, args)

    def _submit(
        self, timeout: float | None, fn: Callable[..., T], args: tuple[Any, ...]
    ) -> Future[T]:
        future: Future[T] = Future()
        try:
            payload = pickle.dumps((fn, args), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # as the pool did: the future raises, submit does not
            future.set_exception(exc)
            return future
        with self._lock:
            if self._closing:
                raise RuntimeError("the process executor is closed")
            self._start_watcher()
            self._send(_Call(-1, payload, timeout, future), solo=False)
        return future

    # -- pools -----------------------------------------------------------------------------

    def _new_pool(self, workers: int) -> ProcessPoolExecutor:
        assert self._marks is not None
        return ProcessPoolExecutor(
            workers,
            mp_context=self._mp,
            initializer=_worker_init,
            initargs=(self._marks[1],),
        )

    def _send(self, call: _Call, *, solo: bool) -> None:
        """Submit ``call`` to the main pool (or the solo pool), making one if needed."""
        # A new id for each sending: a late mark of the worker that had the call before
        # (a pool breaks, its workers are ended a moment later) names the old one.
        self._calls.pop(call.id, None)
        call.id = next(self._ids)
        self._calls[call.id] = call
        call.pid = call.process = call.deadline = call.pool = None
        call.solo = solo
        for _ in range(2):  # a pool found broken is replaced once
            if solo:
                self._solo = self._solo or self._new_pool(1)
                pool = self._solo
            else:
                self._pool = self._pool or self._new_pool(self.max_workers)
                pool = self._pool
            try:
                inner = pool.submit(_marked_call, call.id, call.payload)
            except BrokenProcessPool:  # broke before we heard: its calls are being sorted
                self._forget(pool)
                continue
            call.pool = pool
            self._workers.update(getattr(pool, "_processes", None) or {})  # spawned by submit
            inner.add_done_callback(functools.partial(self._settle, call, pool))
            return
        self._fail(call, RuntimeError("the process pool broke twice while a call was sent"))

    def _forget(self, pool: ProcessPoolExecutor) -> None:
        if pool is self._pool:
            self._pool = None
        if pool is self._solo:
            self._solo = None

    def _settle(self, call: _Call, pool: ProcessPoolExecutor, inner: Future[Any]) -> None:
        """A pool's future is done: hand its result on, or have the watcher sort a breakage."""
        if inner.cancelled():  # only close() cancels
            with self._lock:
                self._calls.pop(call.id, None)
            call.future.cancel()
            return
        exc = inner.exception()
        if isinstance(exc, BrokenProcessPool):
            with self._lock:
                if call.pool is not pool or pool in self._broken:
                    return  # sorted already: the call was sent on
                self._broken.append(pool)
            # Through the pipe, after every mark the dead worker wrote: the watcher reads
            # them in order, so it knows what had started when it sorts the calls.
            self._wake()
            return
        with self._lock:
            if call.pool is not pool or self._calls.pop(call.id, None) is None:
                return  # an earlier submission's news; the call was sent again
        if exc is None:
            self._resolve(call, inner.result())
        else:
            self._fail(call, exc)

    @staticmethod
    def _resolve(call: _Call, value: Any) -> None:
        with contextlib.suppress(InvalidStateError):  # the caller cancelled it meanwhile
            call.future.set_result(value)

    def _fail(self, call: _Call, exc: BaseException) -> None:
        with self._lock:
            self._calls.pop(call.id, None)
        with contextlib.suppress(InvalidStateError):
            call.future.set_exception(exc)

    # -- the watcher -----------------------------------------------------------------------

    def _start_watcher(self) -> None:
        if self._watcher is not None:
            return
        self._marks = self._mp.Pipe(duplex=False)
        self._watcher = threading.Thread(
            target=self._watch, name="loopline-process-watcher", daemon=True
        )
        self._watcher.start()

    def _wake(self) -> None:
        with self._lock:
            if self._marks is not None:
                self._marks[1].send_bytes(_MARK.pack(-1, 0, 0))

    def _watch(self) -> None:
        """Read the workers' marks, kill calls past their deadline, sort broken pools."""
        assert self._marks is not None
        reader = self._marks[0]
        while True:
            with self._lock:
                deadlines = [c.deadline for c in self._calls.values() if c.deadline is not None]
            wait = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            try:
                if reader.poll(wait):
                    call_id, pid, stage = _MARK.unpack(reader.recv_bytes())
                    with self._lock:
                        if call_id < 0:
                            if self._closing:
                                return
                            self._recover()
                        else:
                            self._started(call_id, pid, stage)
                with self._lock:
                    self._kill_late()
            except (EOFError, OSError):  # the pipe was closed: the executor is closing
                return
            except Exception:  # keep watching: a dead watcher would hang every call
                _log.exception("the process executor's watcher failed")

    def _started(self, call_id: int, pid: int, stage: int) -> None:
        call = self._calls.get(call_id)
        if call is None or call.pool is None:
            return
        call.pid = pid
        call.process = self._workers.get(pid) or _process(call.pool, pid)
        if stage == 1 and call.timeout is not None:
            call.deadline = time.monotonic() + call.timeout

    def _kill_late(self) -> None:
        now = time.monotonic()
        for call in self._calls.values():
            if call.deadline is None or call.deadline > now or call.timed_out or call.pid is None:
                continue
            call.timed_out = True
            if call.pool is not None and call.pool not in self._killed:
                self._killed.append(call.pool)
            with contextlib.suppress(ProcessLookupError):  # it ended: its news is on its way
                os.kill(call.pid, getattr(signal, "SIGKILL", signal.SIGTERM))

    def _recover(self) -> None:
        """Sort the calls of each broken pool (see the class doc) and send them on."""
        while self._broken:
            pool = self._broken.pop(0)
            self._forget(pool)
            calls = [c for c in self._calls.values() if c.pool is pool]
            killed = [c for c in calls if c.timed_out]
            for call in calls:  # a mark read late: look again while the pool knows it
                if call.pid is not None and call.process is None:
                    call.process = self._workers.get(call.pid) or _process(pool, call.pid)
            for call in killed:
                assert call.timeout is not None
                self._fail(call, TaskTimedOut(call.timeout))
            # A kill of ours (for a timeout, even of a call that ended just before it) is
            # a known cause: every other call only shared the pool. Else one call running
            # is the one that died; of several, the one whose worker ended by itself
            # (the pool ends the others with SIGTERM), or when that does not tell, any.
            started = [] if pool in self._killed else [c for c in calls if c.pid is not None]
            ended = [c for c in started if _ended_by_itself(c.process)]
            culprits: list[_Call] = started if len(started) == 1 else []
            suspects: list[_Call] = []
            if len(started) > 1 and len(ended) == 1:
                culprits = ended
            elif len(started) > 1:
                suspects = started
            for call in culprits:
                self._fail(call, WorkerDied(_death(call.process)))
            for call in calls:
                if call in killed or call in culprits:
                    continue
                call.lost += 1
                if call.lost > _MAX_LOST:
                    self._fail(
                        call,
                        WorkerDied(f"its pool broke {call.lost} times: {_death(call.process)}"),
                    )
                else:
                    self._send(call, solo=call.solo or call in suspects)
            if pool in self._killed:
                self._killed.remove(pool)

    def close(self) -> None:
        """Shut the pools down (waiting for running calls) and stop the watcher.

        Example:
            >>> ProcessExecutor(max_workers=1).close()
        """
        with self._lock:
            self._closing = True
            pools = [p for p in (self._pool, self._solo) if p is not None]
            self._pool = self._solo = None
        for pool in pools:
            pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            left = list(self._calls.values())
        for call in left:  # a pool that broke while closing: nobody will sort it now
            self._fail(call, RuntimeError("the process executor was closed"))
        watcher = self._watcher
        if watcher is not None:
            self._wake()
            watcher.join(timeout=5)
            assert self._marks is not None
            for end in self._marks:
                end.close()
        with self._lock:
            self._watcher, self._marks = None, None
            self._closing = False  # a closed executor may be used again, as before


def _ray_call(fn: Callable[..., T], *args: Any) -> T:
    return fn(*args)


class RayExecutor(Executor):
    """Ray tasks, one per step or trial. Connects to ``LOOPLINE_RAY_ADDRESS`` when set,
    else starts a local Ray (2 CPUs) once per process and keeps it for later runs.

    Example:
        >>> # with RayExecutor() as ex: ex.submit(math.factorial, 20).result()
    """

    name = "ray"
    remote = True
    can_time_out = True
    _init_lock = threading.Lock()

    def __init__(self, max_workers: int | None = None, address: str | None = None) -> None:
        try:
            import ray
        except ImportError as exc:
            raise ConfigError(
                "the ray executor needs Ray, which is not installed",
                hint="pip install 'ray>=2.9' or use --executor local|process",
            ) from exc
        from loopline.core.context import get_context

        address = address or get_context().settings.ray_address
        with self._init_lock:
            if not ray.is_initialized():
                self._start(ray, address)
        cpus = int(ray.cluster_resources().get("CPU", 2))  # type: ignore[no-untyped-call]
        super().__init__(max(1, cpus) if max_workers is None else max_workers)
        self._task = ray.remote(num_cpus=1, max_retries=0)(_ray_call)

    @staticmethod
    def _start(ray: Any, address: str | None) -> None:
        quiet: dict[str, Any] = {
            "log_to_driver": False,  # keep stdout clean for --json
            "logging_level": logging.WARNING,
            "include_dashboard": False,
        }
        try:
            if address:
                ray.init(address=address, **quiet)
            else:
                path = os.pathsep.join(p for p in sys.path if p and Path(p).is_dir())
                ray.init(
                    address="local",
                    num_cpus=2,
                    runtime_env={"env_vars": {"PYTHONPATH": path}},
                    **quiet,
                )
        except (ConnectionError, RuntimeError) as exc:
            raise ConfigError(
                f"cannot connect to the Ray cluster at LOOPLINE_RAY_ADDRESS={address}: {exc}",
                hint="check the address (ray://host:10001 or host:6379) or unset it for a "
                "local Ray",
            ) from exc

    def submit(self, fn: Callable[..., T], /, *args: Any) -> Future[T]:
        return self._submit(None, fn, args)

    def submit_with_timeout(self, timeout: float, fn: Callable[..., T], /, *args: Any) -> Future[T]:
        """Run ``fn(*args)`` as a Ray task; cancel it (``force=True``: its worker is killed)
        when it has not ended ``timeout`` seconds after it was submitted. Ray does not tell
        the driver when a task starts, so time spent waiting for a free CPU counts.

        Example:
            >>> # ex.submit_with_timeout(0.5, time.sleep, 10).exception()  -> TaskTimedOut
        """
        return self._submit(timeout, fn, args)

    def _submit(
        self, timeout: float | None, fn: Callable[..., T], args: tuple[Any, ...]
    ) -> Future[T]:
        import ray

        ref = self._task.remote(fn, *args)
        inner: Future[T] = ref.future()
        outer: Future[T] = Future()
        fired = threading.Event()
        timer: threading.Timer | None = None
        if timeout is not None:

            def stop() -> None:
                fired.set()
                ray.cancel(ref, force=True)

            timer = threading.Timer(timeout, stop)
            timer.daemon = True
            timer.start()

        def settle(done: Future[T]) -> None:
            if timer is not None:
                timer.cancel()
            exc = None if done.cancelled() else done.exception()
            try:
                if done.cancelled():
                    outer.cancel()
                elif exc is None:
                    outer.set_result(done.result())
                elif fired.is_set() and timeout is not None:
                    outer.set_exception(TaskTimedOut(timeout))
                elif isinstance(exc, ray.exceptions.WorkerCrashedError):
                    outer.set_exception(WorkerDied(f"the Ray worker crashed: {exc}"))
                else:
                    outer.set_exception(exc)
            except InvalidStateError:  # the caller cancelled it meanwhile
                pass

        inner.add_done_callback(settle)
        return outer


def get_executor(name: str | Executor = "local", max_workers: int | None = None) -> Executor:
    """The executor called ``name`` (``local``, ``process`` or ``ray``), or ``name`` itself.

    Raises InvalidInput naming the choices for any other name.

    Example:
        >>> get_executor("local").name
        'local'
    """
    if isinstance(name, Executor):
        return name
    if name == "local":
        return LocalExecutor(max_workers)
    if name == "process":
        return ProcessExecutor(max_workers)
    if name == "ray":
        return RayExecutor(max_workers)
    raise InvalidInput(
        f"unknown executor {name!r}",
        field="executor",
        hint="use one of: " + ", ".join(EXECUTORS),
    )
