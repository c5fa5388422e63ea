"""Running the loop: a pass every interval, by the one process that holds the loop lock.

:class:`LoopRunner` is what ``loopline loop run`` runs in the foreground and what
``loopline server`` runs in a background thread: before each pass it makes sure it holds
the store's loop lock (:mod:`.leader`), so that of several servers on one store only one
retrains; the others wait and take over when the leader stops or dies. The pass runs
:func:`~loopline.loop.leader.fenced`: if the lock goes while it runs (its PostgreSQL
connection dropped) and another process takes it, the pass's next write is refused and the
pass stops (logged), so two processes never retrain, gate or deploy at once. A pass that
fails (the database went away) is logged and retried at the next interval; :meth:`stop`
lets the pass in progress finish, then gives the lock up.

Example:
    >>> # runner = LoopRunner(load_policies(), interval=60).start()
    >>> # ...; runner.stop()
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from loopline.core.context import Context, get_context
from loopline.errors import LostLeadership
from loopline.loop.leader import Leader, fenced, leader_for

if TYPE_CHECKING:
    from loopline.loop.policy import LoopPolicy

log = logging.getLogger("loopline.loop")


class LoopRunner:
    """Passes of the loop over ``policies`` every ``interval`` seconds, while leader.

    Example:
        >>> # LoopRunner(policies, interval=5).run()  # blocks; Ctrl-C or stop() ends it
    """

    def __init__(
        self,
        policies: list[LoopPolicy],
        interval: float = 60.0,
        *,
        ctx: Context | None = None,
        leader: Leader | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        # The controller (pandas, the monitors) loads here, in the caller's thread, when a
        # loop is made: not with every server (most run none), and not in the loop's thread
        # while the server's first requests import the same modules.
        from loopline.loop.controller import run_once

        self._run_once = run_once
        self.policies = policies
        self.interval = interval
        self.ctx = ctx or get_context()
        self.leader = leader or leader_for(self.ctx)
        self.passes = 0
        self._stop = stop or threading.Event()
        self._thread: threading.Thread | None = None
        self._leading = False

    def step(self) -> bool:
        """One tick: take or keep the lock and, as leader, run one pass. True if it ran.

        Example:
            >>> # runner.step()
        """
        held = self.leader.holds() or self.leader.try_acquire()
        if held != self._leading:
            self._leading = held
            if held:
                log.info(
                    "this process now runs the loop (%s, term %s)",
                    self.leader.kind,
                    self.leader.term,
                )
            else:
                log.warning("this process lost the loop lock; another one runs the loop")
        if not held:
            return False
        try:
            with fenced(self.leader):
                results = self._run_once(self.policies)
        except LostLeadership as exc:
            # Deposed mid-pass: the refused write was rolled back, and the new leader's
            # next pass takes up what this one left (loop.actions: interrupted actions).
            log.warning("the loop pass stopped: %s", exc.message)
            self.leader.release()
            self._leading = False
            return False
        for r in results:
            log.info("%s: %s (%s)", r.model, r.outcome, r.message)
        self.passes += 1
        return True

    def run(self) -> None:
        """Tick every interval until :meth:`stop` (or Ctrl-C); then release the lock.

        Example:
            >>> # LoopRunner(policies).run()
        """
        try:
            while not self._stop.is_set():
                try:
                    self.step()
                except Exception:  # the watcher outlives a database hiccup; logged, retried
                    log.exception("a loop pass failed; retrying in %s s", self.interval)
                self._stop.wait(self.interval)
        finally:
            self.leader.release()
            self._leading = False

    def start(self) -> LoopRunner:
        """Run in a background thread (``loopline server``); return self.

        Example:
            >>> # runner = LoopRunner(policies).start()
        """
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name="loopline-loop", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 60.0) -> bool:
        """Stop after the pass in progress (waiting up to ``timeout`` s); True if stopped.

        A pass still running after ``timeout`` (a long retraining) is left to the daemon
        thread; the lock goes with the process.

        Example:
            >>> # runner.stop()
        """
        self._stop.set()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        stopped = not self._thread.is_alive()
        if stopped:
            self._thread = None
        return stopped


@contextlib.contextmanager
def as_leader(ctx: Context | None = None) -> Iterator[Leader]:
    """Hold the loop lock of ``ctx``'s store for one pass, fenced (``loopline loop once``);
    :class:`~loopline.errors.Conflict` naming the holder when another process leads.

    Example:
        >>> # with as_leader(): run_once(policies)
    """
    from loopline.errors import Conflict
    from loopline.loop.leader import holder

    ctx = ctx or get_context()
    leader = leader_for(ctx)
    if not leader.try_acquire():
        who = holder(ctx)
        raise Conflict(
            f"another process runs the loop on this store: {who['holder'] if who else '?'}",
            hint="its next pass comes within its interval (`loopline loop status`); stop it "
            "to run a pass by hand",
        )
    try:
        with fenced(leader):
            yield leader
    finally:
        leader.release()


def server_loop(
    ctx: Context, *, enabled: bool, root: Path, interval: float
) -> tuple[LoopRunner | None, str]:
    """The loop of ``loopline server``: started in the background when ``enabled`` and
    ``root`` has policies; returns the runner (None: off) and a line saying which.

    A bad policy raises :class:`~loopline.errors.ConfigError`: the server does not start
    with a loop it cannot run (``--no-loop`` starts it without).

    Example:
        >>> # runner, line = server_loop(ctx, enabled=True, root=Path("."), interval=60)
    """
    from loopline.loop.policy import load_policies

    if not enabled:
        return None, "loop: off (--no-loop)"
    policies = load_policies(root)
    if not policies:
        return None, (
            f"loop: off (no policies in {root / 'policies'}/*.yaml or {root / 'loopline.toml'})"
        )
    runner = LoopRunner(policies, interval, ctx=ctx)
    models = ", ".join(p.model for p in policies)
    runner.start()
    return runner, (
        f"loop: on for {models} (a pass every {interval:g} s, by the process holding the "
        f"{runner.leader.kind})"
    )
