"""The model server's label endpoint (``POST /v1/models/{name}/feedback``) and relay loop.

:class:`FeedbackEndpoint` scores a label against this worker's answer to its request (the
live window of the rollout counts it), stores the labels of requests that other workers
or replicas answered for them, takes theirs every poll interval, and expires those no
worker scored within the label horizon (logged for monitoring when the prediction log
holds the request). The bookkeeping it uses - the answers remembered, the relay table, a
label body read and checked - is :mod:`loopline.serving.feedback`; this module is the
endpoint and its loop on the server.

Example:
    >>> _feedback_counts(2, 0, 1)
    b'{"matched":2,"unmatched":0,"pending":1}'
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from sqlalchemy.exc import SQLAlchemyError

from loopline.errors import InvalidInput
from loopline.serving.body_json import MalformedBody, loads
from loopline.serving.feedback import log_expired, read_feedback
from loopline.serving.router import Route
from loopline.serving.server_base import (
    Receive,
    Scope,
    Send,
    ServerBase,
    _TooLarge,
    error_body,
    unsupported_body,
)

log = logging.getLogger("loopline.serving")


class FeedbackEndpoint(ServerBase):
    """The label endpoint of the model server and its relay loop (see the module)."""

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
