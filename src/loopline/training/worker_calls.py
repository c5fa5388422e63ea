"""A call on a worker process: how it starts, how it is tracked, and how it fails.

:class:`loopline.training.executors.ProcessExecutor` sends each call to its pool as a
pickled ``(fn, args)`` run by :func:`_marked_call`, which writes a mark on a pipe when a
worker takes the call and when the function starts; :class:`_Call` is what the executor
keeps of a call until its future is settled, and :func:`_death` and
:func:`_ended_by_itself` read how a worker process ended. A call whose worker was killed
for running too long raises :class:`TaskTimedOut`, one whose worker died
:class:`WorkerDied` (the Ray executor raises both too). They are separate from the
executors because they are the worker side: what runs in a worker process, and what a
dead one leaves to read, with no pool or thread of the executor's.

Example:
    >>> str(WorkerDied("killed by signal SIGKILL"))
    'the worker process died (killed by signal SIGKILL)'
"""

from __future__ import annotations

import os
import pickle
import signal
import struct
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any


class TaskTimedOut(Exception):
    """A call ran past its timeout and was stopped (its worker process killed, or its Ray
    task cancelled); what its future raises.

    Example:
        >>> str(TaskTimedOut(0.5))
        'the call ran past its timeout of 0.5 s and was stopped'
    """

    def __init__(self, timeout: float) -> None:
        super().__init__(f"the call ran past its timeout of {timeout:g} s and was stopped")
        self.timeout = timeout


class WorkerDied(Exception):
    """The worker process running a call died (``os._exit``, a signal such as the OOM
    killer's SIGKILL); what that call's future raises. Calls that only shared the worker
    pool with it are run again.

    Example:
        >>> str(WorkerDied("exit code 3"))
        'the worker process died (exit code 3)'
    """

    def __init__(self, how: str) -> None:
        super().__init__(f"the worker process died ({how})")
        self.how = how


#: The pipe a worker process announces the calls it starts on (set by :func:`_worker_init`).
_marks: Connection | None = None
#: (call id, worker pid, stage): stage 0 when a worker takes the call, 1 when the call's
#: function starts (its timeout counts from then). Call id -1 wakes the watcher.
_MARK = struct.Struct("!qqb")


def _worker_init(marks: Connection) -> None:
    global _marks
    _marks = marks


def _marked_call(call_id: int, payload: bytes) -> Any:
    """Run a pickled ``(fn, args)`` in a worker, after saying which worker started it.

    The first mark goes before the call is even unpickled (importing a step's module can
    crash a worker too); the second when the function starts, so that a timeout does not
    count a new worker's imports. Each is one small write to a pipe: atomic, so workers
    share the pipe without a lock that a killed worker could leave held.
    """
    if _marks is not None:
        _marks.send_bytes(_MARK.pack(call_id, os.getpid(), 0))
    fn, args = pickle.loads(payload)
    if _marks is not None:
        _marks.send_bytes(_MARK.pack(call_id, os.getpid(), 1))
    return fn(*args)


def _exit_code(process: Any, wait: float = 2.0) -> int | None:
    """The exit code of a worker process that has ended or is ending, waiting up to
    ``wait`` seconds for it; None when there is no process object or it has not ended.

    The pool's own thread reaps its workers too (it joins them when it breaks). When its
    ``waitpid`` wins, ours fails with ECHILD and reads None until that thread has stored
    the code on the shared process object, a moment later: so look again until it has.
    """
    if process is None:
        return None
    deadline = time.monotonic() + wait
    while True:
        process.join(timeout=0.05)
        code: int | None = process.exitcode
        if code is not None or time.monotonic() >= deadline:
            return code
        time.sleep(0.01)


def _death(process: Any) -> str:
    """How a worker process ended, in words: its exit code or the signal that killed it."""
    code = _exit_code(process)
    if code is None:
        return "exit code unknown"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _process(pool: ProcessPoolExecutor, pid: int) -> Any:
    """The pool's process object of worker ``pid`` (for its exit code), or None: the pool
    keeps them in a private dict, which a later Python may not have."""
    processes = getattr(pool, "_processes", None)
    return processes.get(pid) if isinstance(processes, dict) else None


def _ended_by_itself(process: Any) -> bool:
    """Whether a worker process has ended, other than by the SIGTERM with which a broken
    pool ends the workers left."""
    code = _exit_code(process)
    return code is not None and code != -getattr(signal, "SIGTERM", 15)


@dataclass(eq=False)
class _Call:
    """One call submitted to a :class:`ProcessExecutor`, until its future is settled."""

    id: int
    payload: bytes
    timeout: float | None
    future: Future[Any]
    pool: ProcessPoolExecutor | None = None
    #: The worker running it (from its mark), and that worker's process object.
    pid: int | None = None
    process: Any = None
    deadline: float | None = None
    timed_out: bool = False
    #: Whether it waits in the pool of one worker (suspected of killing a pool).
    solo: bool = False
    #: Pool breakages it was caught in without being found to be their cause.
    lost: int = 0


#: A call caught in this many pool breakages without being found to cause one fails.
_MAX_LOST = 3
