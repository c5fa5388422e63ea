"""Plain, immutable records the tracking store returns; table rows never leave the store.

Times are milliseconds since the epoch, as in MLflow. The MLflow-compatible REST server
turns these records into its wire format; the SDK wraps :class:`RunRecord` in a ``Run``.

Example:
    >>> MetricPoint(step=3, timestamp=1700000000000, value=0.5).value
    0.5
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

#: How long a run id is: 32 lowercase hex characters (``uuid4().hex``).
RUN_ID_LENGTH = 32
#: The fewest characters of a run id the CLI takes for it (git's default abbreviation is 7).
MIN_RUN_ID_PREFIX = 8


def is_run_id_prefix(text: str) -> bool:
    """True when ``text`` is 1 or more lowercase hex digits, as a run id starts.

    Example:
        >>> is_run_id_prefix("3f2a9c0d"), is_run_id_prefix("3F2A"), is_run_id_prefix("")
        (True, False, False)
    """
    return bool(text) and not set(text) - set("0123456789abcdef")


#: Which runs or experiments a search sees: soft-deleted ones are hidden by default.
ViewType = Literal["active", "deleted", "all"]


class MetricPoint(NamedTuple):
    """One stored metric value: ``(step, timestamp, value)``; NaN comes back as NaN.

    Example:
        >>> step, ts, value = MetricPoint(1, 1700000000000, 0.5)
    """

    step: int
    timestamp: int
    value: float


class Metric(NamedTuple):
    """A metric value to log: its key plus the point.

    Example:
        >>> Metric("loss", 0.5, 1700000000000, step=3).step
        3
    """

    key: str
    value: float
    timestamp: int
    step: int = 0


@dataclass(frozen=True)
class LoggedBatch:
    """What :func:`loopline.tracking.run_data.log_batch` did: whether the batch was applied
    (False for a ``(writer, seq)`` batch applied before) and how many of its metric points
    it stored now (a point stored before, or repeated in the batch, is not counted).

    Example:
        >>> LoggedBatch(applied=True, stored=0).stored  # a batch of points all stored before
        0
    """

    applied: bool
    stored: int


@dataclass(frozen=True)
class Experiment:
    """An experiment: a named group of runs.

    Example:
        >>> # get_experiment_by_name(engine, "Default").id  -> 0
    """

    id: int
    name: str
    artifact_location: str | None
    lifecycle_stage: str
    creation_time: int
    last_update_time: int
    tags: dict[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class RunInput:
    """A dataset a run read: its kind (e.g. ``dataset``), name, version and content digest.

    Example:
        >>> RunInput("dataset", "churn", "3", "ab" * 32, context="training").version
        '3'
    """

    kind: str
    name: str
    version: str
    digest: str
    context: str | None = None
    #: What an MLflow client sent besides name and digest (source, schema, profile, input
    #: tags), a JSON object as text; None for inputs read through ``ll.datasets``.
    details_json: str | None = None


@dataclass(frozen=True)
class RunOutput:
    """A model a run logged (MLflow 3's ``LoggedModelOutput``): its id and the run's step.

    Example:
        >>> RunOutput("m-0123", step=2).step
        2
    """

    model_id: str
    step: int = 0


@dataclass(frozen=True)
class ArtifactEntry:
    """An artifact path inside a run and the content-addressed blob it points to.

    Example:
        >>> ArtifactEntry("model/weights.bin", "ab" * 32, 1024).path
        'model/weights.bin'
    """

    path: str
    digest: str
    size: int


@dataclass(frozen=True)
class RunRecord:
    """Everything stored about one run, read in one go.

    Example:
        >>> # get_run(engine, run_id).metrics  -> {'auc': 0.91}
    """

    id: str
    experiment_id: int
    experiment: str
    name: str | None
    status: str
    start_time: int
    end_time: int | None
    parent_run_id: str | None
    lifecycle_stage: str
    user_id: str | None
    artifact_uri: str | None
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str | None] = field(default_factory=dict)
    latest_metrics: dict[str, MetricPoint] = field(default_factory=dict)
    inputs: tuple[RunInput, ...] = ()
    #: The models the run logged, as MLflow 3's client records them (``runs/outputs``).
    outputs: tuple[RunOutput, ...] = ()

    @property
    def metrics(self) -> dict[str, float]:
        """The latest value of each metric (greatest step, then timestamp, then value)."""
        return {key: point.value for key, point in self.latest_metrics.items()}


@dataclass(frozen=True)
class NewRun:
    """A run checked and named but not yet written: what the first write of a run inserts.

    ``written`` is True when the backend wrote it already (a remote backend creates runs
    at once); the SDK then treats it as any existing run.

    Example:
        >>> # new = backend.prepare_run(...); backend.write_run(new, params={...}, ...)
    """

    record: RunRecord
    artifacts: tuple[ArtifactEntry, ...] = ()
    actor: str | None = None
    written: bool = False


@dataclass(frozen=True)
class RunSearchResult:
    """One page of :func:`loopline.tracking.query.search_runs`.

    Example:
        >>> RunSearchResult([], None).next_page_token is None
        True
    """

    runs: list[RunRecord]
    next_page_token: str | None


@dataclass(frozen=True)
class ExperimentSearchResult:
    """One page of :func:`loopline.tracking.query.search_experiments`.

    Example:
        >>> ExperimentSearchResult([], None).experiments
        []
    """

    experiments: list[Experiment]
    next_page_token: str | None


def now_ms() -> int:
    """Milliseconds since the epoch, the unit of every time in the tracking store.

    Example:
        >>> now_ms() > 1_600_000_000_000
        True
    """
    return time.time_ns() // 1_000_000
