"""The model server's control loop: keep the routes in step with the store, judge canaries.

Every ``poll_interval`` seconds a background thread:

1. reads each deployment's revision (one small query); for a changed one it loads any
   model version not loaded yet, builds a new :class:`~loopline.serving.router.Route`
   and swaps the routes dict in one assignment - requests never wait for a load and none
   is dropped; a version that fails to load leaves the previous route serving and the
   error shows in ``/health``;
2. writes this worker's counters of every rollout to ``canary_windows``;
3. judges the current step of every canary on the counters of all workers and replicas
   and, when the window says pass or fail, moves the deployment to its next step,
   promotes it or rolls it back - a compare-and-set on the revision, so among many
   workers exactly one decision is written - with the analysis and the reason recorded
   and audited. A canary that passed its last step is promoted only if its stored files
   are still intact (:func:`loopline.training.registry_reads.verify`); otherwise it is rolled
   back with the file named in the reason. A rollback checks nothing: the stable version
   it leaves serving is the one already answering from memory.

Example:
    >>> # control = Controller(ctx, worker="host-1"); control.refresh(); control.routes
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from typing import Any

from sqlalchemy.exc import DBAPIError

from loopline.core.context import Context
from loopline.core.db import driver_reason, reading, shown_url
from loopline.core.db_retry import is_transient
from loopline.errors import BackendUnavailable, IntegrityError, InvalidInput, NotFound
from loopline.serving import store
from loopline.serving.canary import Analysis, WindowStats, analyse
from loopline.serving.policy import RolloutPolicy
from loopline.serving.router import Route, ServedModel
from loopline.serving.store import Deployment

log = logging.getLogger("loopline.serving")
#: A waiting step's status is written at most this often (seconds).
STATUS_EVERY = 5.0
#: A revision whose models failed to load is tried again after this many seconds.
RETRY_LOAD_AFTER = 30.0


def parse_selection(models: list[str]) -> tuple[set[str] | None, dict[str, str]]:
    """Split ``--model`` values into deployment names to follow and pinned model URIs.

    ``NAME`` or ``models:/NAME`` follows the deployment of NAME (the form ``loopline
    package models:/NAME`` writes into the image); ``models:/NAME/VERSION`` or
    ``models:/NAME@ALIAS`` serves that version (an alias is followed as it moves).

    Example:
        >>> parse_selection(["models:/churn", "models:/fraud@champion"])
        ({'churn'}, {'fraud': 'champion'})
    """
    names: set[str] = set()
    pins: dict[str, str] = {}
    for spec in models:
        if spec.startswith("models:/"):
            rest = spec.removeprefix("models:/").strip("/")
            if rest and "@" not in rest and "/" not in rest:
                names.add(rest)
                continue
            from loopline.training.registry_reads import parse_uri

            name, ref = parse_uri(spec)
            pins[name] = str(ref)
        else:
            names.add(spec)
    if names:
        return names, pins
    return (set() if pins else None), pins


def check_selection(models: list[str]) -> dict[str, int]:
    """Check ``--model`` values before the server starts; the version each pin serves now.

    A malformed value is an :class:`InvalidInput`, a pinned version or alias that does not
    exist a :class:`NotFound` - raised here, so ``loopline serve`` stops with one line
    before it listens instead of failing inside the server's startup.

    Example:
        >>> # check_selection(["churn", "models:/fraud@champion"])  -> {'fraud': 7}
    """
    from loopline.training import registry_reads

    _, pins = parse_selection(models)
    return {name: registry_reads.get(name, ref).version for name, ref in pins.items()}


def undeployed(models: list[str]) -> tuple[list[str], list[str]]:
    """The deployments ``--model`` follows that do not exist yet, and those that do.

    Without ``--model`` the server follows every deployment: none at all is reported as
    ``["*"]``. A server whose names are all undeployed answers 404 to every prediction
    (and 200 on ``/health``) until one is deployed, which is right for a replica started
    before the first deploy but is also what a typo (``-m chrun``) looks like.

    Example:
        >>> # undeployed(["chrun"]) -> (['chrun'], ['churn'])
    """
    from loopline.serving.deploy import list_deployments

    names, _ = parse_selection(models)
    deployed = sorted(d.name for d in list_deployments())
    if names is None:
        return ([] if deployed else ["*"]), deployed
    return sorted(names - set(deployed)), deployed


class Controller:
    """Owns the routes of one model-server worker and keeps them current."""

    def __init__(
        self,
        ctx: Context,
        *,
        worker: str,
        models: list[str] | None = None,
        poll_interval: float = 1.0,
        native_threads: int = 1,
    ) -> None:
        self.ctx = ctx
        self.worker = worker
        self.poll_interval = poll_interval
        self.native_threads = native_threads
        self.names, self.pins = parse_selection(models or [])
        self.routes: dict[str, Route] = {}
        self.errors: dict[str, str] = {}
        self._models: dict[tuple[str, int], ServedModel] = {}
        self._status_at: dict[str, float] = {}
        self._failed: dict[str, tuple[int, float]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.actor = f"loopline-serve:{worker}"
        self._outage = False  # the metadata database stopped answering; said once

    # -- loading -----------------------------------------------------------------------

    def _model(self, name: str, version: int) -> ServedModel:
        key = (name, version)
        found = self._models.get(key)
        if found is None:
            from loopline.training import registry_reads

            loaded = registry_reads.load(f"models:/{name}/{version}")
            found = self._models[key] = ServedModel(
                loaded, name, version, threads=self.native_threads
            )
        return found

    def _build(self, d: Deployment) -> Route | None:
        failed = self._failed.get(d.name)
        if failed is not None and failed[0] == d.revision and time.monotonic() < failed[1]:
            return None  # this revision failed to load a moment ago; retried later
        try:
            models = {v: self._model(d.name, v) for v in d.versions()}
        except Exception as exc:  # any failure to load keeps the old route; shown in /health
            log.exception("cannot load a version of %s (revision %s)", d.name, d.revision)
            self.errors[d.name] = f"revision {d.revision}: {type(exc).__name__}: {exc}"
            self._failed[d.name] = (d.revision, time.monotonic() + RETRY_LOAD_AFTER)
            return None
        self.errors.pop(d.name, None)
        self._failed.pop(d.name, None)
        return Route(d, models)

    def _pinned(self, name: str, ref: str) -> Deployment:
        from loopline.training import registry_reads

        version = registry_reads.get(name, int(ref) if ref.isdigit() else ref).version
        return Deployment.new(name, "direct", version, RolloutPolicy())

    def refresh(self) -> None:
        """Poll once: reload changed deployments, flush counters, judge canaries.

        Example:
            >>> # controller.refresh()
        """
        engine = self.ctx.engine
        revs = store.revisions(engine) if self.names != set() else {}
        if self.names:
            revs = {n: r for n, r in revs.items() if n in self.names}
        current = self.routes
        new: dict[str, Route] | None = None
        for name in [n for n in current if n not in revs and n not in self.pins]:
            new = new if new is not None else dict(current)
            del new[name]
        for name, rev in revs.items():
            if name in self.pins or (name in current and current[name].revision == rev):
                continue
            with reading(engine) as conn:
                d = store.get(conn, name)
            route = None if d is None else self._build(d)
            if route is not None:
                new = new if new is not None else dict(current)
                new[name] = route
        for name, ref in self.pins.items():
            try:
                d = self._pinned(name, ref)
            except (InvalidInput, NotFound) as exc:  # e.g. the alias was deleted meanwhile
                self.errors[name] = str(exc)
                continue
            old = current.get(name)
            if old is None or old.stable.version != d.stable_version:
                route = self._build(d)
                if route is not None:
                    new = new if new is not None else dict(current)
                    new[name] = route
        if new is not None:
            self.routes = new  # one assignment: requests see the old or the new dict
            used = {(r.name, v) for r in new.values() for v in r.deployment.versions()}
            self._models = {k: m for k, m in self._models.items() if k in used}
        self._flush_and_judge()

    # -- canary analysis ---------------------------------------------------------------

    def _flush_and_judge(self) -> None:
        engine = self.ctx.engine
        for route in list(self.routes.values()):
            if route.stats is None or route.revision <= 0:
                continue
            store.put_window(engine, route.name, route.revision, self.worker, route.stats.to_json())
            if route.analysed:
                self._judge(route)

    def _judge(self, route: Route) -> None:
        d = route.deployment
        merged = WindowStats.merge(store.get_windows(self.ctx.engine, d.name, d.revision))
        result = analyse(d.policy, merged, time.time() - d.step_started)
        if result.decision == "wait":
            last = self._status_at.get(d.name, 0.0)
            if time.monotonic() - last >= STATUS_EVERY:
                self._status_at[d.name] = time.monotonic()
                store.set_status(self.ctx.engine, d.name, d.revision, result.reason)
            return
        after, action = next_state(d, result)
        if action == "canary.promote" and d.candidate_version is not None:
            broken = _unloadable(d.name, d.candidate_version)
            if broken is not None:  # it would serve everything, yet no new server loads it
                result = replace(
                    result,
                    decision="fail",
                    reason=f"version {d.candidate_version} passed, but its files failed "
                    f"verification before promotion: {broken}",
                )
                after, action = next_state(d, result)
        written = store.save(
            self.ctx,
            d,
            after,
            action=action,
            reason=result.reason,
            actor=self.actor,
            analysis=result.to_dict(),
        )
        if written is None:
            return  # another worker decided first; the next poll picks its revision up
        # the new route first: requests keep following the old one until it is installed
        rebuilt = self._build(written)
        if rebuilt is not None:
            self.routes = {**self.routes, d.name: rebuilt}
        log.warning("%s: %s (%s)", d.name, action, result.reason)
        store.prune_windows(self.ctx.engine, d.name, written.revision - 10)

    # -- the thread --------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_interval):
            self.poll()

    def poll(self) -> None:
        """:meth:`refresh`, never raising: the loop must outlive a database outage.

        An outage (the database restarting, unreachable) is one warning line when it begins
        and one when the database answers again - the routes keep serving meanwhile - not
        a traceback per poll. Any other failure is logged with its traceback.

        Example:
            >>> # controller.poll()
        """
        try:
            self.refresh()
        except (DBAPIError, BackendUnavailable) as exc:
            # the driver's error, or the one Loopline made of it (a SQLite lock held too long)
            cause = exc if isinstance(exc, DBAPIError) else exc.__cause__
            if not isinstance(cause, DBAPIError) or not (
                isinstance(exc, BackendUnavailable) or is_transient(self.ctx.engine, cause)
            ):
                log.exception("refreshing the deployments failed; retrying")
                return
            if not self._outage:
                said = exc if isinstance(exc, BackendUnavailable) else None
                reason = said.message if said is not None else driver_reason(cause)
                log.warning(
                    "the metadata database %s does not answer (%s): serving the current "
                    "deployments, asking again every %g s",
                    shown_url(self.ctx.engine),
                    reason,
                    self.poll_interval,
                )
            self._outage = True
        except Exception:
            log.exception("refreshing the deployments failed; retrying")
        else:
            if self._outage:
                log.warning("the metadata database %s answers again", shown_url(self.ctx.engine))
            self._outage = False

    def start(self) -> None:
        """Start polling in a daemon thread.

        Example:
            >>> # controller.start()
        """
        self._thread = threading.Thread(
            target=self._loop, name="loopline-serve-control", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop polling and write the counters one last time.

        Example:
            >>> # controller.stop()
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for route in list(self.routes.values()):
            if route.stats is not None and route.revision > 0:
                store.put_window(
                    self.ctx.engine, route.name, route.revision, self.worker, route.stats.to_json()
                )

    def unavailable(self) -> list[str]:
        """The deployments with no loadable version here (their load failed, no older route
        serves them): ``/health`` is 503 while there is one.

        Example:
            >>> # controller.unavailable()  -> ['fraud']
        """
        routes = self.routes
        # A copy first (one C call): the poller may change the dict while a request reads.
        return sorted(n for n in list(self.errors) if n not in routes)

    def describe_model(self, name: str) -> dict[str, Any] | None:
        """What ``name`` serves and its ``load_error`` (None when its newest revision loaded;
        else the error, while an older revision serves); None when it is not served here.

        Example:
            >>> # controller.describe_model("churn")["stable"]  -> 3
        """
        route = self.routes.get(name)
        if route is None:
            return None
        return {**route.describe(), "load_error": self.errors.get(name)}

    def describe(self) -> dict[str, dict[str, Any]]:
        """Every deployment of this server by name (``GET /v1/models``): what each serves and
        its ``load_error``; one that could not be loaded at all is ``{"name",
        "phase": "unavailable", "load_error"}``.

        Example:
            >>> # controller.describe()["churn"]["stable"]  -> 3
        """
        errors = dict(self.errors)
        found: dict[str, dict[str, Any]] = {
            n: {**r.describe(), "load_error": errors.get(n)} for n, r in self.routes.items()
        }
        for n in self.unavailable():
            found[n] = {"name": n, "phase": "unavailable", "load_error": errors.get(n)}
        return dict(sorted(found.items()))


def _unloadable(name: str, version: int) -> str | None:
    """Why the files of ``version`` could not be loaded now (corrupted or missing since it
    was deployed), or None when they are intact.

    The canary's copy in memory was verified when it was loaded; the promotion makes it
    the version every server restarted or added later loads, so its stored files are
    checked again (read and hashed once, on this background thread).
    """
    from loopline.training import registry_reads

    try:
        registry_reads.verify(name, version)
    except (IntegrityError, InvalidInput) as exc:
        return exc.message
    return None


def next_state(d: Deployment, result: Analysis) -> tuple[Deployment, str]:
    """The deployment after a judged canary step, and the action name.

    Example:
        >>> # next_state(d, Analysis("pass", "4/4 checks passed")) -> (d at the next step, ..)
    """
    now = time.time()
    steps = d.policy.steps
    pct = f"{d.traffic:g}%"
    if result.decision == "fail":
        return d.replace(
            candidate_version=None,
            traffic=0.0,
            step=0,
            step_started=now,
            status=f"rolled back canary of version {d.candidate_version} at {pct}: {result.reason}",
        ), "canary.rollback"
    nxt = d.step + 1
    if nxt < len(steps) and steps[nxt] < 100:
        return d.replace(
            traffic=steps[nxt],
            step=nxt,
            step_started=now,
            status=f"step {nxt + 1}/{len(steps)}: {steps[nxt]:g}% after passing {pct}",
        ), "canary.step"
    return d.replace(
        stable_version=d.candidate_version or d.stable_version,
        standby_version=d.stable_version,
        candidate_version=None,
        traffic=0.0,
        step=0,
        step_started=now,
        status=f"promoted version {d.candidate_version} to 100% after passing {pct}",
    ), "canary.promote"
