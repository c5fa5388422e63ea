"""The records and requests of Loopline's REST API ``/api/v1``, shared by server and SDK.

The server (:mod:`loopline.server.api_v1`) answers with these pydantic models and the
remote SDK (:mod:`loopline.tracking.remote`) parses its answers with the same models, so
the two cannot drift apart. Each record converts to and from the plain entity the
embedded store returns (:mod:`loopline.tracking.entities`).

Metric values that JSON cannot spell travel as the strings ``"NaN"``, ``"Infinity"`` and
``"-Infinity"`` (protobuf's JSON mapping, as MLflow's REST API does), in both directions.

The hot path, logging a batch of metric points, does not go through pydantic: its body
(:class:`LogBatchRequest` documents it) is parsed with orjson and checked by
:mod:`loopline.tracking.batch_codec`.

Example:
    >>> RunInputModel(kind="dataset", name="churn", version="3", digest="ab").to_entity().name
    'churn'
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from loopline.tracking.entities import (
    ArtifactEntry,
    Experiment,
    ExperimentSearchResult,
    MetricPoint,
    RunInput,
    RunRecord,
    RunSearchResult,
)

#: The largest log-batch request body, in bytes.
MAX_BATCH_BYTES = 64 * 1024 * 1024
#: A metric writer's id: 8 to 32 lowercase hex characters.
WRITER_ID = re.compile(r"^[0-9a-f]{8,32}$")

View = Literal["active", "deleted", "all"]


class WireModel(BaseModel):
    """Base of every ``/api/v1`` request: unknown fields are an error, NaN travels as text."""

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="strings")


class RecordModel(BaseModel):
    """Base of every ``/api/v1`` answer: a client ignores fields a newer server adds."""

    model_config = ConfigDict(extra="ignore", ser_json_inf_nan="strings")


# -- records -----------------------------------------------------------------------------


class MetricPointModel(RecordModel):
    """One metric point: step, timestamp (ms) and value."""

    step: int
    timestamp: int
    value: float


class RunInputModel(WireModel):
    """A dataset version a run read (lineage)."""

    kind: str = Field(min_length=1, max_length=50, examples=["dataset"])
    name: str = Field(min_length=1, max_length=500)
    version: str = Field(min_length=1, max_length=200)
    digest: str = Field(min_length=1, max_length=128)
    context: str | None = Field(None, max_length=100, examples=["training"])

    @classmethod
    def from_entity(cls, i: RunInput) -> RunInputModel:
        """The model of an entity.

        Example:
            >>> RunInputModel.from_entity(RunInput("dataset", "d", "1", "ab")).version
            '1'
        """
        return cls(kind=i.kind, name=i.name, version=i.version, digest=i.digest, context=i.context)

    def to_entity(self) -> RunInput:
        """The plain entity.

        Example:
            >>> RunInputModel(kind="dataset", name="d", version="1", digest="ab").to_entity().name
            'd'
        """
        return RunInput(self.kind, self.name, self.version, self.digest, self.context)


class ArtifactModel(RecordModel):
    """An artifact path inside a run and the content-addressed blob it points to."""

    path: str
    digest: str
    size: int

    @classmethod
    def from_entity(cls, a: ArtifactEntry) -> ArtifactModel:
        """The model of an entity.

        Example:
            >>> ArtifactModel.from_entity(ArtifactEntry("a.txt", "ab", 3)).size
            3
        """
        return cls(path=a.path, digest=a.digest, size=a.size)

    def to_entity(self) -> ArtifactEntry:
        """The plain entity.

        Example:
            >>> ArtifactModel(path="a.txt", digest="ab", size=3).to_entity().path
            'a.txt'
        """
        return ArtifactEntry(self.path, self.digest, self.size)


class ArtifactListModel(RecordModel):
    """The artifacts of a run, by path."""

    artifacts: list[ArtifactModel]


class ExperimentModel(RecordModel):
    """An experiment: a named group of runs."""

    id: int
    name: str
    artifact_location: str | None
    lifecycle_stage: str
    creation_time: int
    last_update_time: int
    tags: dict[str, str | None] = {}

    @classmethod
    def from_entity(cls, e: Experiment) -> ExperimentModel:
        """The model of an entity.

        Example:
            >>> ExperimentModel.from_entity(Experiment(1, "churn", None, "active", 0, 0)).name
            'churn'
        """
        return cls(
            id=e.id,
            name=e.name,
            artifact_location=e.artifact_location,
            lifecycle_stage=e.lifecycle_stage,
            creation_time=e.creation_time,
            last_update_time=e.last_update_time,
            tags=dict(e.tags),
        )

    def to_entity(self) -> Experiment:
        """The plain entity.

        Example:
            >>> ExperimentModel(id=1, name="c", artifact_location=None, lifecycle_stage="active",
            ...                 creation_time=0, last_update_time=0).to_entity().id
            1
        """
        return Experiment(
            self.id,
            self.name,
            self.artifact_location,
            self.lifecycle_stage,
            self.creation_time,
            self.last_update_time,
            dict(self.tags),
        )


class RunModel(RecordModel):
    """Everything stored about one run; ``latest_metrics`` holds each metric's latest point."""

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
    params: dict[str, str] = {}
    tags: dict[str, str | None] = {}
    latest_metrics: dict[str, MetricPointModel] = {}
    inputs: list[RunInputModel] = []

    @classmethod
    def from_record(cls, r: RunRecord) -> RunModel:
        """The model of a record.

        Example:
            >>> # RunModel.from_record(store.get_run(engine, run_id)).model_dump_json()
        """
        return cls.model_construct(
            id=r.id,
            experiment_id=r.experiment_id,
            experiment=r.experiment,
            name=r.name,
            status=r.status,
            start_time=r.start_time,
            end_time=r.end_time,
            parent_run_id=r.parent_run_id,
            lifecycle_stage=r.lifecycle_stage,
            user_id=r.user_id,
            artifact_uri=r.artifact_uri,
            params=r.params,
            tags=r.tags,
            latest_metrics={
                k: MetricPointModel.model_construct(
                    step=p.step, timestamp=p.timestamp, value=p.value
                )
                for k, p in r.latest_metrics.items()
            },
            inputs=[RunInputModel.from_entity(i) for i in r.inputs],
        )

    def to_record(self) -> RunRecord:
        """The plain record.

        Example:
            >>> # RunModel.model_validate_json(body).to_record().metrics
        """
        return RunRecord(
            id=self.id,
            experiment_id=self.experiment_id,
            experiment=self.experiment,
            name=self.name,
            status=self.status,
            start_time=self.start_time,
            end_time=self.end_time,
            parent_run_id=self.parent_run_id,
            lifecycle_stage=self.lifecycle_stage,
            user_id=self.user_id,
            artifact_uri=self.artifact_uri,
            params=dict(self.params),
            tags=dict(self.tags),
            latest_metrics={
                k: MetricPoint(p.step, p.timestamp, p.value) for k, p in self.latest_metrics.items()
            },
            inputs=tuple(i.to_entity() for i in self.inputs),
        )


class RunPageModel(RecordModel):
    """One page of a run search; pass ``next_page_token`` back for the next (null: last)."""

    runs: list[RunModel]
    next_page_token: str | None = None

    @classmethod
    def from_result(cls, result: RunSearchResult) -> RunPageModel:
        """The model of a search result.

        Example:
            >>> RunPageModel.from_result(RunSearchResult([], None)).runs
            []
        """
        return cls.model_construct(
            runs=[RunModel.from_record(r) for r in result.runs],
            next_page_token=result.next_page_token,
        )

    def to_result(self) -> RunSearchResult:
        """The plain search result.

        Example:
            >>> RunPageModel(runs=[]).to_result().next_page_token is None
            True
        """
        return RunSearchResult([r.to_record() for r in self.runs], self.next_page_token)


class ExperimentPageModel(RecordModel):
    """One page of an experiment search."""

    experiments: list[ExperimentModel]
    next_page_token: str | None = None

    @classmethod
    def from_result(cls, result: ExperimentSearchResult) -> ExperimentPageModel:
        """The model of a search result.

        Example:
            >>> ExperimentPageModel.from_result(ExperimentSearchResult([], None)).experiments
            []
        """
        return cls(
            experiments=[ExperimentModel.from_entity(e) for e in result.experiments],
            next_page_token=result.next_page_token,
        )

    def to_result(self) -> ExperimentSearchResult:
        """The plain search result.

        Example:
            >>> ExperimentPageModel(experiments=[]).to_result().experiments
            []
        """
        return ExperimentSearchResult(
            [e.to_entity() for e in self.experiments], self.next_page_token
        )


class MetricHistoryModel(RecordModel):
    """Every point of one metric of a run, in columns, by step then timestamp."""

    run_id: str
    key: str
    steps: list[int]
    timestamps: list[int]
    values: list[float]

    @classmethod
    def from_points(
        cls, run_id: str, key: str, points: Sequence[MetricPoint]
    ) -> MetricHistoryModel:
        """The model of a list of points.

        Example:
            >>> MetricHistoryModel.from_points("r", "loss", [MetricPoint(0, 5, 0.5)]).values
            [0.5]
        """
        return cls.model_construct(
            run_id=run_id,
            key=key,
            steps=[p.step for p in points],
            timestamps=[p.timestamp for p in points],
            values=[p.value for p in points],
        )

    def to_points(self) -> list[MetricPoint]:
        """The points as :class:`MetricPoint` tuples.

        Example:
            >>> MetricHistoryModel(run_id="r", key="k", steps=[1], timestamps=[2],
            ...                    values=[0.5]).to_points()
            [MetricPoint(step=1, timestamp=2, value=0.5)]
        """
        return [MetricPoint(*p) for p in zip(self.steps, self.timestamps, self.values, strict=True)]


# -- requests ----------------------------------------------------------------------------


class CreateExperimentRequest(WireModel):
    """Create an experiment (409 when the name is taken)."""

    name: str = Field(examples=["churn"])
    tags: dict[str, str | None] = {}


class CreateRunRequest(WireModel):
    """Start a RUNNING run in the experiment named ``experiment`` (created when missing)."""

    experiment: str = Field("Default", examples=["churn"])
    name: str | None = Field(None, examples=["lgbm-baseline"])
    start_time: int | None = Field(None, description="Milliseconds since the epoch; default now.")
    tags: dict[str, str | None] = {}
    parent_run_id: str | None = None
    user_id: str | None = None


class UpdateRunRequest(WireModel):
    """Change a run's status, end time or name; ending a run sets status and end time."""

    status: Literal["RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"] | None = None
    end_time: int | None = None
    name: str | None = None


class SearchRunsRequest(WireModel):
    """Search runs with MLflow's filter grammar (see :mod:`loopline.tracking.search`)."""

    experiments: list[str] | None = Field(
        None, description="Experiment names; null searches every experiment."
    )
    filter: str | None = Field(None, examples=["metrics.auc > 0.8 and params.model = 'lgbm'"])
    order_by: list[str] | None = Field(None, examples=[["metrics.auc DESC"]])
    max_results: int = Field(1000, ge=1, le=50_000, strict=True)
    page_token: str | None = None
    view: View = "active"


class SearchExperimentsRequest(WireModel):
    """Search experiments by exact names and/or a case-insensitive LIKE pattern."""

    names: list[str] | None = None
    name_like: str | None = Field(None, examples=["churn%"])
    max_results: int = Field(1000, ge=1, le=50_000, strict=True)
    page_token: str | None = None
    view: View = "active"


class SetTagRequest(WireModel):
    """Set (or overwrite) one tag of a run."""

    key: str = Field(examples=["stage"])
    value: str | None = Field(examples=["candidate"])


class LogInputsRequest(WireModel):
    """Record dataset versions a run read; the same version again is a no-op."""

    inputs: list[RunInputModel]


class ColumnarMetrics(WireModel):
    """Metric points in columns of equal length; ``steps`` default to 0, ``timestamps`` to now."""

    keys: list[str]
    values: list[float | Literal["NaN", "Infinity", "-Infinity"]]
    steps: list[int] | None = None
    timestamps: list[int] | None = None


class LogBatchRequest(WireModel):
    """Metrics, params and tags for one run, written in one transaction.

    ``metrics`` is either :class:`ColumnarMetrics` or a list of ``[key, value, step,
    timestamp]`` rows. ``writer`` and ``seq`` make a retried batch safe: the server applies
    each ``(writer, seq)`` at most once per run, and a ``seq`` not greater than the last one
    it applied for that writer is acknowledged (``duplicate: true``) without being written
    again. A writer must send its batches one at a time, in increasing ``seq`` order.
    """

    metrics: ColumnarMetrics | list[list[str | float | int | None]] | None = None
    params: dict[str, str | float | int | bool] = {}
    tags: dict[str, str | None] = {}
    writer: str | None = Field(None, pattern=WRITER_ID.pattern)
    seq: int | None = Field(None, ge=1)


class LogBatchResponse(RecordModel):
    """How many of the batch's metric points were stored now, and whether the batch had
    been applied before.

    ``stored`` leaves out the points stored before (a batch sent again without ``writer``
    and ``seq`` answers ``stored: 0``) and a point repeated in the batch, counted once.
    Params and tags are not counted.
    """

    stored: int
    duplicate: bool = False
