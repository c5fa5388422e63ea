"""Free loopback ports for the servers the tests start, without two workers racing for one.

A port from ``bind(("127.0.0.1", 0))`` is free only until the socket closes: the server the
test then starts binds it a moment later, and meanwhile another xdist worker's ``bind(0)``
could be handed the same number. On a loaded machine that happened: a ``loopline serve``
of one worker took the port a ``loopline server`` of another was about to bind, the
server's health check got the model server's 200, and the tracking server itself exited
("address in use"), failing every test of the module that shared it.

Each worker takes its ports from a range of its own, below Linux's ephemeral range
(32768-60999, where ``bind(0)``, the services and outgoing connections take theirs), and
steps through it so that a port it handed out recently is not handed out again while its
server may still run.

Example:
    >>> 20000 <= free_port() < 32000
    True
"""

from __future__ import annotations

import itertools
import os
import socket

_BASE = 20000
_SPAN = 1500  # ports per worker: 8 workers fit below 32000
_WORKERS = 8
_turn = itertools.count()


def _worker_index() -> int:
    """This xdist worker's number (gw3 -> 3); 0 outside xdist."""
    digits = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    return int(digits) % _WORKERS if digits.isdigit() else 0


def free_port() -> int:
    """A loopback port nothing listens on, from this worker's own range.

    Example:
        >>> free_port() != free_port()
        True
    """
    start = _BASE + _worker_index() * _SPAN
    for _ in range(_SPAN):
        port = start + next(_turn) % _SPAN
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:  # in use (a server of this worker, or anything else)
                continue
            return port
    raise RuntimeError(f"no free loopback port in {start}-{start + _SPAN - 1}")
