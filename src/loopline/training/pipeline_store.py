"""Reading and writing pipeline runs and step runs (the driver's side of the metadata DB).

Plain records in and out; rows never leave this module. The runner batches its writes:
a cache hit changes nothing until the next write, so a run of cached steps costs one
transaction instead of one per step (a crash meanwhile loses nothing that a resume would
not find again in the cache).

Example:
    >>> # create(engine, record); save(engine, record.id, [step_record]); get(engine, id)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from loopline.core.bulk import insert_rows, update_rows
from loopline.core.db import reading
from loopline.errors import NotFound
from loopline.training.outputs import StoredOutput
from loopline.training.pipeline_tables import pipeline_runs, step_runs


@dataclass
class StepRecord:
    """One step of a pipeline run, as stored in ``step_runs``."""

    name: str
    position: int
    function: str
    status: str = "pending"
    attempts: int = 0
    cache_key: str | None = None
    code_hash: str | None = None
    params: dict[str, Any] | None = None
    upstream: list[str] = field(default_factory=list)
    inputs: dict[str, str] | None = None
    output: StoredOutput | None = None
    error: str | None = None
    run_id: str | None = None
    cached_from: str | None = None
    started_at: float | None = None
    finished_at: float | None = None

    def row(self) -> dict[str, Any]:
        """The column values of this record (without the pipeline run id).

        Example:
            >>> StepRecord("fit", 0, "m:fit").row()["status"]
            'pending'
        """
        return {
            "step": self.name,
            "position": self.position,
            "function": self.function,
            "status": self.status,
            "attempts": self.attempts,
            "cache_key": self.cache_key,
            "code_hash": self.code_hash,
            "params": None if self.params is None else json.dumps(self.params),
            "upstream": json.dumps(self.upstream),
            "inputs": None if self.inputs is None else json.dumps(self.inputs),
            "output_digest": self.output.digest if self.output else None,
            "output_type": self.output.type if self.output else None,
            "error": self.error,
            "run_id": self.run_id,
            "cached_from": self.cached_from,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


@dataclass
class PipelineRecord:
    """One pipeline run, as stored in ``pipeline_runs``, with its steps by name."""

    id: str
    pipeline: str
    target: str
    params: dict[str, Any]
    executor: str
    status: str
    started_at: float
    resumed_from: str | None = None
    finished_at: float | None = None
    steps: dict[str, StepRecord] = field(default_factory=dict)


def create(engine: Engine, record: PipelineRecord) -> None:
    """Insert a pipeline run and its (pending) steps in one transaction.

    Example:
        >>> # create(ctx.engine, PipelineRecord(run.id, "train", "m:train", {}, "local", ...))
    """
    with engine.begin() as conn:
        conn.execute(
            pipeline_runs.insert().values(
                id=record.id,
                pipeline=record.pipeline,
                target=record.target,
                params=json.dumps(record.params),
                executor=record.executor,
                status=record.status,
                resumed_from=record.resumed_from,
                started_at=record.started_at,
                finished_at=record.finished_at,
            )
        )
        insert_rows(
            conn,
            step_runs,
            [{"pipeline_run_id": record.id, **s.row()} for s in record.steps.values()],
        )


def save(
    engine: Engine,
    run_id: str,
    steps: Sequence[StepRecord],
    *,
    status: str | None = None,
    finished_at: float | None = None,
    also: Callable[[Connection], None] | None = None,
) -> None:
    """Write step records (and the run's status) in one transaction; ``also`` joins it.

    Example:
        >>> # save(ctx.engine, run_id, [record], status="finished", finished_at=time.time())
    """
    with engine.begin() as conn:
        # One statement executed for many rows: building an UPDATE per step cost more
        # than a cached step's whole budget.
        update_rows(
            conn,
            step_runs,
            ["pipeline_run_id", "step"],
            [{"pipeline_run_id": run_id, **s.row()} for s in steps],
        )
        if status is not None:
            conn.execute(
                pipeline_runs.update()
                .where(pipeline_runs.c.id == run_id)
                .values(status=status, finished_at=finished_at)
            )
        if also is not None:
            also(conn)


def mark_failed(engine: Engine, run_id: str, error: str, finished_at: float) -> None:
    """Mark a run ``failed``, and its steps not yet settled in the database failed with
    ``error``: the small write made when the run's last batch could not be written.

    It touches only the run's status and those steps' status, error and end, so it does
    not fail for what the batch held (a value the database refuses, a cache entry).

    Example:
        >>> # mark_failed(ctx.engine, run_id, "the final write failed: ...", time.time())
    """
    with engine.begin() as conn:
        conn.execute(
            pipeline_runs.update()
            .where(pipeline_runs.c.id == run_id)
            .values(status="failed", finished_at=finished_at)
        )
        conn.execute(
            step_runs.update()
            .where(
                step_runs.c.pipeline_run_id == run_id,
                step_runs.c.status.in_(["pending", "running"]),
            )
            .values(status="failed", error=error, finished_at=finished_at)
        )


def _step(row: Any) -> StepRecord:
    return StepRecord(
        name=row.step,
        position=row.position,
        function=row.function,
        status=row.status,
        attempts=row.attempts,
        cache_key=row.cache_key,
        code_hash=row.code_hash,
        params=None if row.params is None else json.loads(row.params),
        upstream=json.loads(row.upstream),
        inputs=None if row.inputs is None else json.loads(row.inputs),
        output=StoredOutput(row.output_digest, row.output_type) if row.output_digest else None,
        error=row.error,
        run_id=row.run_id,
        cached_from=row.cached_from,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


def _pipeline(row: Any) -> PipelineRecord:
    return PipelineRecord(
        id=row.id,
        pipeline=row.pipeline,
        target=row.target,
        params=json.loads(row.params),
        executor=row.executor,
        status=row.status,
        started_at=row.started_at,
        resumed_from=row.resumed_from,
        finished_at=row.finished_at,
    )


def get(engine: Engine, run_id: str) -> PipelineRecord:
    """The pipeline run ``run_id`` with its steps in order; NotFound names the id.

    Example:
        >>> # get(ctx.engine, "3f2a...").steps["train"].status
    """
    with reading(engine) as conn:
        row = conn.execute(sa.select(pipeline_runs).where(pipeline_runs.c.id == run_id)).first()
        if row is None:
            raise NotFound(
                f"no pipeline run {run_id!r}",
                hint="list pipeline runs with `loopline pipeline ls`",
            )
        record = _pipeline(row)
        for srow in conn.execute(
            sa.select(step_runs)
            .where(step_runs.c.pipeline_run_id == run_id)
            .order_by(step_runs.c.position)
        ):
            step = _step(srow)
            record.steps[step.name] = step
    return record


def list_runs(engine: Engine, pipeline: str | None = None, limit: int = 50) -> list[PipelineRecord]:
    """Pipeline runs, newest first, with their steps.

    Example:
        >>> # [r.status for r in list_runs(ctx.engine, "train")]
    """
    query = sa.select(pipeline_runs).order_by(pipeline_runs.c.started_at.desc()).limit(limit)
    if pipeline is not None:
        query = query.where(pipeline_runs.c.pipeline == pipeline)
    with reading(engine) as conn:
        records = [_pipeline(r) for r in conn.execute(query)]
        if not records:
            return []
        by_id = {r.id: r for r in records}
        for srow in conn.execute(
            sa.select(step_runs)
            .where(step_runs.c.pipeline_run_id.in_(list(by_id)))
            .order_by(step_runs.c.position)
        ):
            by_id[srow.pipeline_run_id].steps[srow.step] = _step(srow)
    return records
