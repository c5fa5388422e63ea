"""Which run is active: one stack of started, not yet ended runs per thread.

A run started while another is on the current thread's stack becomes its child. A thread
with no run of its own sees the main thread's innermost run, so that work done in helper
threads (data loaders, tuning trials) is attributed to the run that started it.

At interpreter exit, runs still open are flushed and ended: FAILED when the interpreter
is exiting because of an uncaught exception, else FINISHED (as MLflow does). A forked child
flushes what it logged to an inherited run but leaves ending it to the parent.

Example:
    >>> current() is None
    True
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from loopline.tracking.run_handle import Run

_stacks: dict[int | None, list[Run]] = {}
_lock = threading.Lock()


def current() -> Run | None:
    """The innermost run started in this thread (else in the main thread), or None.

    Example:
        >>> current()
    """
    with _lock:
        stack = _stacks.get(threading.get_ident())
        if stack:
            return stack[-1]
        main = _stacks.get(threading.main_thread().ident)
        return main[-1] if main else None


def push(run: Run) -> None:
    """Make ``run`` the innermost run of the current thread.

    Example:
        >>> # push(run)
    """
    with _lock:
        _stacks.setdefault(threading.get_ident(), []).append(run)


def forget(run: Run) -> None:
    """Take an ended run off whichever stack holds it.

    Example:
        >>> # forget(run)
    """
    with _lock:
        for stack in _stacks.values():
            if run in stack:
                stack.remove(run)


def open_runs() -> list[Run]:
    """Every run not yet ended, innermost first.

    Example:
        >>> open_runs()
        []
    """
    with _lock:
        return [run for stack in _stacks.values() for run in reversed(stack)]


def _end_runs_at_exit() -> None:
    failed = getattr(sys, "last_value", None) is not None
    for run in open_runs():
        if run.owner_pid != os.getpid():  # inherited through fork: the parent ends it
            continue
        try:
            run.end("FAILED" if failed else "FINISHED")
        except Exception as exc:  # nothing can be raised at exit: say which run stays open
            sys.stderr.write(f"loopline: could not end run {run.id} at exit: {exc}\n")


atexit.register(_end_runs_at_exit)
