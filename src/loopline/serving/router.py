"""The router: which loaded model version answers a request, and who else hears it.

A :class:`Route` is an immutable snapshot of one deployment revision with its models
loaded; the model server swaps a whole new dict of routes in one assignment when a
deployment changes, so a request in flight finishes on the snapshot it started with.

:meth:`Route.pick` is on every request: without a candidate it returns the stable version;
with one (A/B, canary) it sends ``traffic`` percent of requests to it - by a CRC32 hash of
the request key when there is one (sticky: the same key, the same side), else at random.
A shadow candidate is never picked; the server mirrors requests to it after answering.

Example:
    >>> # route = Route(deployment, {3: ServedModel(m3), 4: ServedModel(m4)})
    >>> # model, is_candidate = route.pick(b"user-7")
"""

from __future__ import annotations

import random
import time
import zlib
from typing import Any

from loopline.serving.canary import WindowStats, errors_fail_window
from loopline.serving.model_rejection import rejected_by_model
from loopline.serving.model_rows import as_fitted_frame, as_positional, as_records
from loopline.serving.store import Deployment
from loopline.training import native_threads

#: Traffic is split in 1/10,000ths.
_SCALE = 10_000


class ServedModel:
    """A loaded model version and the one call the request path makes on it."""

    __slots__ = (
        "fitted",
        "label",
        "loaded",
        "name",
        "names",
        "predict",
        "threads",
        "types",
        "version",
        "width",
    )

    def __init__(self, loaded: Any, name: str, version: int, threads: int = 0) -> None:
        self.loaded = loaded
        self.name = name
        self.version = version
        #: Native threads one prediction may use (0: the libraries' default, all cores).
        self.threads = threads
        if threads:  # the model's library may have loaded its own OpenMP runtime
            native_threads.refresh()
        self.label = str(version)
        signature = loaded.signature
        #: The columns the model takes, in its order (the signature's, else those it was
        #: fitted on; None when nothing records them), found once here: asking the model's
        #: library on every request would cost the hot path.
        self.names: list[str] | None = loaded.input_columns
        #: Known only by the columns it was fitted on: no signature checks the rows, so
        #: they are selected and ordered here (a model given another order raised, a 500,
        #: or - LightGBM - predicted on the wrong columns).
        self.fitted = signature is None and self.names is not None
        #: Fitted on unnamed columns (their count known, their names not): rows must come
        #: as lists, by position, as named ones would be scored in the order sent.
        self.width: int | None = None if self.names is not None else loaded.input_width
        #: The columns' types, for the prediction log to store each value as the model took it.
        self.types: list[str] | None = (
            None if signature is None else [c.type for c in signature.inputs]
        )
        self.predict = loaded.predict

    def run(self, shape: str, rows: Any) -> list[Any]:
        """Validate ``rows`` against the signature (or, without one, select the columns the
        model was fitted on), predict, return plain Python values. A model without a
        signature that raises on text (an array, an object) in a column is a
        :class:`~loopline.serving.model_rejection.ModelRejected` naming the column.

        Example:
            >>> # served.run("records", [{"x": 1.0}]) -> [0]
        """
        if self.fitted:
            assert self.names is not None
            records = as_fitted_frame(shape, rows, self.names)
        elif self.width is not None:
            records = as_positional(shape, rows, self.width)
        else:
            records = as_records(shape, rows, self.names)
        try:
            if self.threads:
                with native_threads.limited(self.threads):
                    out = self.predict(records)
            else:
                out = self.predict(records)
        except Exception as exc:
            # Without a signature nothing checked the values: text where the model reads
            # numbers made it raise, a 500 for the client's mistake. That is a 422 naming
            # the column now; with a signature the types were checked, so what the model
            # raises is its own failure, as is any raise on numbers alone.
            rejected = (
                None if self.types is not None else rejected_by_model(exc, shape, rows, self.names)
            )
            if rejected is None:
                raise
            raise rejected from exc
        return out.tolist() if hasattr(out, "tolist") else list(out)

    def timed_run(self, shape: str, rows: Any) -> tuple[list[Any], float]:
        """:meth:`run` and the seconds it took (measured where it runs, queueing excluded).

        Example:
            >>> # served.timed_run("records", [{"x": 1.0}]) -> ([0], 0.0003)
        """
        t = time.perf_counter()
        out = self.run(shape, rows)
        return out, time.perf_counter() - t


class Route:
    """One deployment revision with its models: who answers, who hears, what is counted."""

    __slots__ = (
        "analysed",
        "candidate",
        "deployment",
        "fallback",
        "name",
        "policy",
        "revision",
        "shadow",
        "stable",
        "stats",
        "threshold",
        "timeout",
    )

    def __init__(self, deployment: Deployment, models: dict[int, ServedModel]) -> None:
        d = deployment
        self.deployment = d
        self.name = d.name
        self.revision = d.revision
        self.stable = models[d.stable_version]
        other = models[d.candidate_version] if d.candidate_version is not None else None
        phase = d.phase
        self.candidate = other if phase in ("ab", "canary") else None
        self.shadow = other if phase == "shadow" else None
        self.fallback = (
            models[d.fallback_version]
            if d.fallback_version is not None and d.fallback_version != d.stable_version
            else None
        )
        self.threshold = d.traffic / 100 * _SCALE
        self.timeout = None if d.policy.timeout_ms is None else d.policy.timeout_ms / 1000
        self.stats: WindowStats | None = None if phase == "stable" else WindowStats()
        self.analysed = phase == "canary"
        self.policy = d.policy

    def pick(self, key: str | None) -> tuple[ServedModel, bool]:
        """The version that answers, and whether it is the candidate.

        Example:
            >>> # route.pick("user-7") -> (served_model, True)
        """
        candidate = self.candidate
        if candidate is None or (self.analysed and self.window_closed()):
            return self.stable, False
        if key is None:
            hit = random.random() * _SCALE < self.threshold
        else:
            hit = zlib.crc32(key.encode()) % _SCALE < self.threshold
        return (candidate, True) if hit else (self.stable, False)

    def window_closed(self) -> bool:
        """Whether this canary step has seen enough to be judged (its full window of candidate
        requests, or significantly more errors than the window allows: see
        :func:`~loopline.serving.canary.errors_fail_window`): until the controller writes its
        decision, the candidate gets no more traffic, so a failing canary is rolled back
        within one window however late the next poll comes.

        Example:
            >>> # route.window_closed()  -> True once 50 of a 50-request window were served
        """
        assert self.stats is not None
        c = self.stats.candidate
        if c.requests >= self.policy.window_requests:
            return True
        return errors_fail_window(self.policy, self.stats.stable, c)

    def versions_besides(self, model: ServedModel) -> tuple[ServedModel, ...]:
        """The other versions this route may call besides ``model`` (stable, candidate,
        shadow, fallback): whose calls abandoned at their timeout excuse a late call of
        ``model`` (see :mod:`loopline.serving.timeouts`).

        Example:
            >>> # route.versions_besides(route.stable)  -> (candidate,)
        """
        versions = (self.stable, self.candidate, self.shadow, self.fallback)
        return tuple(m for m in versions if m is not None and m is not model)

    def describe(self) -> dict[str, Any]:
        """What this route serves (for ``GET /v1/models``).

        Example:
            >>> # route.describe()["stable"]  -> 3
        """
        d = self.deployment
        return {
            "name": self.name,
            "revision": self.revision,
            "strategy": d.strategy,
            "phase": d.phase,
            "stable": d.stable_version,
            "candidate": d.candidate_version,
            "traffic": d.traffic,
            "fallback": d.fallback_version,
            "inputs": self.stable.names,
        }
