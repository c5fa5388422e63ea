"""Waiting for a server process a test started until its ``/health`` answers 200.

One HTTP client for the whole wait, not one per poll: httpx's module-level functions
(``httpx.get``) build a client per call, and with it an SSL context that loads the CA
bundle (~40 ms of CPU), even for a plain ``http://`` URL. Polling ten times a second that
way cost the suite over three minutes of CPU (py-spy), spent while the very servers it
waited on were starting on the same two cores.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from tests.cli_run import Process


def wait_healthy(
    url: str,
    proc: Process,
    output: Callable[[], str],
    *,
    timeout: float = 60.0,
    what: str = "the server",
    path: str = "/health",
) -> None:
    """Poll ``url`` + ``path`` (``/health``) until it answers 200; fail with ``output()``
    (the process's log) when ``proc`` exits first or ``timeout`` seconds pass (the process
    is then killed).

    Example:
        >>> # wait_healthy("http://127.0.0.1:5000", proc, log.read_text, timeout=120)
    """
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as client:
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"{what} exited with {proc.returncode}: {output()}")
            try:
                if client.get(f"{url}{path}").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise AssertionError(f"{what} did not answer {path} in {timeout:g} s: {output()}")
            time.sleep(0.1)
