"""A read timeout for both servers: a client that sends a request too slowly is cut off.

uvicorn waits for a request's headers and body as long as the client keeps the connection
open: a client that sends a few bytes and stops ("slowloris"), or announces a body and
never sends it, holds a connection, a file descriptor and a task forever; a few hundred of
them and the server takes no new connection. :class:`TimedHttpProtocol` is uvicorn's
``httptools`` protocol with two limits, both ``LOOPLINE_REQUEST_READ_TIMEOUT_S`` seconds
(60 by default), as nginx's ``client_header_timeout`` and ``client_body_timeout``:

* the request line and headers must arrive within it, counted from the connection's opening
  (or the request's first byte on a kept-alive connection); past it the server answers
  **408** and closes;
* the body may pause at most that long between two reads; past it the connection is closed
  (the app sees the client disconnect). A long upload that keeps sending is never cut off,
  and while the app itself does not take the body (reading is paused for it) the clock
  stands still.

Nothing is timed once a request is read: a slow prediction or query runs to its end. The
cost is one timer per connection, re-armed only when it fires.

``loopline server`` and ``loopline serve`` pass the class to uvicorn (``http=``); the
workers of ``--workers N`` import it by name and read the setting from the environment.

Example:
    >>> # uvicorn.run(app, http=TimedHttpProtocol)
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_IDLE, _HEADERS, _BODY = 0, 1, 2
_TIMEOUT_408 = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 47\r\nconnection: close\r\n\r\n"
    b"the request was not sent in time; send it again"
)


@functools.cache
def read_timeout_s() -> float:
    """The setting ``request_read_timeout_s`` of this process (read once).

    Example:
        >>> read_timeout_s() > 0
        True
    """
    from loopline.config import load_settings

    return float(load_settings().request_read_timeout_s)


class TimedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the read timeout of the module docstring.

    Example:
        >>> # uvicorn.run(app, http=TimedHttpProtocol)
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._timeout = read_timeout_s()
        self._phase = _IDLE
        self._since = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the clock for the first request's headers."""
        super().connection_made(transport)
        self._begin(_HEADERS)

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the clock."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._phase = _IDLE
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        """A request's first byte: its headers are due within the timeout."""
        super().on_message_begin()
        self._begin(_HEADERS)

    def on_headers_complete(self) -> None:
        """Headers read: from now on the body may pause at most the timeout."""
        super().on_headers_complete()
        self._phase, self._since = _BODY, self.loop.time()

    def on_body(self, body: bytes) -> None:
        """More of the body: the pause starts again."""
        super().on_body(body)
        self._since = self.loop.time()

    def on_message_complete(self) -> None:
        """The request is read: nothing more is timed."""
        super().on_message_complete()
        self._phase = _IDLE

    def _begin(self, phase: int) -> None:
        self._phase, self._since = phase, self.loop.time()
        if self._timer is None:
            self._timer = self.loop.call_later(self._timeout, self._check)

    def _check(self) -> None:
        """The timer fired: cut the connection off if the request is late, else wait on."""
        self._timer = None
        if self._phase == _IDLE or self.transport.is_closing():
            return
        if self._phase == _BODY and self.flow.read_paused:
            # The app has not taken what came yet: the pause is not the client's.
            self._since = self.loop.time()
        left = self._since + self._timeout - self.loop.time()
        if left > 0:
            self._timer = self.loop.call_later(left, self._check)
            return
        if self._phase == _HEADERS and (self.cycle is None or self.cycle.response_complete):
            self.transport.write(_TIMEOUT_408)  # no answer is under way: say why
        self.transport.close()
