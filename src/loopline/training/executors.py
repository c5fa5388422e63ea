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

Example:
    >>> with get_executor("local") as ex:
    ...     ex.submit(sum, [1, 2, 3]).result()
    6
"""

from __future__ import annotations

import contextvars
import logging
import multiprocessing
import os
import sys
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, TypeVar

from loopline.errors import ConfigError, InvalidInput
from loopline.training.steps import Step, resolve_target

T = TypeVar("T")
EXECUTORS = ("local", "process", "ray")


class Executor(ABC):
    """Runs functions for the pipeline runner and the tuner; returns futures.

    A subclass must:

    * return at once from :meth:`submit` a :class:`concurrent.futures.Future` of
      ``fn(*args)``; futures of tasks submitted without waiting run side by side, up to
      :attr:`max_workers` at a time;
    * let the future raise only when the executor itself breaks (a worker dies, a task
      cannot be sent): :func:`loopline.training.worker.execute_step` turns a step's own
      exceptions into a FAILED outcome, so the runner records any raising future as the
      step's error;
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

    Example:
        >>> # with ProcessExecutor(max_workers=2) as ex: ex.submit(math.factorial, 20).result()
    """

    name = "process"
    remote = True

    def __init__(self, max_workers: int | None = None) -> None:
        super().__init__(max_workers)
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., T], /, *args: Any) -> Future[T]:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    self.max_workers, mp_context=multiprocessing.get_context("spawn")
                )
            return self._pool.submit(fn, *args)

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None


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
        ref = self._task.remote(fn, *args)
        return ref.future()  # type: ignore[no-any-return]


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


def check_executor_name(name: str | Executor) -> str:
    """The executor's name, after checking it is a known one (before anything starts).

    Example:
        >>> check_executor_name("process")
        'process'
    """
    if isinstance(name, Executor):
        return name.name
    if name not in EXECUTORS:
        get_executor(name)  # raises the InvalidInput naming the choices
    return name


def check_importable(
    item: Step[Any, Any] | Callable[..., Any], what: str = "step", *, allow_main: bool = True
) -> None:
    """Raise InvalidInput unless worker processes can import ``item`` by its path.

    ``allow_main=False`` also refuses a script's ``__main__`` (Ray workers cannot import
    it; spawned processes can).

    Example:
        >>> check_importable(os.path.join, "function")
    """
    if isinstance(item, Step):
        target, fn = item.target, item.fn
    else:
        fn = item
        target = f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', '?')}"
    module = target.partition(":")[0]
    if module == "__main__" and not getattr(sys.modules.get("__main__"), "__file__", None):
        raise InvalidInput(
            f"the {what} {target} was defined at an interactive prompt; worker processes "
            "cannot import it",
            field=what,
            hint=f"move the {what} into a module file, or use the local executor",
        )
    if module == "__main__" and not allow_main:
        raise InvalidInput(
            f"the {what} {target} is defined in the script being run; Ray workers cannot import it",
            field=what,
            hint=f"move the {what} into a module next to the script and import it from there",
        )
    found = resolve_target(target, what=what)
    if found is not item and getattr(found, "fn", None) is not fn:
        raise InvalidInput(
            f"the {what} {target} is not what worker processes would import from there",
            field=what,
            hint=f"define the {what} once, at the top level of its module",
        )
