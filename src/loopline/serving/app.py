"""The model server (data plane): a lean ASGI app for ``loopline serve``.

Endpoints::

    POST /v1/models/{name}/predict    {"instances": [...]}, {"dataframe_split": {...}} or
                                      {"inputs": ...} (see loopline.serving.inputs)
                                      -> {"predictions": [...], "model_version": "3",
                                          "request_id": "..."}
    POST /v1/models/{name}/feedback   {"request_id": "...", "label": 1} (or "labels": [...];
                                      "row": N labels row N of a request of several rows)
    GET  /v1/models, /v1/models/{name}   what is served, and why a version did not load
    GET  /health                      {"status": "ok"}: 200 once the deployments are loaded
    GET  /livez                       {"status": "alive"}: 200 whenever the process serves HTTP
    GET  /metrics                     Prometheus text format
    GET  /openapi.json                the routes above, typed by each model's signature

The request path is a plain ASGI callable - no framework routing, no pydantic, no pandas
for one row of a numeric model: the body is read (at most ``max_body_mb``; 413 beyond),
parsed with orjson, validated against the model's signature into a numpy row and
predicted. Every bad input is a 4xx whose JSON body names what is wrong
(``{"error": {"code", "message", "field", "hint"}}``); the server keeps serving. A wrong
method on one of these endpoints is a 405 with the ``Allow`` header (a GET endpoint answers
``HEAD`` as ``GET``, without the body: probes use it); a body not sent as
``Content-Type: application/json`` a 415 (:func:`unsupported_body`, against CSRF). A
model deployed here whose versions failed to load is a 503 naming the error.

When the answering version raises (or exceeds ``timeout_ms``), the stable version answers
for a candidate, and the deployment's fallback version answers for the stable one; the
failure is counted (metrics and the canary window). A version's ``timeout_ms`` is its own:
a call that runs out of it while a call of another version of the deployment, abandoned
past its own timeout, ran in the worker (a slow candidate's, taking the interpreter from
the stable version answering for it) is waited for up to the server's limit instead, and
answers (:mod:`loopline.serving.timeouts`). A request the signature rejects is the
client's error - a 422 that counts against no version, so bad input cannot roll a
canary back; a candidate that refuses what the stable version takes did fail. A model
without a signature that raises on text in a column is such a 422 too
(:class:`~loopline.serving.inputs.ModelRejected`), judged the same way, and the stable
version's by the fallback: the failure counts when another version takes the input. Shadow
requests run after the answer was sent. With ``log_predictions`` every answered request
is queued for the prediction log before its answer is sent
(:mod:`loopline.monitoring.prediction_log`: one write of the body and the answer to a local
spool and a deque append here, written in batches by its own thread).

The tail latency of one-row requests is the server's own background work more than the
request path: at startup the loaded models are frozen out of the collector's reach, the
collector's thresholds are raised, and the GIL switch interval is cut to
``switch_interval_ms`` so that a request arriving while the prediction-log writer or the
deployment poller runs waits well under a millisecond for the GIL instead of up to 5 ms.

Example:
    >>> # uvicorn.run(ModelServer(), host="127.0.0.1", port=8080)
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import os
import secrets
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.exc import SQLAlchemyError

from loopline.core.access import is_json_media_type
from loopline.core.columns import MAX_REQUEST_ID_CHARS
from loopline.core.context import Context, get_context
from loopline.core.hosts import AllowedHosts, protect
from loopline.errors import InvalidInput
from loopline.serving.control import RETRY_LOAD_AFTER, Controller
from loopline.serving.feedback import (
    LABEL_HORIZON_S,
    RecentAnswers,
    Relay,
    log_expired,
    read_feedback,
)
from loopline.serving.inputs import MalformedBody, ModelRejected, loads, parse
from loopline.serving.prom import ServingMetrics
from loopline.serving.router import Route, ServedModel
from loopline.serving.timeouts import AbandonedCalls, PredictRunner, PredictTimeout

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("loopline.serving")
_JSON = (b"content-type", b"application/json")
# Browsers take the declared type: an answer echoing input is never read as a page.
_NOSNIFF = (b"x-content-type-options", b"nosniff")
_PREFIX = "/v1/models/"
#: The endpoints that only read, and the methods they answer: HEAD is answered as GET (the
#: server sends the headers, Content-Length included, without the body), for the load
#: balancers and uptime checkers that probe with it.
_READ_ONLY = frozenset(("/livez", "/health", "/metrics", "/openapi.json", "/v1/models"))
_READ = "GET, HEAD"
#: The answer of /livez: the same bytes every time, and nothing about the models.
_ALIVE = b'{"status":"alive"}'
#: Collector thresholds while serving. A request leaves one tracked object behind (its
#: prediction-log entry, until the next flush: its record is bytes, which the collector
#: does not walk; it left ~7 when the entry held the parsed rows, and collections cost
#: ~14 us a request). At CPython's (700, 10, 10) a young collection paused every few
#: hundred requests and an older one, which only finds those entries again (reference
#: counting frees them at the flush), every few thousand.
GC_THRESHOLDS = (2_000, 10, 100)
#: Mirrored requests waiting for or running on the shadow thread; beyond it a request is
#: not mirrored (counted in loopline_shadow_skipped_total): a shadow slower than the
#: traffic must cost the server neither memory nor answers.
SHADOW_BACKLOG = 64


class ServeSettings(BaseSettings):
    """Options of ``loopline serve``, also read from ``LOOPLINE_SERVE_*`` by each worker."""

    model_config = SettingsConfigDict(env_prefix="LOOPLINE_SERVE_", extra="ignore")

    models: list[str] = []
    poll_interval: float = 1.0
    max_body_mb: float = 16.0
    multiprocess: bool = False
    log_predictions: bool = True
    #: Seconds one prediction may take (a deployment's ``timeout_ms`` overrides it); past
    #: it the fallback answers, or 504. None: no limit, predictions run inline (fastest).
    predict_timeout_s: float | None = Field(None, gt=0)
    #: How long a background thread (prediction-log writer, deployment poller) may hold the
    #: GIL while a request waits for it, in ms (``sys.setswitchinterval``; CPython's
    #: default is 5 ms, which a request paid in full whenever it arrived during a flush).
    switch_interval_ms: float = Field(0.5, gt=0, le=100)
    #: Native (OpenMP) threads one prediction may use; 0: the model library's default, a
    #: team as wide as the machine. One by default: many small requests side by side each
    #: on one thread use the cores without the spinning and descheduled-team stalls of
    #: wide teams (see loopline.training.native_threads).
    native_threads: int = Field(1, ge=0, le=1024)
    #: Seconds a ``/feedback`` label for a request this worker does not remember waits for
    #: the worker or replica that answered it (which reads it within a poll or two); then
    #: it expires, counted in ``loopline_feedback_labels_total{outcome="expired"}`` (see
    #: loopline.serving.feedback). Keep it many poll intervals long.
    label_horizon_s: float = Field(LABEL_HORIZON_S, gt=0)


class ModelFailed(Exception):
    """No version could answer: the last one raised or timed out."""

    def __init__(self, model: ServedModel, cause: BaseException) -> None:
        super().__init__(
            f"version {model.version} of {model.name!r} failed: {type(cause).__name__}: {cause}"
        )
        self.model = model
        self.cause = cause
        self.timed_out = isinstance(cause, TimeoutError)


class _TooLarge(Exception):
    pass


def error_body(code: str, message: str, field: str | None = None, hint: str | None = None) -> bytes:
    """The JSON error body of the model server: ``{"error": {code, message, field?, hint?}}``.

    Example:
        >>> error_body("NOT_FOUND", "no such model", hint="GET /v1/models")
        b'{"error":{"code":"NOT_FOUND","message":"no such model","hint":"GET /v1/models"}}'
    """
    body: dict[str, Any] = {"code": code, "message": message}
    if field:
        body["field"] = field
    if hint:
        body["hint"] = hint
    try:
        return orjson.dumps({"error": body})
    except TypeError:
        # A message echoing what no UTF-8 holds (a lone surrogate) must not turn a 4xx into
        # a 500: such characters are written as their escapes (\udfff) instead.
        printable = {k: v.encode("utf-8", "backslashreplace").decode() for k, v in body.items()}
        return orjson.dumps({"error": printable})


def unsupported_body(content_type: bytes | None, encoding: bytes | None) -> bytes | None:
    """The 415 error body for a request body not sent as plain JSON; None when it is.

    A body is taken only with ``Content-Type: application/json`` (or ``application/*+json``,
    as on ``loopline server``): a page on another site can make a browser post a form or a
    ``text/plain`` body here without asking the server first, and labels posted so would
    move canary decisions. A ``Content-Encoding`` (gzip, ...) is not decoded, so it is
    refused too rather than read as broken text. The caller compares the usual header with
    ``b"application/json"`` first: on the fast path this is not called.

    Example:
        >>> unsupported_body(b"application/json; charset=utf-8", None) is None
        True
        >>> orjson.loads(unsupported_body(b"text/plain", None))["error"]["field"]
        'Content-Type'
    """
    if encoding is not None and encoding.strip().lower() not in (b"", b"identity"):
        shown = encoding.decode("latin-1")
        return error_body(
            "UNSUPPORTED_MEDIA_TYPE",
            f"Content-Encoding {shown!r} is not supported: the model server reads the body "
            "as it is sent",
            field="Content-Encoding",
            hint="send the JSON body uncompressed, without a Content-Encoding header",
        )
    if content_type is not None and is_json_media_type(content_type.decode("latin-1")):
        return None
    sent = "no Content-Type" if content_type is None else repr(content_type.decode("latin-1"))
    return error_body(
        "UNSUPPORTED_MEDIA_TYPE",
        f"the request body must be sent as JSON with 'Content-Type: application/json', not {sent}",
        field="Content-Type",
        hint="send the header 'Content-Type: application/json' (curl -H ...; clients that "
        "send JSON set it, e.g. httpx/requests with json=...)",
    )


#: On an answer given by another version than the one picked (the fallback for the stable
#: version, the stable version for a candidate): the version that failed.
FALLBACK_HEADER = b"x-loopline-fallback-for"


def _first(preds: list[Any]) -> Any:
    return preds[0] if preds else None


class ModelServer:
    """The ASGI app: routes prediction requests to the loaded deployment versions."""

    def __init__(self, ctx: Context | None = None, settings: ServeSettings | None = None) -> None:
        self.settings = settings or ServeSettings()
        self.ctx = ctx or get_context()
        self.worker = f"{socket.gethostname()}-{os.getpid()}"
        self.control = Controller(
            self.ctx,
            worker=self.worker,
            models=self.settings.models,
            poll_interval=self.settings.poll_interval,
            native_threads=self.settings.native_threads,
        )
        self.metrics = ServingMetrics(multiprocess=self.settings.multiprocess)
        self.max_body = int(self.settings.max_body_mb * 1024 * 1024)
        self.ready = False
        self._ids = itertools.count(1)
        self._prefix = secrets.token_hex(4) + "-"
        self._recent = RecentAnswers()
        # Labels for requests other workers answered go to them through the store, and
        # theirs come here (see loopline.serving.feedback).
        self._relay = Relay(self.worker, horizon=self.settings.label_horizon_s)
        self._relay_task: asyncio.Task[None] | None = None
        self._runner: PredictRunner | None = None
        self._shadow_runner: PredictRunner | None = None
        # The calls abandoned at their timeout, on either runner: they excuse the late
        # calls of other versions (see loopline.serving.timeouts).
        self._abandoned = AbandonedCalls()
        self._shadow_tasks: set[asyncio.Task[None]] = set()
        self._predlog: Any = None
        self._saved: tuple[float, tuple[int, ...]] | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def startup(self) -> None:
        """Load the deployments, then poll the store in the background.

        Example:
            >>> # server.startup()
        """
        self.control.refresh()
        self._relay.start(self.ctx.engine)
        if self.settings.log_predictions:
            # Imported here: the prediction log needs pandas/pyarrow, the request path not.
            from loopline.monitoring.prediction_log import PredictionLogger

            self._predlog = PredictionLogger(self.ctx)
        # Models and modules loaded at start live as long as the process: move them out of
        # the collector's reach so that a full collection never pauses a request for them.
        gc.collect()
        gc.freeze()
        self._tune_interpreter()
        self.control.start()
        self.ready = True

    def _tune_interpreter(self) -> None:
        """Switch interval and collector thresholds for the request path (undone at shutdown).

        The request runs on the event loop thread; the prediction-log writer and the
        deployment poller are threads of the same process. A request that arrives while one
        of them runs Python code waits for the GIL until the switch interval forces it
        free: a short interval turns those waits from up to 5 ms into well under 1 ms.
        """
        if self._saved is None:
            self._saved = (sys.getswitchinterval(), gc.get_threshold())
        sys.setswitchinterval(self.settings.switch_interval_ms / 1000)
        gc.set_threshold(*GC_THRESHOLDS)

    def shutdown(self) -> None:
        """Stop polling and flush the counters.

        Example:
            >>> # server.shutdown()
        """
        self.control.stop()
        if self._predlog is not None:
            self._predlog.close()
        if self._runner is not None:
            self._runner.close()
        if self._shadow_runner is not None:
            self._shadow_runner.close()
        if self._saved is not None:  # an app embedded in a bigger process leaves it as found
            interval, thresholds = self._saved
            sys.setswitchinterval(interval)
            gc.set_threshold(*thresholds)
            self._saved = None

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await loop.run_in_executor(None, self.startup)
                except Exception as exc:  # reported to uvicorn, which exits with it
                    log.exception("model server failed to start")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                self._relay_task = loop.create_task(self._relay_labels())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._relay_task is not None:
                    self._relay_task.cancel()
                await loop.run_in_executor(None, self.shutdown)
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- ASGI --------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind != "http":
            return
        path: str = scope["path"]
        method: str = scope["method"]
        if path.startswith(_PREFIX):
            # /v1/models/{name}[/predict|/feedback]; a model name has no "/" (the registry's
            # names), so the part after the name says the endpoint, and the method is
            # checked against the endpoint before the model is looked up.
            rest = path[len(_PREFIX) :]
            name, slash, action = rest.partition("/")
            if not slash:
                if method != "GET" and method != "HEAD":
                    await self._not_allowed(send, method, path, _READ)
                elif not rest:
                    await self._send(send, 200, orjson.dumps(self.control.describe()))
                elif (described := self.control.describe_model(rest)) is not None:
                    await self._send(send, 200, orjson.dumps(described))
                else:
                    await self._not_found(send, rest)
            elif action == "predict":
                if method != "POST":
                    await self._not_allowed(send, method, path, "POST")
                else:
                    await self._predict(scope, name, receive, send)
            elif action == "feedback":
                if method != "POST":
                    await self._not_allowed(send, method, path, "POST")
                else:
                    await self._feedback(scope, name, receive, send)
            else:
                await self._no_endpoint(send, path)
            return
        if method != "GET" and method != "HEAD":
            # The other endpoints only read (PUT /metrics answered 200 like GET).
            if path in _READ_ONLY:
                await self._not_allowed(send, method, path, _READ)
            else:
                await self._no_endpoint(send, path)
            return
        if path == "/livez":
            # Liveness: the process answers HTTP, whatever its models. A liveness probe on
            # /health restarted a pod whose deployment had no loadable version again and
            # again, while the server itself retries the load every RETRY_LOAD_AFTER s.
            await self._send(send, 200, _ALIVE)
        elif path == "/health":
            # Not ready while starting, or while a deployment has no loadable version at all.
            # Only the status: probes need no token and any Host may ask, so what is served
            # and why a load failed are for GET /v1/models (viewer role under --auth).
            ok = self.ready and not self.control.unavailable()
            status = "ok" if ok else ("unavailable" if self.ready else "starting")
            await self._send(send, 200 if ok else 503, orjson.dumps({"status": status}))
        elif path == "/metrics":
            text, content_type = self.metrics.render()
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", content_type.encode())],
                }
            )
            await send({"type": "http.response.body", "body": text})
        elif path == "/v1/models":
            await self._send(send, 200, orjson.dumps(self.control.describe()))
        elif path == "/openapi.json":
            from loopline.serving.openapi import describe  # only when asked: off the hot path

            await self._send(send, 200, orjson.dumps(describe(self.control.routes)))
        else:
            await self._no_endpoint(send, path)

    @staticmethod
    async def _send(
        send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    _JSON,
                    _NOSNIFF,
                    (b"content-length", str(len(body)).encode()),
                    *(headers or ()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _no_endpoint(self, send: Send, path: str) -> None:
        body = error_body("NOT_FOUND", f"no endpoint {path}", hint="POST /v1/models/NAME/predict")
        await self._send(send, 404, body)

    async def _not_allowed(self, send: Send, method: str, path: str, allow: str) -> None:
        """405 with the ``Allow`` header: the endpoint exists, not with this method."""
        body = error_body(
            "METHOD_NOT_ALLOWED",
            f"{method} is not allowed on {path}; use {allow}",
            hint=f"{allow} {path}",
        )
        await self._send(send, 405, body, [(b"allow", allow.encode())])

    async def _not_found(self, send: Send, name: str) -> int:
        """404 for a model not served here; 503 naming the error for one deployed here
        whose versions failed to load (deploying it again would not help). The status."""
        failed = self.control.errors.get(name)
        if failed is not None:
            await self._send(
                send,
                503,
                error_body(
                    "MODEL_UNAVAILABLE",
                    f"model {name!r} is deployed, but this server could not load it: {failed}",
                    field="name",
                    hint="fix what the error names (the server log has the traceback; GET "
                    f"/v1/models lists the load errors); the server tries again every "
                    f"{RETRY_LOAD_AFTER:g} s, or deploy a version that loads",
                ),
            )
            return 503
        served = ", ".join(sorted(self.control.routes)) or "none"
        await self._send(
            send,
            404,
            error_body(
                "NOT_FOUND",
                f"model {name!r} is not served here",
                field="name",
                hint=f"served models: {served}; deploy one with `loopline deploy NAME VERSION`",
            ),
        )
        return 404

    async def _body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self.max_body
        for k, v in scope["headers"]:
            if k == b"content-length":
                if v.isdigit() and int(v) > limit:
                    await self._drain(receive)
                    raise _TooLarge
                break
        message = await receive()
        body: bytes = message.get("body", b"")
        if not message.get("more_body", False):
            if len(body) > limit:
                raise _TooLarge
            return body
        parts = [body]
        size = len(body)
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _TooLarge
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                if message.get("more_body", False):
                    await self._drain(receive)
                raise _TooLarge
            parts.append(chunk)
            if not message.get("more_body", False):
                return b"".join(parts)

    def _too_large(self, advice: str) -> bytes:
        """The 413 body: the limit, and the setting that raises it."""
        return error_body(
            "PAYLOAD_TOO_LARGE",
            f"the request body is over the limit of {self.settings.max_body_mb:g} MB",
            field="body",
            hint=f"{advice}, or raise the limit: loopline serve --max-body-mb N "
            "(LOOPLINE_SERVE_MAX_BODY_MB)",
        )

    async def _drain(self, receive: Receive) -> None:
        """Read and drop the rest of an oversized body, so the client can read the 413."""
        budget = max(8 * self.max_body, 256 * 1024 * 1024)
        while budget > 0:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                return
            budget -= len(message.get("body", b""))

    # -- predictions -------------------------------------------------------------------

    async def _call(
        self, route: Route, model: ServedModel, shape: str, rows: Any, *, last_resort: bool = False
    ) -> list[Any]:
        # A deployment's timeout_ms bounds the versions it routes to; the fallback, the last
        # resort, is bounded by the server's limit only (which protects the event loop).
        timeout = self.settings.predict_timeout_s
        if route.timeout is not None and not last_resort:
            timeout = route.timeout
        if timeout is None:
            return model.run(shape, rows)
        if self._runner is None:
            self._runner = PredictRunner(abandoned=self._abandoned)
        # A call that ran out of time beside an abandoned call of another version of the
        # deployment is given the server's limit (none: it is waited for): the lateness
        # is not its own.
        preds: list[Any] = await self._runner.run(
            model,
            shape,
            rows,
            timeout,
            grace=self.settings.predict_timeout_s,
            beside=route.versions_besides(model),
        )
        return preds

    def _failed(self, model: ServedModel, exc: BaseException) -> None:
        kind = "timeout" if isinstance(exc, TimeoutError) else "error"
        self.metrics.failure(model.name, model.label, kind)
        log.warning(
            "version %s of %s failed (%s): %s: %s",
            model.version,
            model.name,
            kind,
            type(exc).__name__,
            exc,
        )

    async def _answer(
        self, route: Route, model: ServedModel, is_candidate: bool, shape: str, rows: Any
    ) -> tuple[list[Any], ServedModel]:
        stats = route.stats
        rejected: tuple[InvalidInput, float] | None = None
        if is_candidate:
            t = time.perf_counter()
            try:
                preds = await self._call(route, model, shape, rows)
            except InvalidInput as exc:
                # Bad input is the client's fault, not the candidate's: the stable version
                # judges the input below, and only when it accepts it did the candidate
                # fail (a signature the deployment's clients do not send).
                rejected = exc, time.perf_counter() - t
            except Exception as exc:  # the stable version answers; the failure is counted
                if stats is not None:
                    stats.candidate.error(time.perf_counter() - t)
                    stats.fallbacks += 1
                self._failed(model, exc)
            else:
                if stats is not None:
                    stats.candidate.record(time.perf_counter() - t, _first(preds))
                return preds, model
        stable = route.stable
        fallback = route.fallback
        t = time.perf_counter()
        try:
            preds = await self._call(route, stable, shape, rows)
        except ModelRejected as exc:
            if fallback is None:
                raise  # a 422 for the client: no other version says the input was fine
            # The stable model itself raised on values no signature checked: the fallback
            # judges them, as the stable version judges what a candidate refused.
            took = time.perf_counter() - t
            preds = await self._by_fallback(route, fallback, shape, rows, exc)
            if stats is not None:
                stats.stable.error(took)
            self._failed(stable, exc)
            answered = fallback
        except InvalidInput:
            raise  # a 422 for the client; no version failed
        except Exception as exc:  # the fallback version answers, or ModelFailed (500)
            if stats is not None:
                stats.stable.error(time.perf_counter() - t)
            self._failed(stable, exc)
            if fallback is None:
                raise ModelFailed(stable, exc) from exc
            preds = await self._by_fallback(route, fallback, shape, rows, exc)
            answered = fallback
        else:
            if stats is not None:
                stats.stable.record(time.perf_counter() - t, _first(preds))
            answered = stable
        if rejected is not None:  # another version took what the candidate refused
            if stats is not None:
                stats.candidate.error(rejected[1])
                stats.fallbacks += 1
            self._failed(model, rejected[0])
        return preds, answered

    async def _by_fallback(
        self, route: Route, fallback: ServedModel, shape: str, rows: Any, failed: Exception
    ) -> list[Any]:
        """The fallback version's answer after the stable version failed with ``failed``.

        Input the fallback refuses too is a 422 (no version failed). When the fallback
        fails, the client gets the stable version's 422 naming the column if that is why
        it failed (:class:`ModelRejected`), else the fallback's failure (500).
        """
        try:
            preds = await self._call(route, fallback, shape, rows, last_resort=True)
        except InvalidInput:
            raise
        except Exception as exc:
            self._failed(fallback, exc)
            if isinstance(failed, ModelRejected):
                raise failed from exc
            raise ModelFailed(fallback, exc) from exc
        if route.stats is not None:
            route.stats.fallbacks += 1
        return preds

    async def _predict(self, scope: Scope, name: str, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        rid = key = content_type = encoding = None
        for k, v in scope["headers"]:
            if k == b"content-type":
                content_type = v
            elif k == b"x-request-id":
                rid = v.decode("latin-1")
            elif k == b"x-loopline-key":
                key = v.decode("latin-1")
            elif k == b"content-encoding":
                encoding = v
        try:
            body = await self._body(scope, receive)
        except _TooLarge:
            await self._send(
                send, 413, self._too_large("send fewer rows per request, or `loopline score`")
            )
            self.metrics.request(
                name if name in self.control.routes else "-", "-", 413, time.perf_counter() - start
            )
            return
        if content_type != b"application/json" or encoding is not None:  # fast path: one compare
            refused = unsupported_body(content_type, encoding)
            if refused is not None:
                await self._send(send, 415, refused)
                self.metrics.request(
                    name if name in self.control.routes else "-",
                    "-",
                    415,
                    time.perf_counter() - start,
                )
                return
        route = self.control.routes.get(name)
        if route is None:
            status = await self._not_found(send, name)
            self.metrics.request("-", "-", status, time.perf_counter() - start)
            return
        version = route.stable.label
        try:
            if rid is not None and not 0 < len(rid) <= MAX_REQUEST_ID_CHARS:
                # Logged under an id that labels can never name, its prediction would never
                # meet its ground truth (POST /monitor/labels takes 1-200 characters).
                raise InvalidInput(
                    f"the X-Request-ID header has {len(rid)} characters; a request id has 1 to "
                    f"{MAX_REQUEST_ID_CHARS}",
                    field="X-Request-ID",
                    hint="send a shorter id, or none and use the one the answer gives",
                )
            shape, rows, body_key = parse(loads(body))
            served, is_candidate = route.pick(key or body_key)
            preds, answered = await self._answer(route, served, is_candidate, shape, rows)
        except MalformedBody as exc:
            status, out = 400, error_body("MALFORMED_JSON", str(exc), exc.field, exc.hint)
        except InvalidInput as exc:
            status, out = 422, error_body(exc.code, exc.message, exc.field, exc.hint)
        except ModelFailed as exc:
            version = exc.model.label
            if exc.timed_out:
                status, out = 504, self._timeout_error(route, exc)
            else:
                status, out = (
                    500,
                    error_body(
                        "MODEL_ERROR",
                        str(exc),
                        hint="see the server log; deploy a fallback version "
                        "(--fallback) to answer when this happens",
                    ),
                )
        else:
            if rid is None:
                rid = self._prefix + format(next(self._ids), "x")
            version = answered.label
            status = 200
            out = orjson.dumps(
                {"predictions": preds, "model_version": version, "request_id": rid},
                option=orjson.OPT_SERIALIZE_NUMPY,
            )
            # Another version answered for the one picked, which failed or ran out of time:
            # the client is told which, as model_version alone does not say it was a
            # stand-in (the fallback may be a version that also serves on its own).
            marked = None if answered is served else [(FALLBACK_HEADER, served.label.encode())]
            if self._predlog is not None:
                # Before the answer leaves: a request answered is in the spool, which a
                # kill of this process does not lose. One write of the body and the answer
                # and a deque append; rows are built on the writer thread. The latency
                # logged is up to the answer made, the send not in it.
                self._predlog.log_request(
                    rid,
                    name,
                    version,
                    answered.names,
                    (time.perf_counter() - start) * 1000,
                    answered.types,
                    body=body,
                    answer=out,
                )
            await self._send(send, 200, out, marked)
            self.metrics.request(name, version, 200, time.perf_counter() - start)
            if route.stats is not None:
                self._recent.remember(
                    rid,
                    route.name,
                    route.revision,
                    answered is not route.stable and answered is not route.fallback,
                    preds,
                )
                if route.shadow is not None:
                    self._shadow(route, shape, rows, rid, preds)
            return
        await self._send(send, status, out)
        self.metrics.request(name, version, status, time.perf_counter() - start)

    def _timeout_error(self, route: Route, exc: ModelFailed) -> bytes:
        if isinstance(exc.cause, PredictTimeout) and exc.cause.excused:
            limit = (
                f"{exc.cause.limit:g} s (LOOPLINE_SERVE_PREDICT_TIMEOUT_S; given instead of the "
                "deployment's timeout_ms while another version's abandoned call ran)"
            )
        elif route.timeout is not None and exc.model is not route.fallback:
            limit = f"{route.timeout:g} s (the deployment's timeout_ms)"
        else:
            limit = f"{self.settings.predict_timeout_s:g} s (LOOPLINE_SERVE_PREDICT_TIMEOUT_S)"
        return error_body(
            "MODEL_TIMEOUT",
            f"version {exc.model.version} of {exc.model.name!r} did not answer within {limit}",
            hint="deploy a fallback version (--fallback) to answer meanwhile, or raise the "
            "timeout: `loopline serve --predict-timeout SECONDS` or the deployment's "
            "timeout_ms",
        )

    def _shadow(self, route: Route, shape: str, rows: Any, rid: str, served: list[Any]) -> None:
        """Mirror a request to the shadow version in the background, once it was answered.

        The shadow predicts on its own thread, never on the event loop: inline, a shadow
        that took 50 ms held every other request for those 50 ms (the clients of a slow
        shadow saw their latency double and the throughput halve). At most
        ``SHADOW_BACKLOG`` mirrored requests wait; beyond that one is skipped and counted.
        """
        shadow = route.shadow
        assert shadow is not None
        if len(self._shadow_tasks) >= SHADOW_BACKLOG:
            self.metrics.shadow_skipped(shadow.name, shadow.label)
            return
        task = asyncio.get_running_loop().create_task(self._mirror(route, shape, rows, rid, served))
        self._shadow_tasks.add(task)  # a reference, so the task is not collected mid-way
        task.add_done_callback(self._shadow_tasks.discard)

    async def _mirror(
        self, route: Route, shape: str, rows: Any, rid: str, served: list[Any]
    ) -> None:
        """Ask the shadow version too, after the answer went out; log and compare.

        A request agrees when the shadow's answer is the served one on every row: with the
        first row alone, a request of 100 rows that the shadow answered otherwise on 99 of
        them counted as agreeing.
        """
        shadow = route.shadow
        stats = route.stats
        assert shadow is not None and stats is not None
        if self._shadow_runner is None:  # one thread: mirrored calls queue behind each other
            self._shadow_runner = PredictRunner(workers=1, abandoned=self._abandoned)
        timeout = self.settings.predict_timeout_s if route.timeout is None else route.timeout
        t = time.perf_counter()
        try:
            preds, took = await self._shadow_runner.run(
                shadow,
                shape,
                rows,
                timeout,
                call=shadow.timed_run,
                grace=self.settings.predict_timeout_s,
                beside=route.versions_besides(shadow),
            )
        except Exception as exc:  # a failing shadow never affects clients; it is counted
            stats.candidate.error(time.perf_counter() - t)
            self._failed(shadow, exc)
            return
        stats.candidate.record(took, _first(preds))  # its own time, not its wait in the queue
        agreed = stats.compare(rid, served, preds)
        self.metrics.shadowed(shadow.name, shadow.label, agreed)
        log.debug(
            "shadow %s v%s request %s: served %r, shadow %r",
            shadow.name,
            shadow.version,
            rid,
            served,
            preds,
        )

    # -- labels ------------------------------------------------------------------------

    async def _feedback(self, scope: Scope, name: str, receive: Receive, send: Send) -> None:
        try:
            body = await self._body(scope, receive)
        except _TooLarge:
            await self._send(send, 413, self._too_large("send fewer labels per request"))
            return
        headers = dict(scope["headers"])  # labels move canary decisions: JSON only (CSRF)
        refused = unsupported_body(headers.get(b"content-type"), headers.get(b"content-encoding"))
        if refused is not None:
            await self._send(send, 415, refused)
            return
        try:
            payload = loads(body)
        except MalformedBody as exc:
            await self._send(send, 400, error_body("MALFORMED_JSON", str(exc), exc.field, exc.hint))
            return
        except InvalidInput as exc:  # a key given twice
            await self._send(send, 422, error_body(exc.code, exc.message, exc.field, exc.hint))
            return
        route = self.control.routes.get(name)
        if route is None:  # as for predict: labels for a model not served here match nothing
            await self._not_found(send, name)
            return
        try:
            labels = read_feedback(payload)
        except InvalidInput as exc:
            await self._send(send, 422, error_body(exc.code, exc.message, exc.field, exc.hint))
            return
        if route.stats is None:  # no rollout: nothing counts labels
            await self._send(send, 200, _feedback_counts(0, len(labels), 0))
            self.metrics.labels(name, "unmatched", len(labels))
            return
        # A request this worker does not remember may have been answered by another worker
        # or replica: its label is stored for them (before any label is scored here, so
        # that a failure to store leaves nothing half done for the client to send again).
        elsewhere = [item for item in labels if item[0] not in self._recent]
        here = [item for item in labels if item[0] in self._recent]
        if elsewhere:
            try:
                await asyncio.get_running_loop().run_in_executor(
                    None, self._relay.send, self.ctx.engine, name, route.revision, elsewhere
                )
            except SQLAlchemyError as exc:
                log.exception("storing labels for the other workers failed")
                await self._send(send, 503, _relay_failed(len(elsewhere), exc))
                return
        matched = sum(self._score(route, rid, row, label) for rid, row, label in here)
        unmatched = len(here) - matched
        await self._send(send, 200, _feedback_counts(matched, unmatched, len(elsewhere)))
        self.metrics.labels(name, "matched", matched)
        self.metrics.labels(name, "unmatched", unmatched)
        self.metrics.labels(name, "pending", len(elsewhere))

    def _score(self, route: Route, rid: str, row: int | None, label: Any) -> int:
        """Score one label against this worker's answer to ``rid``: 1 if it matched."""
        scored = self._recent.match(rid, route.name, route.revision, row, label)
        if scored is None or route.stats is None:
            return 0
        role, right = scored
        route.stats.role(role).label(right)
        return 1

    async def take_labels(self) -> int:
        """Score the labels other workers and replicas stored for the requests this worker
        answered (one poll), and delete them; then expire those no worker scored within
        the label horizon (see :meth:`expire_labels`). The number that matched.

        Example:
            >>> # await server.take_labels()  -> 3
        """
        routes = self.control.routes.values()
        revisions = [(r.name, r.revision) for r in routes if r.stats is not None]
        loop = asyncio.get_running_loop()
        engine = self.ctx.engine
        handed = (
            await loop.run_in_executor(None, self._relay.receive, engine, revisions)
            if revisions
            else []
        )
        matched = 0
        resolved: list[int] = []
        for id_, name, revision, rid, row, label in handed:
            route = self.control.routes.get(name)
            if route is None or route.revision != revision or rid not in self._recent:
                continue  # not this worker's answer: the one that gave it scores it
            resolved.append(id_)
            scored = self._score(route, rid, row, label)
            matched += scored
            self.metrics.labels(name, "matched" if scored else "unmatched", 1)
        if resolved:
            await loop.run_in_executor(None, self._relay.resolve, engine, resolved)
        await self.expire_labels()
        return matched

    async def expire_labels(self) -> int:
        """Delete the handed-off labels no worker scored within the label horizon, and say
        so: ``logged`` when this server logs predictions and the prediction log holds the
        request (then the label is stored for monitoring, where live performance joins it
        with that prediction), else ``expired`` - in ``loopline_feedback_labels_total``; the
        live window of the rollout they were sent for counts both in ``expired_labels``.
        The number expired or logged.

        Example:
            >>> # await server.expire_labels()  -> 2
        """
        loop = asyncio.get_running_loop()
        expired = await loop.run_in_executor(None, self._relay.expire, self.ctx.engine)
        if not expired:
            return 0
        logged: set[int] = set()
        if self._predlog is not None:
            logged = await loop.run_in_executor(None, self._log_expired, expired)
        for id_, name, revision, *_ in expired:
            outcome = "logged" if id_ in logged else "expired"
            self.metrics.labels(name, outcome, 1)
            route = self.control.routes.get(name)  # the rollout could score neither kind
            if route is not None and route.revision == revision and route.stats is not None:
                route.stats.expired_labels += 1
        log.info("%d label(s) expired, %d of them logged for monitoring", len(expired), len(logged))
        return len(expired)

    def _log_expired(self, expired: list[Any]) -> set[int]:
        if self._predlog is not None:
            self._predlog.flush()  # a prediction still queued here is in the log after this
        return log_expired(self.ctx, expired)

    async def _relay_labels(self) -> None:
        """Every poll interval, :meth:`take_labels` (while the server runs)."""
        while True:
            await asyncio.sleep(self.settings.poll_interval)
            try:
                await self.take_labels()
            except Exception:  # the loop must outlive a database hiccup; it is logged
                log.exception("reading the labels other workers passed on failed; retrying")


def _feedback_counts(matched: int, unmatched: int, pending: int) -> bytes:
    """The answer to ``/feedback``: labels scored here, not scorable, and passed on."""
    return orjson.dumps({"matched": matched, "unmatched": unmatched, "pending": pending})


def _relay_failed(n: int, exc: Exception) -> bytes:
    return error_body(
        "BACKEND_UNAVAILABLE",
        f"{n} label(s) for requests this worker did not answer could not be stored for the "
        f"other workers: {type(exc).__name__}",
        hint="send the labels again in a moment; none of this request's labels was scored",
    )


def with_host_check(app: ASGIApp, ctx: Context) -> ASGIApp:
    """``app`` answering only the Host names its settings allow (``LOOPLINE_ALLOWED_HOSTS``,
    :mod:`loopline.core.hosts`): a 403 for any other, against DNS rebinding.

    Example:
        >>> # uvicorn.run(with_host_check(ModelServer(ctx), ctx), port=8080)
    """
    hosts = AllowedHosts.parse(ctx.settings.allowed_hosts)
    return protect(app, hosts, _host_refused)


def _host_refused(path: str, message: str, hint: str) -> ASGIApp:
    body = error_body("PERMISSION_DENIED", message, field="Host", hint=hint)

    async def refuse(scope: Scope, receive: Receive, send: Send) -> None:
        await ModelServer._send(send, 403, body)

    return refuse


def create_app() -> ASGIApp:
    """The app factory uvicorn calls in each worker (settings from the environment).

    Example:
        >>> # uvicorn.run("loopline.serving.app:create_app", factory=True, workers=4)
    """
    server = ModelServer()
    return with_host_check(server, server.ctx)
