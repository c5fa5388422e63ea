"""The write-behind journal of one pipeline run: step records, step runs and cache entries.

Writing each step's bookkeeping call by call (open a tracked run, log its params, set its
tags, end it, save the step record, record the cache entry: six transactions and a
``git`` process) cost ~14 ms a step, more than most steps. The journal queues all of it
and writes it in ONE transaction (:meth:`StepJournal.flush`): the step records
(``step_runs``), the step runs (rows of the tracking store, through
:mod:`loopline.tracking.run_batch`, with their audit events) and the cache entries. The
runner flushes when :meth:`StepJournal.due` (``flush_steps`` steps ended, or the oldest
has waited ``flush_after`` seconds), before it reports a failure, when a step has run for
a while (it is then shown as running, with a RUNNING run), and at the end of the run.

Crash safety: a step counts as done only when its record says so, and its record, its run
and its cache entry commit together. A driver killed with steps still queued leaves their
records ``pending``/``running``, so :func:`loopline.training.pipeline.resume` runs them
again (outputs are content-addressed: rerunning a step is safe), and the cache never
holds an entry whose step is not recorded.

Step runs inherit the pipeline run's environment tags (git commit and diff hash, packages)
instead of computing them again: one process, one code version.

Example:
    >>> # journal = StepJournal(ctx.engine, record, actor="ada"); journal.begin(run)
    >>> # journal.started(rec, tags={...}); journal.ended(rec, "FINISHED", tags={...})
    >>> # if journal.due(): journal.flush()
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection, Engine

from loopline.tracking import run_batch
from loopline.tracking.entities import now_ms
from loopline.training import cache, pipeline_store
from loopline.training.outputs import StoredOutput
from loopline.training.pipeline_store import PipelineRecord, StepRecord
from loopline.training.steps import Step

if TYPE_CHECKING:
    from loopline.tracking.run_handle import Run

#: Steps ended before the journal is written (a bound on what a crash makes rerun).
FLUSH_STEPS = 64
#: Seconds the oldest ended step may wait in the journal.
FLUSH_AFTER = 0.15


@dataclass(frozen=True)
class CacheWrite:
    """A cache entry to record with the step that produced it."""

    key: str
    step: Step[Any, Any]
    output: StoredOutput
    run_id: str | None


def _ms(seconds: float | None) -> int:
    return now_ms() if seconds is None else int(seconds * 1000)


class StepJournal:
    """Queues a pipeline run's bookkeeping and writes it in one transaction per flush."""

    def __init__(
        self,
        engine: Engine,
        record: PipelineRecord,
        actor: str | None,
        *,
        flush_steps: int | None = None,
        flush_after: float | None = None,
    ) -> None:
        self.engine = engine
        self.record = record
        self.actor = actor
        self.flush_steps = FLUSH_STEPS if flush_steps is None else flush_steps
        self.flush_after = FLUSH_AFTER if flush_after is None else flush_after
        self.parent: run_batch.Parent | None = None
        self.dirty: dict[str, StepRecord] = {}
        #: Runs of steps on their way, by step; those in ``shown`` are in the database.
        self.open: dict[str, run_batch.ChildRun] = {}
        self.shown: set[str] = set()
        self.created: list[run_batch.ChildRun] = []
        self.ended_runs: list[run_batch.RunEnd] = []
        self.entries: list[CacheWrite] = []
        self.queued = 0
        self.queued_since: float | None = None

    def begin(self, run: Run) -> None:
        """Insert the pipeline run with its pending steps; read what step runs inherit
        from ``run``, the pipeline's tracked run.

        Example:
            >>> # journal.begin(pipeline_run)
        """
        self.parent = run_batch.parent_of(run)
        pipeline_store.create(self.engine, self.record)

    def touch(self, rec: StepRecord) -> None:
        """Write ``rec`` with the next flush (a step cached, skipped or started).

        Example:
            >>> # journal.touch(record.steps["fit"])
        """
        self.dirty[rec.name] = rec

    def started(self, rec: StepRecord, tags: dict[str, Any], params: dict[str, Any]) -> str:
        """A step was submitted: give it a run id (written when it ends, or at a flush).

        Example:
            >>> # rec.run_id = journal.started(rec, tags={...}, params={"lr": "0.1"})
        """
        run = run_batch.ChildRun(
            run_batch.new_run_id(), rec.name, _ms(rec.started_at), tags=tags, params=params
        )
        self.open[rec.name] = run
        rec.run_id = run.id
        self.dirty[rec.name] = rec
        return run.id

    def ended(
        self, rec: StepRecord, status: str, tags: dict[str, Any], entry: CacheWrite | None = None
    ) -> None:
        """A step's run ended with ``status``; queue its end, its tags and its cache entry.

        Example:
            >>> # journal.ended(rec, "FINISHED", {"loopline.step.status": "finished"})
        """
        run = self.open.pop(rec.name)
        end = _ms(rec.finished_at)
        if rec.name in self.shown:
            self.shown.discard(rec.name)
            self.ended_runs.append(run_batch.RunEnd(run.id, status, end, tags))
        else:
            run.status, run.end_time = status, end
            run.tags.update(tags)
            self.created.append(run)
        if entry is not None:
            self.entries.append(entry)
        self.dirty[rec.name] = rec
        self.queued += 1
        if self.queued_since is None:
            self.queued_since = time.monotonic()

    def end_open(self, status: str) -> None:
        """End every run still open with ``status`` (the driver is giving up).

        Example:
            >>> # journal.end_open("KILLED")
        """
        for name in list(self.open):
            rec = self.record.steps[name]
            rec.finished_at = rec.finished_at or time.time()
            self.ended(rec, status, {})

    def due(self) -> bool:
        """True when enough steps ended, or the oldest waited long enough, to flush now.

        Example:
            >>> # if journal.due(): journal.flush()
        """
        if self.queued_since is None:
            return False
        return (
            self.queued >= self.flush_steps
            or time.monotonic() - self.queued_since >= self.flush_after
        )

    def timeout(self, show_running_after: float) -> float:
        """Seconds the driver may wait for a step before it must flush.

        Example:
            >>> # wait(futures, journal.timeout(0.2), FIRST_COMPLETED)
        """
        if self.queued_since is None:
            return show_running_after
        left = self.queued_since + self.flush_after - time.monotonic()
        return max(0.0, min(show_running_after, left))

    def flush(self, status: str | None = None, finished_at: float | None = None) -> None:
        """Write everything queued (and the run's status) in one transaction.

        Steps still running get their run written as RUNNING, so that their records never
        point at a run that is not there and a long step shows as running. The queue is
        cleared only once the transaction has committed.

        Example:
            >>> # journal.flush(status="finished", finished_at=time.time())
        """
        if not self.dirty and status is None and not self.created and not self.ended_runs:
            return
        unshown = [run for name, run in self.open.items() if name not in self.shown]
        created = [*self.created, *unshown]
        ended, entries = list(self.ended_runs), list(self.entries)

        def write(conn: Connection) -> None:
            if self.parent is not None and (created or ended):
                run_batch.write_runs(
                    conn, self.parent, created=created, ended=ended, actor=self.actor
                )
            cache.record_many(
                conn,
                [
                    cache.NewEntry(e.key, e.step, e.output, e.run_id, self.record.id)
                    for e in entries
                ],
            )

        pipeline_store.save(
            self.engine,
            self.record.id,
            list(self.dirty.values()),
            status=status,
            finished_at=finished_at,
            also=write,
        )
        self.shown.update(self.open.keys())
        self.dirty.clear()
        self.created.clear()
        self.ended_runs.clear()
        self.entries.clear()
        self.queued = 0
        self.queued_since = None

    def mark_failed(self, error: str, finished_at: float) -> None:
        """Mark the run failed in a second, minimal write (see
        :func:`~loopline.training.pipeline_store.mark_failed`) when :meth:`flush` cannot
        write the batch: the same batch, written again, fails again, and the run stayed
        ``running`` forever.

        Example:
            >>> # journal.mark_failed("the final write failed: OperationalError: ...", time.time())
        """
        pipeline_store.mark_failed(self.engine, self.record.id, error, finished_at)
