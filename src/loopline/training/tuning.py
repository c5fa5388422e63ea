"""Hyperparameter tuning: ``ll.tune(objective, space, n_trials=...)`` on Optuna.

The driver owns the study and asks Optuna (TPE sampler with a seed, median pruner) for each
trial's params, runs the trial on an executor (:mod:`loopline.training.executors`) and tells
Optuna the result: ask/tell on the driver on every executor, so trials can be threads, local
processes or Ray tasks. Each trial is a tracked run nested under the tuning run, with its
params, the objective's value as the metric ``objective`` and reported values as
``objective_intermediate`` (by step).

Optuna's study storage is the metadata database (its RDBStorage on the same SQLAlchemy URL:
on SQLite the same file; on PostgreSQL several machines can work on one named study). An
in-memory SQLite database keeps its studies in memory, for the context's lifetime.
Loopline's Alembic revision sits in the ``alembic_version`` table Optuna would also use, so
open the study from Optuna itself with
``optuna.load_study(study_name=..., storage=loopline.training.trials.open_storage(url))``
(it skips Optuna's schema check), and never run ``optuna storage upgrade`` on the database.

``space`` maps each param to one of::

    ("float", low, high)            ("float", low, high, "log")
    ("int", low, high)              ("categorical", [choice, ...])

Example:
    >>> import tempfile, loopline as ll
    >>> _ = ll.init(uri="sqlite:///:memory:", artifacts=tempfile.mkdtemp())
    >>> result = ll.tune(lambda p: -(p["x"] - 2) ** 2, {"x": ("float", -10, 10)},
    ...                  n_trials=30, direction="maximize")  # doctest: +ELLIPSIS
    >>> round(result.best_params["x"])
    2
"""

from __future__ import annotations

import inspect
import logging
import math
import time
import uuid
import weakref
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from loopline.core.context import Context, get_context
from loopline.errors import InvalidInput, LooplineError
from loopline.training.executor_checks import check_executor_name, check_importable
from loopline.training.executors import Executor, get_executor
from loopline.training.trials import (
    StudySpec,
    TrialOutcome,
    TrialReporter,
    TrialState,
    TrialTask,
    open_storage,
    optuna_storage_url,
    run_trial,
)

if TYPE_CHECKING:
    import optuna

    from loopline.tracking.run_handle import Run

__all__ = ["TrialReporter", "TrialResult", "TuneResult", "TuningFailed", "parse_space", "tune"]

TUNE_TAG = "loopline.tune"
#: Median pruner settings: no pruning before 5 trials have finished.
PRUNER_SETTINGS = {"n_startup_trials": 5, "n_warmup_steps": 0}
_SPACE_HINT = (
    'use ("float", low, high), ("float", low, high, "log"), ("int", low, high) '
    'or ("categorical", [choices])'
)


class _DropStudyCreated(logging.Filter):
    """Drops Optuna's "A new study created in RDB" line: ``ll.tune`` creates a study for
    every call, the tuning run records its name (tag ``loopline.tune.study``), and the line went
    to stderr on every ``loopline demo`` and pipeline run. Optuna's other messages pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("A new study created")


_STUDY_CREATED_FILTER = _DropStudyCreated()


def _quiet_study_creation() -> None:
    """Attach :class:`_DropStudyCreated` to the logger of Optuna's RDB storage (once).

    A filter on that one logger, not ``optuna.logging.set_verbosity``: the user's choice of
    Optuna's verbosity for everything else stays theirs.
    """
    logger = logging.getLogger("optuna.storages._rdb.storage")
    if _STUDY_CREATED_FILTER not in logger.filters:
        logger.addFilter(_STUDY_CREATED_FILTER)


class TuningFailed(LooplineError):
    """No trial of a tuning run completed; the message has the first trial's error."""


@dataclass(frozen=True)
class TrialResult:
    """One trial: number, params, value (None unless complete), state, its run, error."""

    number: int
    params: dict[str, Any]
    value: float | None
    state: TrialState
    run_id: str
    error: str | None = None


@dataclass(frozen=True)
class TuneResult:
    """The best trial of the study and every trial of this call.

    Example:
        >>> # r = ll.tune(...); r.best_params, r.best_value, r.best_run_id, len(r.trials)
    """

    study_name: str
    direction: str
    best_params: dict[str, Any]
    best_value: float
    best_run_id: str
    trials: list[TrialResult]
    run_id: str


def _bad(name: str, entry: Any, why: str) -> InvalidInput:
    return InvalidInput(
        f"space[{name!r}] = {entry!r} is not a valid search dimension: {why}",
        field=f"space.{name}",
        hint=_SPACE_HINT,
    )


def _number(name: str, entry: Any, value: Any, kind: type) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(name, entry, f"bound {value!r} is not a number")
    if kind is int and not float(value).is_integer():
        raise _bad(name, entry, f"bound {value!r} of an int dimension is not whole")
    if not math.isfinite(value):
        raise _bad(name, entry, f"bound {value!r} is not finite")
    return float(value)


def parse_space(space: Mapping[str, Any]) -> dict[str, optuna.distributions.BaseDistribution]:
    """Check ``space`` and turn it into Optuna distributions; InvalidInput names a bad entry.

    Example:
        >>> sorted(parse_space({"lr": ("float", 1e-4, 1e-1, "log"), "depth": ("int", 2, 8)}))
        ['depth', 'lr']
    """
    import optuna.distributions as dist

    if not isinstance(space, Mapping) or not space:
        raise InvalidInput(
            f"space must be a non-empty dict of name -> dimension, got {space!r}",
            field="space",
            hint=_SPACE_HINT,
        )
    out: dict[str, dist.BaseDistribution] = {}
    for name, entry in space.items():
        if not isinstance(name, str) or not name:
            raise InvalidInput(f"space key {name!r} is not a name", field="space", hint=_SPACE_HINT)
        if not isinstance(entry, tuple | list) or not entry or not isinstance(entry[0], str):
            raise _bad(name, entry, "expected a tuple starting with its kind")
        kind = entry[0]
        if kind == "categorical":
            if len(entry) != 2 or not isinstance(entry[1], list | tuple) or not entry[1]:
                raise _bad(name, entry, "a categorical dimension needs a non-empty list")
            for choice in entry[1]:
                if choice is not None and not isinstance(choice, bool | int | float | str):
                    raise _bad(name, entry, f"choice {choice!r} is not None/bool/int/float/str")
            out[name] = dist.CategoricalDistribution(list(entry[1]))
        elif kind in ("float", "int"):
            log = len(entry) == 4 and entry[3] == "log"
            if len(entry) not in (3, 4) or (len(entry) == 4 and not log):
                raise _bad(name, entry, f'expected ("{kind}", low, high) or with "log" last')
            if kind == "int" and log:
                raise _bad(name, entry, "use a float dimension for a log scale")
            pytype = int if kind == "int" else float
            low = _number(name, entry, entry[1], pytype)
            high = _number(name, entry, entry[2], pytype)
            if low > high:
                raise _bad(name, entry, f"low {entry[1]!r} is above high {entry[2]!r}")
            if log and low <= 0:
                raise _bad(name, entry, "a log scale needs low > 0")
            out[name] = (
                dist.IntDistribution(int(low), int(high))
                if kind == "int"
                else dist.FloatDistribution(low, high, log=log)
            )
        else:
            raise _bad(name, entry, f"unknown kind {kind!r}")
    return out


def _wants_reporter(objective: Callable[..., Any]) -> bool:
    try:
        params = list(inspect.signature(objective).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [
        p
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    return len(positional) >= 2 or any(p.kind is p.VAR_POSITIONAL for p in params)


def sampler_seed(seed: int, earlier_trials: int) -> int:
    """The seed of the sampler for a call of ``tune`` on a study that has ``earlier_trials``.

    ``seed`` itself for a new study. A study that goes on gets a seed drawn from both: with
    ``seed`` again, TPE's random start drew the very params of the study's first trials,
    so every call on a named study evaluated them once more. Still one seed per
    (seed, study size): a rerun of the same calls searches the same points.

    Example:
        >>> sampler_seed(0, 0)
        0
        >>> sampler_seed(0, 5) == sampler_seed(0, 5) != sampler_seed(0, 6)
        True
    """
    if earlier_trials == 0:
        return seed
    import numpy as np

    return int(np.random.SeedSequence([seed, earlier_trials]).generate_state(1)[0])


def _check(
    n_trials: int, direction: str, timeout: float | None, n_jobs: int | None, seed: int
) -> None:
    if not isinstance(n_trials, int) or isinstance(n_trials, bool) or n_trials < 1:
        raise InvalidInput(
            f"The 'n_trials' parameter of tune must be an int >= 1. Got {n_trials!r} instead.",
            field="n_trials",
        )
    if direction not in ("maximize", "minimize"):
        raise InvalidInput(
            "The 'direction' parameter of tune must be 'maximize' or 'minimize'. "
            f"Got {direction!r} instead.",
            field="direction",
        )
    if timeout is not None and (not isinstance(timeout, int | float) or timeout <= 0):
        raise InvalidInput(
            f"The 'timeout' parameter of tune must be a number > 0. Got {timeout!r} instead.",
            field="timeout",
        )
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
        raise InvalidInput(
            f"The 'seed' parameter of tune must be an int in [0, 2**32). Got {seed!r} instead.",
            field="seed",
        )
    if n_jobs is not None and (not isinstance(n_jobs, int) or n_jobs < 1):
        raise InvalidInput(
            f"The 'n_jobs' parameter of tune must be an int >= 1. Got {n_jobs!r} instead.",
            field="n_jobs",
        )


def tune(
    objective: Callable[..., float],
    space: Mapping[str, Any],
    n_trials: int = 20,
    executor: str | Executor = "local",
    direction: Literal["maximize", "minimize"] = "maximize",
    study_name: str | None = None,
    timeout: float | None = None,
    pruner: bool = True,
    *,
    seed: int = 0,
    n_jobs: int | None = None,
    experiment: str | None = None,
) -> TuneResult:
    """Search ``space`` for the params that maximize (or minimize) ``objective``.

    ``objective(params)`` returns a number; ``objective(params, trial)`` may also call
    ``trial.report(value, step)`` so that the median pruner can stop a poor trial early.
    ``n_jobs`` trials run at once (default: 1 on ``local`` for a reproducible search, the
    executor's workers on ``process``/``ray``). ``timeout`` (seconds) stops asking for new
    trials. A named study continues where it stopped (several machines can share one on
    PostgreSQL). Raises :class:`TuningFailed` when no trial completes.

    Example:
        >>> import loopline as ll
        >>> def objective(params):
        ...     return -(params["x"] - 2) ** 2
        >>> r = ll.tune(objective, {"x": ("float", -10, 10)}, n_trials=30)  # doctest: +SKIP
        >>> abs(r.best_params["x"] - 2) < 0.5  # doctest: +SKIP
        True
    """
    import optuna

    from loopline.tracking.api import start_run

    _quiet_study_creation()
    distributions = parse_space(space)
    _check(n_trials, direction, timeout, n_jobs, seed)
    check_executor_name(executor)
    if not callable(objective):
        raise InvalidInput(f"objective {objective!r} is not callable", field="objective")
    ctx = get_context()
    ctx.engine  # noqa: B018 - migrate Loopline's schema before Optuna adds its tables
    url = optuna_storage_url(ctx.settings.metadata_uri)
    storage: str | optuna.storages.BaseStorage = open_storage(url) if url else _in_memory(ctx)
    name = study_name or f"{getattr(objective, '__name__', 'objective')}-{uuid.uuid4().hex[:8]}"
    try:
        study = optuna.create_study(
            storage=storage,
            study_name=name,
            direction=direction,
            load_if_exists=True,
            pruner=optuna.pruners.MedianPruner(**PRUNER_SETTINGS)
            if pruner
            else optuna.pruners.NopPruner(),
        )
    except ValueError as exc:
        raise InvalidInput(f"study {name!r}: {exc}", field="study_name") from exc
    if len(study.directions) != 1:
        raise InvalidInput(
            f"study {name!r} exists and has {len(study.directions)} objectives; ll.tune "
            "optimizes one",
            field="study_name",
            hint="use another study_name",
        )
    if study.direction.name.lower() != direction:
        raise InvalidInput(
            f"study {name!r} exists and goes the other way ({study.direction.name.lower()})",
            field="direction",
            hint="use another study_name or the study's direction",
        )
    _check_resumable(study, distributions)
    earlier = len(study.get_trials(deepcopy=False))
    study.sampler = optuna.samplers.TPESampler(seed=sampler_seed(seed, earlier))
    ex = get_executor(executor)
    try:
        if ex.remote:
            check_importable(objective, "objective", allow_main=ex.name != "ray")
        spec = StudySpec(url, name, dict(PRUNER_SETTINGS) if pruner else None) if url else None
        with start_run(
            experiment=experiment or "tuning",
            name=name,
            tags={f"{TUNE_TAG}.study": name, f"{TUNE_TAG}.executor": ex.name},
        ) as parent:
            parent.log_params(
                {"n_trials": n_trials, "direction": direction, "sampler": "TPE", "seed": seed}
            )
            jobs = n_jobs or (1 if not ex.remote else ex.max_workers)
            loop = _Loop(study, distributions, objective, ex, spec, jobs)
            trials = loop.run(n_trials, timeout)
            completed = [t for t in trials if t.state == "complete"]
            if not completed and not _any_complete(study):
                first = next((t.error for t in trials if t.error), None)
                raise TuningFailed(
                    f"no trial of study {name!r} completed"
                    + (f"; the first error: {first.strip().splitlines()[0]}" if first else ""),
                    hint="run the objective once by hand with params from the space",
                )
            best = study.best_trial
            best_run = str(best.user_attrs.get("loopline.run_id", ""))
            assert best.value is not None
            parent.log_metric("best_objective", best.value)
            parent.set_tags({f"{TUNE_TAG}.best_run_id": best_run})
    finally:
        if ex is not executor:  # close only what this call opened
            ex.close()
    return TuneResult(
        name, direction, dict(best.params), float(best.value), best_run, trials, parent.id
    )


#: The in-memory study storage of each context (a metadata database in memory).
_MEMORY: weakref.WeakKeyDictionary[Context, Any] = weakref.WeakKeyDictionary()


def _in_memory(ctx: Context) -> Any:
    """One in-memory storage per context: a named study goes on in the next ``tune`` call,
    as it does on a database (a new storage per call started every study afresh)."""
    import optuna

    storage = _MEMORY.get(ctx)
    if storage is None:
        storage = _MEMORY[ctx] = optuna.storages.InMemoryStorage()
    return storage


def _check_resumable(study: optuna.Study, distributions: Mapping[str, Any]) -> None:
    """A study goes on only with a space its earlier trials fit (Optuna's rule): the same
    kind and log scale for a float or int param (its range may change) and the same choices
    in the same order for a categorical one. Checked before the first trial, so a refused
    call leaves neither a trial stuck RUNNING in the study nor a tuning run."""
    from optuna.distributions import check_distribution_compatibility

    earlier: dict[str, Any] = {}
    for trial in study.get_trials(deepcopy=False):
        for param, dist in trial.distributions.items():
            earlier.setdefault(param, dist)
    for param, dist in distributions.items():
        old = earlier.get(param)
        if old is None:
            continue
        try:
            check_distribution_compatibility(old, dist)
        except ValueError as exc:
            raise InvalidInput(
                f"study {study.study_name!r} exists and its trials searched {param!r} as "
                f"{_dimension(old)}, not {_dimension(dist)}: {exc}",
                field=f"space.{param}",
                hint=f"to go on with the study, give {param!r} as {_dimension(old)} (a float "
                "or int range may change); to search the new space, use another study_name",
            ) from exc


def _dimension(dist: Any) -> str:
    """An Optuna distribution in ``space`` syntax (what the user would write)."""
    import optuna.distributions as d

    if isinstance(dist, d.CategoricalDistribution):
        return repr(("categorical", list(dist.choices)))
    if isinstance(dist, d.IntDistribution) and not dist.log and dist.step == 1:
        return repr(("int", dist.low, dist.high))
    if isinstance(dist, d.FloatDistribution) and dist.step is None:
        return repr(("float", dist.low, dist.high, *(["log"] if dist.log else [])))
    return repr(dist)  # made outside ll.tune (a step, an int log scale): Optuna's own words


def _any_complete(study: optuna.Study) -> bool:
    import optuna

    return any(
        t.state == optuna.trial.TrialState.COMPLETE for t in study.get_trials(deepcopy=False)
    )


class _Loop:
    """Ask, run on the executor, tell: up to ``jobs`` trials in flight."""

    def __init__(
        self,
        study: optuna.Study,
        distributions: dict[str, Any],
        objective: Callable[..., Any],
        executor: Executor,
        spec: StudySpec | None,
        jobs: int,
    ) -> None:
        self.study = study
        self.distributions = distributions
        self.objective = objective
        self.executor = executor
        self.spec = spec
        self.jobs = jobs
        self.wants_reporter = _wants_reporter(objective)
        self.results: list[TrialResult] = []

    def run(self, n_trials: int, timeout: float | None) -> list[TrialResult]:
        deadline = None if timeout is None else time.monotonic() + timeout
        in_flight: dict[Future[TrialOutcome], tuple[Any, Run]] = {}
        started = 0
        try:
            while True:
                open_more = deadline is None or time.monotonic() < deadline
                while open_more and started < n_trials and len(in_flight) < self.jobs:
                    fut, trial, child = self._start()
                    in_flight[fut] = (trial, child)
                    started += 1
                if not in_flight:
                    break
                # Past the deadline no trial opens, so wait for one to end without a
                # timeout: a timeout of 0 made this loop spin a core until it did.
                wait_for = None if not open_more else _left(deadline)
                done, _ = wait(list(in_flight), timeout=wait_for, return_when=FIRST_COMPLETED)
                for fut in done:
                    trial, child = in_flight.pop(fut)
                    self._finish(trial, child, _outcome(fut, trial.number))
        except BaseException:
            for fut, (trial, child) in in_flight.items():
                fut.cancel()
                self.study.tell(trial, state=_optuna_state("failed"))
                child.end("KILLED")
            raise
        return sorted(self.results, key=lambda t: t.number)

    def _start(self) -> tuple[Future[TrialOutcome], Any, Run]:
        from loopline.tracking import active
        from loopline.tracking.api import start_run

        trial = self.study.ask(self.distributions)
        child = start_run(
            name=f"trial-{trial.number}",
            tags={f"{TUNE_TAG}.study": self.study.study_name, f"{TUNE_TAG}.trial": trial.number},
        )
        active.forget(child)  # keep the tuning run the innermost: every trial nests under it
        child.log_params(trial.params)
        trial.set_user_attr("loopline.run_id", child.id)
        task = TrialTask(
            self.objective,
            dict(trial.params),
            trial.number,
            trial._trial_id,
            self.wants_reporter,
            self.spec,
            local_trial=None if self.executor.remote else trial,
        )
        return self.executor.submit(run_trial, task), trial, child

    def _finish(self, trial: Any, child: Run, outcome: TrialOutcome) -> None:
        from loopline.tracking.run_handle import ERROR_TAG

        for step, value in outcome.reported:
            child.log_metric("objective_intermediate", value, step=step)
        if outcome.state == "complete":
            assert outcome.value is not None
            self.study.tell(trial, outcome.value)
            child.log_metric("objective", outcome.value)
        else:
            self.study.tell(trial, state=_optuna_state(outcome.state))
        tags: dict[str, Any] = {f"{TUNE_TAG}.state": outcome.state}
        if outcome.error:
            tags[ERROR_TAG] = outcome.error[-8000:]
        child.set_tags(tags)
        child.end("FAILED" if outcome.state == "failed" else "FINISHED")
        self.results.append(
            TrialResult(
                trial.number,
                dict(trial.params),
                outcome.value,
                outcome.state,
                child.id,
                outcome.error,
            )
        )


def _left(deadline: float | None) -> float | None:
    """Seconds until ``deadline`` (None: no deadline), at least a millisecond."""
    return None if deadline is None else max(0.001, deadline - time.monotonic())


def _optuna_state(state: TrialState) -> Any:
    import optuna

    return {
        "complete": optuna.trial.TrialState.COMPLETE,
        "pruned": optuna.trial.TrialState.PRUNED,
        "failed": optuna.trial.TrialState.FAIL,
    }[state]


def _outcome(fut: Future[TrialOutcome], number: int) -> TrialOutcome:
    try:
        return fut.result()
    except Exception as exc:
        return TrialOutcome(
            number, "failed", error=f"the executor lost the trial: {type(exc).__name__}: {exc}"
        )
