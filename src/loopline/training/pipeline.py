"""Pipelines of cached, retryable steps: ``@ll.step``, ``@ll.pipeline``, resume.

A pipeline is a function that calls steps. Calling a step inside it runs nothing and
returns a handle (see :mod:`loopline.training.steps`); the graph comes from which handles
are passed to which steps. Running the pipeline then runs the steps on an executor
(:mod:`loopline.training.executors`), independent steps side by side, each one skipped when
the cache has its output (:mod:`loopline.training.cache`), retried with backoff when it
raises (:mod:`loopline.training.worker`), its output stored as a typed artifact
(:mod:`loopline.training.outputs`). Every pipeline run is a tracked run; every executed
step a child run of it (:mod:`loopline.training.runner`).

A run whose steps failed returns a :class:`PipelineResult` with ``status == "failed"``
(independent branches have finished); :meth:`PipelineResult.raise_for_status` raises.
:func:`resume` reruns only the failed and skipped steps of a run.

Example:
    >>> import tempfile, loopline as ll
    >>> _ = ll.init(uri="sqlite:///:memory:", artifacts=tempfile.mkdtemp())
    >>> @ll.step
    ... def load(n: int) -> list[int]:
    ...     return list(range(n))
    >>> @ll.step(retries=2, retry_delay=1.0)
    ... def total(xs: list[int]) -> int:
    ...     return sum(xs)
    >>> @ll.pipeline
    ... def stats(n: int = 10) -> None:
    ...     total(load(n))
    >>> result = stats.run({"n": 5}, executor="local")
    >>> result.status, result.output("total")
    ('finished', 10)
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable, Mapping
from typing import Any, Generic, ParamSpec, overload

from loopline.core.artifacts import ArtifactStore
from loopline.core.context import Context, get_context
from loopline.errors import InvalidInput, LooplineError, NotFound
from loopline.training import pipeline_store, reproduce_record
from loopline.training.executor_checks import check_executor_name, check_importable
from loopline.training.executors import Executor, get_executor
from loopline.training.outputs import load_value
from loopline.training.pipeline_store import PipelineRecord, StepRecord
from loopline.training.runner import (
    PIPELINE_TAG,
    EventFn,
    Reused,
    Runner,
    StepEvent,
    build_graph,
    display,
    param_text,
)
from loopline.training.steps import (
    Graph,
    GraphBuilder,
    Spec,
    is_building,
    resolve_target,
    step,
)
from loopline.training.worker import current_step, materialize

P = ParamSpec("P")

__all__ = [
    "Pipeline",
    "PipelineFailed",
    "PipelineResult",
    "StepEvent",
    "current_step",
    "get_pipeline_run",
    "list_pipeline_runs",
    "pipeline",
    "resume",
    "step",
]


class PipelineFailed(LooplineError):
    """A pipeline run ended FAILED; the message names the failed steps and their errors."""


class PipelineResult:
    """What a pipeline run did: its status, and each step's status, attempts and output.

    Example:
        >>> # r = train.run(); r.status, r.steps["fit"].attempts, r.output("fit")
    """

    def __init__(self, record: PipelineRecord, store: ArtifactStore) -> None:
        self.record = record
        self._store = store

    @property
    def run_id(self) -> str:
        """The id of the pipeline run (also the id of its tracked run).

        Example:
            >>> # ll.get_run(result.run_id).status  -> 'FINISHED'
        """
        return self.record.id

    @property
    def pipeline(self) -> str:
        """The pipeline's name.

        Example:
            >>> # result.pipeline  -> 'train'
        """
        return self.record.pipeline

    @property
    def status(self) -> str:
        """``finished``, ``failed`` or (while it runs) ``running``.

        Example:
            >>> # result.status  -> 'finished'
        """
        return self.record.status

    @property
    def steps(self) -> dict[str, StepRecord]:
        """Each step's record (status, attempts, cache key, output, error, run id), in order.

        Example:
            >>> # result.steps["fit"].attempts  -> 1
        """
        return self.record.steps

    def output(self, step_name: str) -> Any:
        """Load the stored output of a step (finished or cached).

        Example:
            >>> # df = result.output("load")
        """
        rec = self.record.steps.get(step_name)
        if rec is None:
            raise NotFound(
                f"pipeline run {self.run_id} has no step {step_name!r}",
                hint="steps: " + ", ".join(self.record.steps),
            )
        if rec.output is None:
            raise NotFound(
                f"step {step_name!r} of pipeline run {self.run_id} has no output "
                f"(status {rec.status})",
                hint=f"resume the run: loopline pipeline resume {self.run_id}",
            )
        return load_value(rec.output, self._store)

    def summary(self) -> dict[str, Any]:
        """``{"run_id", "status", "steps": {name: {"status", "attempts"}}}`` (``--json``).

        Example:
            >>> # result.summary()["steps"]["fit"] -> {"status": "finished", "attempts": 1}
        """
        return {
            "run_id": self.run_id,
            "status": self.status,
            "steps": {
                name: {"status": s.status, "attempts": s.attempts}
                for name, s in self.record.steps.items()
            },
        }

    def raise_for_status(self) -> PipelineResult:
        """Return self when the run finished; raise :class:`PipelineFailed` when it failed.

        Example:
            >>> # train.run().raise_for_status().output("fit")
        """
        failed = [s for s in self.record.steps.values() if s.status == "failed"]
        if self.status != "failed" and not failed:
            return self
        details = "; ".join(
            f"step {s.name!r} failed after {s.attempts} attempt(s): "
            + (s.error or "").strip().splitlines()[0]
            for s in failed
        )
        raise PipelineFailed(
            f"pipeline {self.pipeline!r} run {self.run_id} failed: {details or 'interrupted'}",
            hint=f"fix the step, then rerun only what failed: loopline pipeline resume "
            f"{self.run_id}",
        )

    def __repr__(self) -> str:
        return f"<PipelineResult {self.pipeline} {self.run_id} {self.status}>"


class Pipeline(Generic[P]):
    """A function of steps made a pipeline by :func:`pipeline`; run it with :meth:`run`.

    Calling it runs it on the local executor with the call's arguments as params.

    Example:
        >>> # result = train(n=100)           # local executor
        >>> # result = train.run({"n": 100}, executor="process")
    """

    def __init__(
        self, fn: Callable[P, Any], *, name: str | None = None, experiment: str | None = None
    ) -> None:
        self.fn = fn
        self.name: str = name or str(getattr(fn, "__name__", "pipeline"))
        self.experiment = experiment
        functools.update_wrapper(self, fn)

    @property
    def target(self) -> str:
        """``module:qualname``, by which :func:`resume` and the CLI import the pipeline.

        Example:
            >>> # train.target  -> 'myproject.pipelines:train'
        """
        return f"{self.fn.__module__}:{self.fn.__qualname__}"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> PipelineResult:
        bound = self._bind(args, kwargs)
        return self.run(bound.arguments)

    def _bind(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> inspect.BoundArguments:
        try:
            bound = inspect.signature(self.fn).bind(*args, **kwargs)
        except TypeError as exc:
            raise InvalidInput(
                f"pipeline {self.name!r}: {exc}",
                field="params",
                hint="params: " + ", ".join(inspect.signature(self.fn).parameters) or "none",
            ) from exc
        bound.apply_defaults()
        return bound

    def run(
        self,
        params: Mapping[str, Any] | None = None,
        *,
        executor: str | Executor = "local",
        max_workers: int | None = None,
        experiment: str | None = None,
        on_event: EventFn | None = None,
        cache: bool = True,
        tags: Mapping[str, str] | None = None,
    ) -> PipelineResult:
        """Run the pipeline with ``params`` on ``executor`` (``local``, ``process``, ``ray``).

        Returns when every step has settled; a failed run returns with ``status ==
        "failed"`` (see :meth:`PipelineResult.raise_for_status`). ``on_event`` is called
        in this thread each time a step starts or settles. ``cache=False`` runs every step
        even when the step cache has its output (a reproduction must recompute); ``tags``
        are added to the pipeline's run.

        Example:
            >>> # train.run({"n": 100}, executor="process").raise_for_status()
        """
        return self._run(
            dict(params or {}),
            executor,
            max_workers,
            experiment,
            on_event,
            use_cache=cache,
            extra_tags=tags,
        )

    def _run(
        self,
        params: dict[str, Any],
        executor: str | Executor,
        max_workers: int | None,
        experiment: str | None,
        on_event: EventFn | None,
        reuse: dict[str, Reused] | None = None,
        resumed_from: str | None = None,
        *,
        use_cache: bool = True,
        extra_tags: Mapping[str, str] | None = None,
    ) -> PipelineResult:
        if is_building():
            raise InvalidInput(
                f"pipeline {self.name!r} was called inside another pipeline",
                field="pipeline",
                hint="pipelines do not nest; call its steps from the outer pipeline instead",
            )
        executor_name = check_executor_name(executor)
        bound = self._bind((), params)
        ctx = get_context()
        graph = build_graph(self.fn, (bound.args, bound.kwargs), ctx)
        specs = GraphBuilder(ctx.artifacts)
        stored = {k: specs.spec(v, [], where=f"param {k!r}") for k, v in bound.arguments.items()}
        tags = {
            **(extra_tags or {}),
            PIPELINE_TAG: self.name,
            f"{PIPELINE_TAG}.target": self.target,
            f"{PIPELINE_TAG}.executor": executor_name,
            **reproduce_record.entry_tags(self.target),
        }
        if resumed_from:
            tags[f"{PIPELINE_TAG}.resumed_from"] = resumed_from
        ex = get_executor(executor, max_workers)
        try:
            _check_timeouts(graph, ex)
            if ex.remote:
                for node in graph.nodes.values():
                    check_importable(node.step, allow_main=ex.name != "ray")
            return self._track(
                ctx,
                graph,
                ex,
                stored,
                tags,
                experiment,
                on_event,
                reuse,
                resumed_from,
                use_cache,
            )
        finally:
            if ex is not executor:  # close only what this call opened
                ex.close()

    def _track(
        self,
        ctx: Context,
        graph: Graph,
        ex: Executor,
        stored: dict[str, Spec],
        tags: dict[str, str],
        experiment: str | None,
        on_event: EventFn | None,
        reuse: dict[str, Reused] | None,
        resumed_from: str | None,
        use_cache: bool,
    ) -> PipelineResult:
        from loopline.tracking.api import start_run
        from loopline.tracking.run_handle import ERROR_TAG

        with start_run(
            experiment=experiment or self.experiment or self.name, name=self.name, tags=tags
        ) as run:
            # What `loopline reproduce` needs beyond the run's tags: a dirty tree's diff.
            reproduce_record.record_code(run)
            if stored:
                run.log_params({k: param_text(display(s)) for k, s in stored.items()})
            record = PipelineRecord(
                run.id,
                self.name,
                self.target,
                stored,
                ex.name,
                "running",
                time.time(),
                resumed_from=resumed_from,
            )
            runner = Runner(
                ctx, graph, record, run=run, on_event=on_event, reuse=reuse, use_cache=use_cache
            )
            try:
                status = runner.run(ex)
            except LooplineError:
                raise
            except Exception as exc:  # e.g. the database refused the run's last write
                # The runner has marked the run failed; say which run, and what to do.
                raise PipelineFailed(
                    f"pipeline {self.name!r} run {run.id} failed: {type(exc).__name__}: {exc}",
                    hint=f"the run is marked failed; once the cause is fixed, rerun what did "
                    f"not finish: loopline pipeline resume {run.id}",
                ) from exc
            run.set_tags({f"{PIPELINE_TAG}.status": status, **reproduce_record.modules_tags()})
            if status == "failed":
                failed = [s.name for s in record.steps.values() if s.status == "failed"]
                run.set_tag(ERROR_TAG, "failed steps: " + ", ".join(failed))
                run.end("FAILED")
        return PipelineResult(record, ctx.artifacts)

    def __repr__(self) -> str:
        return f"<Pipeline {self.name} ({self.target})>"


def _check_timeouts(graph: Graph, ex: Executor) -> None:
    """Refuse, before anything runs, a step with a timeout on an executor that cannot stop
    a step: the local executor runs steps in threads of this process, and a thread cannot
    be killed (a hung step would hang the run past its timeout)."""
    if ex.can_time_out:
        return
    for node in graph.nodes.values():
        if node.step.timeout is not None:
            raise InvalidInput(
                f"step {node.name!r} has a timeout of {node.step.timeout:g} s, which the "
                f"{ex.name} executor cannot enforce: it runs steps in threads of this "
                "process, and a thread cannot be stopped",
                field="executor",
                hint="run the pipeline on the process executor (executor='process', "
                "loopline pipeline run ... --executor process) or on ray, or drop the timeout",
            )


@overload
def pipeline(fn: Callable[P, Any], /) -> Pipeline[P]: ...


@overload
def pipeline(
    *, name: str | None = None, experiment: str | None = None
) -> Callable[[Callable[P, Any]], Pipeline[P]]: ...


def pipeline(
    fn: Callable[P, Any] | None = None,
    /,
    *,
    name: str | None = None,
    experiment: str | None = None,
) -> Pipeline[P] | Callable[[Callable[P, Any]], Pipeline[P]]:
    """Make a function of steps a pipeline; its arguments are the pipeline's params.

    ``experiment`` (default: the pipeline's name) is where its runs are tracked.

    Example:
        >>> import loopline as ll
        >>> @ll.step
        ... def square(x: int) -> int:
        ...     return x * x
        >>> @ll.pipeline(experiment="demo")
        ... def squares(n: int = 3) -> None:
        ...     for i in range(n):
        ...         square(i)
        >>> squares.name
        'squares'
    """

    def wrap(f: Callable[P, Any]) -> Pipeline[P]:
        return Pipeline(f, name=name, experiment=experiment)

    return wrap(fn) if fn is not None else wrap


def resolve_pipeline(target: str) -> Pipeline[Any]:
    """The pipeline at ``module:name`` (the CLI's argument); InvalidInput when it is not one.

    Example:
        >>> # resolve_pipeline("myproject.pipelines:train").name
    """
    if ":" not in target:
        raise InvalidInput(
            f"{target!r} does not name a pipeline",
            field="pipeline",
            hint="write MODULE:PIPELINE, e.g. myproject.pipelines:train",
        )
    obj = resolve_target(target, what="pipeline")
    if not isinstance(obj, Pipeline):
        raise InvalidInput(
            f"{target} is a {type(obj).__name__}, not a pipeline",
            field="pipeline",
            hint="decorate the function with @ll.pipeline",
        )
    return obj


def resume(
    run_id: str,
    *,
    executor: str | Executor | None = None,
    max_workers: int | None = None,
    on_event: EventFn | None = None,
) -> PipelineResult:
    """Rerun the failed and skipped steps of a pipeline run (and so what depends on them).

    Steps that finished (or were cached) keep their stored outputs while their code and
    inputs are unchanged; a step whose code (or an upstream output) changed since runs
    again, as a cache miss would. The rerun is a new
    pipeline run tagged ``loopline.pipeline.resumed_from``; its reused steps are
    ``cached``. The pipeline is imported again from where it was defined, with the same
    params, on the same executor unless another is given.

    Example:
        >>> # result = resume("3f2a9c..."); result.status
    """
    ctx = get_context()
    old = pipeline_store.get(ctx.engine, run_id)
    pipe = resolve_pipeline(old.target)
    params = {k: materialize(spec, ctx.artifacts) for k, spec in old.params.items()}
    reuse = {
        s.name: Reused(s.output, s.run_id or s.cached_from, s.cache_key)
        for s in old.steps.values()
        if s.status in ("finished", "cached")
        and s.output is not None
        and ctx.artifacts.exists(s.output.digest)
    }
    return pipe._run(
        params,
        executor or old.executor,
        max_workers,
        None,
        on_event,
        reuse=reuse,
        resumed_from=run_id,
    )


def get_pipeline_run(run_id: str) -> PipelineResult:
    """The pipeline run ``run_id`` as stored; NotFound names the id.

    Example:
        >>> # get_pipeline_run("3f2a9c...").steps["fit"].status
    """
    ctx = get_context()
    return PipelineResult(pipeline_store.get(ctx.engine, run_id), ctx.artifacts)


def list_pipeline_runs(pipeline_name: str | None = None, limit: int = 50) -> list[PipelineResult]:
    """Pipeline runs, newest first (of one pipeline when named).

    Example:
        >>> # [r.status for r in list_pipeline_runs("train", limit=5)]
    """
    ctx = get_context()
    return [
        PipelineResult(r, ctx.artifacts)
        for r in pipeline_store.list_runs(ctx.engine, pipeline_name, limit)
    ]
