"""One tuning trial where the executor runs it: call the objective, report for pruning.

:func:`run_trial` runs in a thread (``local``), a process (``process``) or a Ray task
(``ray``). The driver asks Optuna for the trial's params and tells it the result; here
the objective is called and, when it takes a second argument, handed a
:class:`TrialReporter`. On a remote executor the reporter reaches the study through
Optuna's storage (the metadata database), so pruning decisions see every trial; with an
in-memory database there is no shared storage and remote trials are not pruned.

Example:
    >>> r = TrialReporter(None, number=0, params={"x": 1.0})
    >>> r.report(0.5, step=1); r.reported
    [(1, 0.5)]
"""

from __future__ import annotations

import math
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Literal

from loopline.errors import ConfigError, InvalidInput

TrialState = Literal["complete", "pruned", "failed"]


@dataclass(frozen=True)
class StudySpec:
    """How a remote worker reopens the study: storage URL, name and pruner settings."""

    storage_url: str
    study_name: str
    pruner: dict[str, int] | None


@dataclass(frozen=True)
class TrialTask:
    """One trial to run: the objective, the params Optuna chose, how to reach the study."""

    objective: Any
    params: dict[str, Any]
    number: int
    trial_id: int
    wants_reporter: bool
    study: StudySpec | None = None
    #: The driver's own Optuna trial, for the local executor only (never pickled).
    local_trial: Any = field(default=None, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["local_trial"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


@dataclass(frozen=True)
class TrialOutcome:
    """What a trial ended with: its state, value, reported values, and error if it failed."""

    number: int
    state: TrialState
    value: float | None = None
    reported: list[tuple[int, float]] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0


class TrialReporter:
    """Handed to an objective that takes a second argument: report intermediate values.

    ``report(value, step)`` records the value and, when the pruner says the trial is
    worse than the median of earlier trials at that step, raises ``optuna.TrialPruned``:
    let it propagate (the trial ends ``pruned``).

    Example:
        >>> def objective(params, trial):
        ...     for epoch in range(10):
        ...         trial.report(score(params, epoch), step=epoch)  # may stop here
        ...     return score(params, 10)
    """

    def __init__(self, trial: Any, *, number: int, params: dict[str, Any]) -> None:
        self._trial = trial
        self.number = number
        self.params = dict(params)
        self.reported: list[tuple[int, float]] = []

    def report(self, value: float, step: int) -> None:
        """Record an intermediate value at ``step``; raise ``optuna.TrialPruned`` to stop.

        Example:
            >>> TrialReporter(None, number=0, params={}).report(1.0, step=0)
        """
        if isinstance(value, str | bytes | bool):
            kind = "the bool" if isinstance(value, bool) else "the text"
            raise InvalidInput(
                f"trial {self.number} reported {kind} {value!r} at step {step}, not a number",
                field="value",
                hint="report the score itself, e.g. reporter.report(0.93, step)",
            )
        value = float(value)
        self.reported.append((int(step), value))
        if self._trial is None:
            return
        self._trial.report(value, int(step))
        if self._trial.should_prune():
            import optuna

            raise optuna.TrialPruned(f"trial {self.number} pruned at step {step}")

    def should_prune(self) -> bool:
        """Whether the pruner would stop the trial now (``report`` already checks).

        Example:
            >>> TrialReporter(None, number=0, params={}).should_prune()
            False
        """
        return bool(self._trial is not None and self._trial.should_prune())


_storages: dict[str, Any] = {}
_storages_lock = threading.Lock()


def optuna_storage_url(metadata_uri: str) -> str | None:
    """The SQLAlchemy URL for Optuna's storage on the metadata database (None: in memory).

    Example:
        >>> optuna_storage_url("postgresql://u@h/db")
        'postgresql+psycopg://u@h/db'
        >>> optuna_storage_url("sqlite:///:memory:") is None
        True
    """
    if metadata_uri.startswith(("http://", "https://")):
        raise ConfigError(
            "tuning needs direct database access but LOOPLINE_URI is a server URL",
            hint="set LOOPLINE_URI to the database (postgresql://... or sqlite:///...)",
        )
    if metadata_uri.startswith("postgresql://"):
        return "postgresql+psycopg://" + metadata_uri.removeprefix("postgresql://")
    if metadata_uri.rstrip("/") in ("sqlite:", "sqlite:/", "sqlite://") or metadata_uri.endswith(
        ":memory:"
    ):
        return None
    return metadata_uri


def open_storage(url: str) -> Any:
    """Optuna's RDBStorage on ``url``, once per process.

    Loopline's Alembic revision lives in ``alembic_version`` of the same database, so
    Optuna's own schema check is skipped (its tables are created when missing). Do not
    run ``optuna storage upgrade`` on the metadata database.

    Example:
        >>> # open_storage("sqlite:///.loopline/loopline.db")
    """
    with _storages_lock:
        storage = _storages.get(url)
        if storage is None:
            import optuna

            kwargs: dict[str, Any] = {"pool_pre_ping": True}
            if url.startswith("sqlite"):
                kwargs = {"connect_args": {"timeout": 30}}
            storage = optuna.storages.RDBStorage(
                url, engine_kwargs=kwargs, skip_compatibility_check=True
            )
            _storages[url] = storage
        return storage


def _remote_trial(spec: StudySpec, trial_id: int) -> Any:
    import optuna

    pruner: optuna.pruners.BasePruner = (
        optuna.pruners.MedianPruner(**spec.pruner)
        if spec.pruner is not None
        else optuna.pruners.NopPruner()
    )
    study = optuna.load_study(
        study_name=spec.study_name, storage=open_storage(spec.storage_url), pruner=pruner
    )
    return optuna.trial.Trial(study, trial_id)


def run_trial(task: TrialTask) -> TrialOutcome:
    """Call the objective with the trial's params; never raises for the objective's errors.

    Example:
        >>> run_trial(TrialTask(lambda p: p["x"] ** 2, {"x": 3.0}, 0, 0, False)).value
        9.0
    """
    import optuna

    started = time.perf_counter()
    trial = task.local_trial
    if trial is None and task.wants_reporter and task.study is not None:
        trial = _remote_trial(task.study, task.trial_id)
    reporter = TrialReporter(trial, number=task.number, params=task.params)
    try:
        if task.wants_reporter:
            raw = task.objective(dict(task.params), reporter)
        else:
            raw = task.objective(dict(task.params))
    except optuna.TrialPruned:
        return TrialOutcome(
            task.number, "pruned", None, reporter.reported, seconds=time.perf_counter() - started
        )
    except (Exception, SystemExit) as exc:  # an objective that exits failed its trial only
        text = f"{type(exc).__qualname__}: {exc}\n\n" + "".join(traceback.format_exception(exc))
        return TrialOutcome(
            task.number, "failed", None, reporter.reported, text, time.perf_counter() - started
        )
    try:
        # Text is no score, even when it reads as one ("1.5"), nor is a bool (a comparison
        # returned instead of its margin): the objective has a bug.
        value = math.nan if isinstance(raw, str | bytes | bool) else float(raw)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value):
        return TrialOutcome(
            task.number,
            "failed",
            None,
            reporter.reported,
            f"the objective returned {raw!r}; it must return a finite number",
            time.perf_counter() - started,
        )
    return TrialOutcome(
        task.number, "complete", value, reporter.reported, seconds=time.perf_counter() - started
    )
