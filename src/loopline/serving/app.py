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
``Content-Type: application/json`` a 415 (:func:`~.server_base.unsupported_body`, against
CSRF). A model deployed here whose versions failed to load is a 503 naming the error.

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
(:class:`~loopline.serving.model_rejection.ModelRejected`), judged the same way, and the stable
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
import logging
import sys

import orjson

from loopline.core.context import Context
from loopline.core.hosts import AllowedHosts, protect
from loopline.serving.feedback_endpoint import FeedbackEndpoint
from loopline.serving.predict_endpoint import PredictEndpoint
from loopline.serving.server_base import ASGIApp, Receive, Scope, Send, error_body

log = logging.getLogger("loopline.serving")
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


class ModelServer(PredictEndpoint, FeedbackEndpoint):
    """The ASGI app: routes prediction requests to the loaded deployment versions."""

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
