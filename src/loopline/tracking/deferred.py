"""Runs prepared but not yet written, and the thread that writes those that wait too long.

The SDK writes a new run together with its first data: params and tags logged right after
``start_run`` and, for a short run, its metric points and its end, in one commit instead
of one per call (:meth:`loopline.tracking.run_handle.Run.write_pending`). Anything that
needs the run to exist writes it first: reading it, its id, an artifact, a search in this
process.
So that others (the UI, a search from another process) see a running run soon even when
it logs nothing, this module's daemon thread writes every run that has waited
:data:`WRITE_DELAY_S`. Before a fork, waiting runs are written, so a forked child never
inherits (and writes a second time) a run its parent is about to write; at interpreter
exit, waiting runs are written too.

Example:
    >>> waiting()
    []
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
from typing import Protocol

from loopline.errors import BackendUnavailable, LooplineError

#: The longest a started run stays unwritten (seconds).
WRITE_DELAY_S = 0.25
#: The thread ends after this long with nothing waiting (started again when needed).
_IDLE_EXIT_S = 30.0

_log = logging.getLogger(__name__)


class Deferred(Protocol):
    """A run that can write itself (:class:`loopline.tracking.run_handle.Run`)."""

    def write_pending(self) -> None:
        """Write the run (and what was buffered for it) unless it is written already."""

    def flush(self) -> None:
        """Write the run if need be, and every metric point queued for it."""


_cond = threading.Condition()
_waiting: dict[Deferred, float] = {}
_thread: threading.Thread | None = None


def schedule(run: Deferred) -> None:
    """Have ``run`` written at most :data:`WRITE_DELAY_S` from now unless it is before.

    Example:
        >>> # schedule(run)  # in start_run; run.write_pending() calls cancel(run)
    """
    global _thread
    with _cond:
        _waiting[run] = time.monotonic() + WRITE_DELAY_S
        if _thread is None:
            _thread = threading.Thread(target=_loop, name="loopline-run-writer", daemon=True)
            _thread.start()


def cancel(run: Deferred) -> None:
    """Forget ``run`` (it was written, or ended in one commit).

    Example:
        >>> cancel(object())  # unknown runs are ignored
    """
    with _cond:
        _waiting.pop(run, None)


def waiting() -> list[Deferred]:
    """The runs not yet written, oldest first.

    Example:
        >>> waiting()
        []
    """
    with _cond:
        return list(_waiting)


def write_all() -> None:
    """Write every waiting run now (before reading the store, so this process's runs show).

    Example:
        >>> write_all()
    """
    for run in waiting():
        run.write_pending()


def _loop() -> None:
    global _thread
    idle_since = time.monotonic()
    while True:
        with _cond:
            _cond.wait(WRITE_DELAY_S)
            now = time.monotonic()
            if not _waiting:
                if now - idle_since > _IDLE_EXIT_S:
                    _thread = None
                    return
                continue
            idle_since = now
            due = [run for run, deadline in _waiting.items() if deadline <= now]
        for run in due:
            try:
                run.write_pending()
            except BackendUnavailable as exc:  # retried on the next round, or by the owner
                _log.warning("loopline: could not write a started run yet: %s", exc)
            except LooplineError as exc:  # refused for good: the owner's next call raises it
                _log.warning("loopline: a started run was refused: %s", exc)
                cancel(run)


def _write_at_exit() -> None:
    """A run nobody ended (one taken off the active stack) is still written, RUNNING, as
    it would have been at its start."""
    for run in waiting():
        try:
            run.flush()  # its points too: the writers' own exit flush may have run already
        except LooplineError as exc:  # nothing can be raised at exit: say what is lost
            sys.stderr.write(f"loopline: could not write a started run at exit: {exc}\n")


def _write_before_fork() -> None:
    try:
        write_all()
    except LooplineError as exc:  # the parent keeps them waiting; a fork cannot be refused
        _log.warning("loopline: could not write started runs before fork: %s", exc)


def _after_fork_in_child() -> None:
    global _cond, _thread
    _cond = threading.Condition()
    _thread = None
    _waiting.clear()  # the parent writes them


atexit.register(_write_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_write_before_fork, after_in_child=_after_fork_in_child)
