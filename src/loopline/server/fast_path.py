"""A lean path for the MLflow client's frequent requests, beside FastAPI's routes.

The unmodified MLflow client sends one HTTP request per call - ``log_metric``,
``start_run``, ``end_run``, ``set_tags`` - so a training script makes hundreds of them.
FastAPI's routing, dependency injection and body validation cost more per request than
writing the data does. This ASGI middleware answers the routes of
:data:`loopline.server.fast_routes.ROUTES` itself: the body is parsed with orjson by the
route's strict parser, the operation (:mod:`loopline.server.mlflow_ops`, the same the FastAPI
route calls) runs in a worker thread and commits before the answer is sent, and errors are
MLflow's (``{"error_code", "message"}``, the status from :data:`loopline.errors.ERROR_TABLE`
and :func:`loopline.server.errors.database_error`).

Anything a parser does not expect (see :mod:`.fast_routes`), a body that is not JSON, or
one over 1 MiB goes on, unchanged, to the FastAPI route, which answers as it always does;
so both paths accept and refuse exactly the same requests. The operation runs in one of
the fast path's own thread pool, in a copy of the request's context (so the actor set by
the auth gate reaches the audit log); ``run_in_executor`` costs the loop about half what
``anyio.to_thread.run_sync`` does per call.

On a SQLite file, a write of one transaction - log-metric, log-parameter, log-batch,
set-tag, runs/create, and runs/update without a new name (:func:`.single_write`; the run's
audit event is in that transaction) - runs on the event loop's own thread when no other
operation of the path is under way: the hop to a worker thread and back (~100-300 us of
wake-ups on two cores) cost as much as the transaction's own work, one of the MLflow
client's requests at a time. It runs on a connection of its own whose busy timeout is 0,
so the loop never waits for another writer's lock: if one holds it, the transaction fails
at once, nothing written, and runs again in the thread pool, which waits as always. That
connection stays open from the first such write to the server's shutdown (ASGI lifespan),
used by the loop's thread alone, so a write does not pay the pool's checkout and checkin
(~15 us); a transaction that fails is rolled back on it and the next one runs on it as
usual. Requests that come meanwhile wait one transaction (~0.2-0.5 ms, its commit's
``fsync`` above all), as SQLite's single writer makes the other writes wait anyway. A
rename (runs/update with ``run_name``) is two transactions, the name then its tag: it
stays in the pool, where a failure of the second cannot send the first to run again.

The cheap reads - runs/get, experiments/get and get-by-name (:func:`.cheap_read`) - run
there too, under the same rule, on a second held connection marked
:data:`~loopline.core.db.READ_ONLY`: each is a read transaction of its own (``BEGIN``
DEFERRED, rolled back after it, :func:`loopline.core.db.read_on`), so it reads what any
process committed before it began and takes no lock; one the driver refuses at once
("database is locked") runs again in the pool. PostgreSQL's transactions, and SQLite's
others, stay in the pool.

Example:
    >>> # app.add_middleware(MlflowFastPath, ctx=ctx)
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import orjson
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loopline.core.context import Context
from loopline.core.db import READ_ONLY, lock_wait_error
from loopline.errors import BackendUnavailable, LooplineError
from loopline.server.errors import database_error, error_for_path
from loopline.server.fast_routes import (
    ROUTES,
    Operation,
    cheap_read,
    on_connection,
    single_write,
)
from loopline.server.mlflow_wire import ORJSON_OPTIONS
from loopline.server.responses import NOSNIFF

#: A log-batch of MLflow's maximum 1,000 metrics is ~80 KB; bigger bodies are rare enough to
#: take the FastAPI route.
MAX_BODY = 1024 * 1024
_JSON = (b"content-type", b"application/json")
# One set of threads for every app in the process (tests build many), started on first use;
# 8 keeps PostgreSQL's pool (5 + 10 overflow) busy without queueing on it.
_POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="loopline-fast-path")


class MlflowFastPath:
    """ASGI middleware answering MLflow's frequent routes without FastAPI's machinery.

    ``max_body`` is the largest body it reads; a bigger one goes to ``app``, whose body size
    limit then applies (so it must not exceed that limit when the path stands outside it).

    Example:
        >>> # app.add_middleware(MlflowFastPath, ctx=ctx)
    """

    def __init__(self, app: ASGIApp, ctx: Context, max_body: int = MAX_BODY) -> None:
        self.app = app
        self.ctx = ctx
        self.max_body = max_body
        # The engine of the work on the loop's thread (see the module's docstring), made
        # on first use; False where there is none (not a SQLite file). Its two connections,
        # one to write and one to read, are opened by the loop's thread (others, as in
        # tests, take the pool) and held.
        self._inline: Engine | bool | None = None
        self._held: dict[bool, Connection] = {}  # read-only? -> connection
        self._held_by = 0
        self._in_pool = 0  # operations of this path running in the thread pool now

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        parse = ROUTES.get((scope["method"], scope["path"])) if scope["type"] == "http" else None
        if parse is None or not _json_content(scope):
            if scope["type"] == "lifespan":
                receive = self._closing_at_shutdown(receive)
            await self.app(scope, receive, send)
            return
        if scope["method"] == "GET":  # the query string is all there is
            operation = parse(b"", scope["query_string"])
            if operation is None:
                await self.app(scope, receive, send)
                return
        else:
            body, complete = await _read(receive, self.max_body)
            operation = parse(body, scope["query_string"]) if complete else None
            if operation is None:
                await self.app(scope, _replay(body, receive, complete), send)
                return
        try:
            answer = await self._execute(operation)
        except LooplineError as exc:
            error = error_for_path(scope["path"], exc.http_status, exc.code, exc.message, exc.hint)
            await _answer(send, exc.http_status, bytes(error.body))
            return
        except Exception as exc:
            found = database_error(exc)
            if found is None:
                raise  # a bug: answered 500 and logged (by Starlette, or uvicorn in front)
            error = error_for_path(scope["path"], *found)
            await _answer(send, found[0], bytes(error.body))
            return
        await _answer(send, 200, answer)

    async def _execute(self, operation: Operation) -> bytes:
        """Run ``operation`` (on the loop's thread where it may, else in the pool)."""
        if self._in_pool == 0:
            try:
                on_held = self._on_held(operation)
                if on_held is not None:
                    return contextvars.copy_context().run(_run, on_held, self.ctx)
            except BackendUnavailable:
                pass  # another writer holds the lock: rolled back, nothing written
            except DBAPIError as exc:
                if lock_wait_error(exc) is None:
                    raise
                # A read the driver refused at once (SQLite's busy timeout is 0 here): it
                # waits in the pool instead.
        self._in_pool += 1
        try:
            # A cancelled request stops waiting; a started transaction still runs to its end.
            return await asyncio.get_running_loop().run_in_executor(
                _POOL, contextvars.copy_context().run, partial(_run, operation, self.ctx)
            )
        finally:
            self._in_pool -= 1

    def _on_held(self, operation: Operation) -> Operation | None:
        """``operation`` on the held connection of its kind, if it may run on the loop's
        thread (:func:`.single_write`, :func:`.cheap_read`) and there is one, else None."""
        if single_write(operation):
            held = self._held_connection(read_only=False)
        elif cheap_read(operation):
            held = self._held_connection(read_only=True)
        else:
            return None
        return None if held is None else on_connection(operation, held)

    def _held_connection(self, *, read_only: bool) -> Connection | None:
        """The connection of the writes (or of the reads) on the loop's thread, opened on
        first use; None where there are none, or on another thread than the one that
        opened the first."""
        if self._held and threading.get_ident() != self._held_by:
            return None
        held = self._held.get(read_only)
        if held is not None:
            return held
        if self._inline is None:
            self._inline = inline_engine(self.ctx) or False
        if not isinstance(self._inline, Engine):
            return None
        held = self._inline.connect()  # BackendUnavailable: tried again next time
        if read_only:  # its transactions begin DEFERRED: a snapshot, no write lock
            held.execution_options(**{READ_ONLY: True})
        self._held[read_only] = held
        self._held_by = threading.get_ident()
        return held

    def close(self) -> None:
        """Close the connections of the work on the loop's thread (at the server's shutdown).

        Example:
            >>> # MlflowFastPath(app, ctx).close()
        """
        held, inline = list(self._held.values()), self._inline
        self._held, self._inline = {}, None
        for conn in held:
            conn.close()
        if isinstance(inline, Engine):
            inline.dispose()

    def _closing_at_shutdown(self, receive: Receive) -> Receive:
        """``receive`` of the lifespan: closes the held connection when the server stops."""

        async def closing() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                self.close()
            return message

        return closing


def inline_engine(ctx: Context) -> Engine | None:
    """An engine of ``ctx``'s SQLite file that never waits for a lock (busy timeout 0; the
    loop's thread alone uses it), or None when ``ctx``'s database is not a SQLite file.

    Example:
        >>> from loopline.config import Settings
        >>> inline_engine(Context(Settings(uri="sqlite:///:memory:"))) is None
        True
    """
    from loopline.core.db import create_engine_for

    if ctx.is_remote:
        return None
    # The store is opened and migrated by ``ctx.engine``: this engine is the same database.
    url = ctx.engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None  # an in-memory database is one connection's own: no second one
    return create_engine_for(url.render_as_string(hide_password=False), busy_timeout_ms=0)


def _run(operation: Operation, ctx: Context) -> bytes:
    """Run ``operation`` (it commits before returning) and render its answer, off the loop."""
    return orjson.dumps(operation(ctx), option=ORJSON_OPTIONS)


def _json_content(scope: Scope) -> bool:
    """True for a GET without a content type or with JSON's, and a body sent as JSON.

    A body without ``Content-Type: application/json`` is FastAPI's to refuse (400), as
    MLflow's client always sends one: a browser sends such a body from any web page without
    asking the server first (a form, or ``fetch`` with ``mode: "no-cors"``), so taking it
    would let another site write to a server without ``--auth``.
    """
    for key, value in scope["headers"]:
        if key == b"content-type":
            return bool(value.split(b";", 1)[0].strip().lower() == b"application/json")
    return bool(scope["method"] == "GET")


async def _read(receive: Receive, limit: int) -> tuple[bytes, bool]:
    """The request body, and whether it was read whole (False past ``limit``)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), size <= limit
        if size > limit:
            return b"".join(chunks), False


def _replay(body: bytes, receive: Receive, complete: bool) -> Receive:
    """A ``receive`` that hands the body read so far to the next app, then the rest."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            more = not complete
            return {"type": "http.request", "body": body, "more_body": more}
        return await receive()

    return replay


async def _answer(send: Send, status: int, body: bytes) -> None:
    headers = [_JSON, NOSNIFF, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
