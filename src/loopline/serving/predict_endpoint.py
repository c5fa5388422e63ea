"""The model server's predict endpoint: ``POST /v1/models/{name}/predict``.

:class:`PredictEndpoint` reads and checks a request, picks the version that answers it
(the stable version or a candidate: :mod:`loopline.serving.router`), calls it within its
timeout (:mod:`loopline.serving.timeouts`), lets the stable or the fallback version
answer when that one fails, queues the request for the prediction log, answers, and then
mirrors the request to a shadow version. A module of its own: it is the request path, and
which version answers, what counts against a canary and which error the client gets are
one concern; the lifecycle and the routing are in :mod:`loopline.serving.app`.

Example:
    >>> str(ModelFailed.__doc__)
    'No version could answer: the last one raised or timed out.'
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson

from loopline.core.columns import MAX_REQUEST_ID_CHARS
from loopline.errors import InvalidInput
from loopline.serving.body_json import MalformedBody, loads
from loopline.serving.inputs import parse
from loopline.serving.model_rejection import ModelRejected
from loopline.serving.router import Route, ServedModel
from loopline.serving.server_base import (
    Receive,
    Scope,
    Send,
    ServerBase,
    _TooLarge,
    error_body,
    unsupported_body,
)
from loopline.serving.timeouts import PredictRunner, PredictTimeout

log = logging.getLogger("loopline.serving")
#: Mirrored requests waiting for or running on the shadow thread; beyond it a request is
#: not mirrored (counted in loopline_shadow_skipped_total): a shadow slower than the
#: traffic must cost the server neither memory nor answers.
SHADOW_BACKLOG = 64


class ModelFailed(Exception):
    """No version could answer: the last one raised or timed out."""

    def __init__(self, model: ServedModel, cause: BaseException) -> None:
        super().__init__(
            f"version {model.version} of {model.name!r} failed: {type(cause).__name__}: {cause}"
        )
        self.model = model
        self.cause = cause
        self.timed_out = isinstance(cause, TimeoutError)


#: On an answer given by another version than the one picked (the fallback for the stable
#: version, the stable version for a candidate): the version that failed.
FALLBACK_HEADER = b"x-loopline-fallback-for"


def _first(preds: list[Any]) -> Any:
    return preds[0] if preds else None


class PredictEndpoint(ServerBase):
    """The predict endpoint of the model server (see the module)."""

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
