"""The driver of one pipeline run: schedule ready steps, hit the cache, record what happens.

The driver (the process that called ``pipeline.run``) is the only writer of the metadata
database. It walks the graph: a step whose inputs are all done is *ready*; a ready step
whose cache key is in the step cache is ``cached`` at once (nothing runs); any other is
submitted to the executor with its child run started, one try per call: the runner sends
the next try after a try that raised, timed out (``@step(timeout=...)``) or whose worker
process died, while tries are left. When a step fails every step that depends on it is
``skipped``; independent branches go on. The run ends ``finished`` when
no step failed, else ``failed``.

Each executed step gets a tracked run nested under the pipeline's run, with its params,
and tags for lineage: ``loopline.step.inputs`` (argument -> input artifact digest),
``loopline.step.output`` and ``loopline.step.output_type``, ``loopline.step.cache_key``,
``loopline.step.code_hash``, ``loopline.step.attempts`` and ``loopline.step.status``; a
failed one has the traceback in ``loopline.error``. A cached step records, in
``step_runs.cached_from``, the run whose output it reuses rather than a run of its own.

All of this is written behind, by a :class:`~loopline.training.step_journal.StepJournal`:
a step's run (created, tagged and ended), its record and its cache entry commit in one
transaction, together with those of the steps that ended around it, so that a short step
costs well under a millisecond of bookkeeping; a crash loses only steps that resume
reruns (see the journal's module doc).

Example:
    >>> # Runner(ctx, graph, record, run=pipeline_run).run(executor)  -- see Pipeline.run
"""

from __future__ import annotations

import heapq
import json
import logging
import queue
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from loopline.core.context import Context
from loopline.errors import NotFound
from loopline.training import cache
from loopline.training.executors import Executor
from loopline.training.outputs import StoredOutput
from loopline.training.pipeline_store import PipelineRecord, StepRecord
from loopline.training.step_journal import CacheWrite, StepJournal
from loopline.training.steps import Graph, GraphBuilder, Node, Spec
from loopline.training.worker import StepOutcome, StepTask, StoreSpec, backoff, execute_step
from loopline.training.worker_calls import TaskTimedOut, WorkerDied

if TYPE_CHECKING:
    from loopline.tracking.run_handle import Run

#: Tag prefix of everything Loopline records about a step on its run.
STEP_TAG = "loopline.step"
PIPELINE_TAG = "loopline.pipeline"
_MAX_PARAM = 500
_log = logging.getLogger(__name__)
#: Seconds a step may run before its ``running`` status (and RUNNING run) is written.
_SHOW_RUNNING_AFTER = 0.2


@dataclass(frozen=True)
class StepEvent:
    """A step changed status (for progress displays): ``done`` of ``total`` steps settled."""

    step: str
    status: str
    attempts: int
    done: int
    total: int


@dataclass(frozen=True)
class Reused:
    """An output a resumed run takes over from the run it resumes, made under
    ``cache_key``: it is taken over only while the step's key is still that one (the same
    code on the same inputs)."""

    output: StoredOutput
    run_id: str | None
    cache_key: str | None = None


EventFn = Callable[[StepEvent], None]


def display(spec: Spec) -> Any:
    """A readable JSON form of an argument spec, for params and ``pipeline show``.

    Example:
        >>> display({"list": [{"v": 1}, {"ref": "load", "path": [0]}]})
        [1, '<output of load[0]>']
    """
    if "v" in spec:
        return spec["v"]
    if "ref" in spec:
        path = "".join(f"[{k!r}]" if isinstance(k, str) else f"[{k}]" for k in spec["path"])
        return f"<output of {spec['ref']}{path}>"
    if "a" in spec:
        return f"<{spec['t']} {spec['a'][:12]}>"
    if "dict" in spec:
        return {k: display(s) for k, s in spec["dict"].items()}
    kind = "list" if "list" in spec else "tuple"
    return [display(s) for s in spec[kind]]


def param_text(value: Any) -> str:
    """A param value as logged on a run: strings as they are, the rest as JSON, shortened.

    Example:
        >>> param_text([1, 2]), param_text("a")
        ('[1, 2]', 'a')
    """
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= _MAX_PARAM else text[: _MAX_PARAM - 3] + "..."


def inputs_tag(inputs: dict[str, str]) -> str:
    """The ``loopline.step.inputs`` tag: argument -> input digest as JSON, within a tag's
    length limit.

    A step fed by many others (a fan-in of a few hundred outputs) has more inputs than a
    tag holds; the whole list failed the pipeline's bookkeeping and left the run
    ``running``. The tag keeps the first inputs and says how many more there are; the step's
    record (``loopline pipeline show``) has every one.

    Example:
        >>> inputs_tag({"df": "ab12"})
        '{"df": "ab12"}'
        >>> many = inputs_tag({f"xs[{i}]": "f" * 64 for i in range(300)})
        >>> len(many) <= 8000, json.loads(many)["..."]
        (True, '199 more inputs: see `loopline pipeline show`')
    """
    from loopline.tracking.validation import MAX_TAG_VALUE_LENGTH

    text = json.dumps(inputs)
    if len(text) <= MAX_TAG_VALUE_LENGTH:
        return text
    kept: dict[str, str] = {}
    size = 100  # room for the braces and the note on what was left out
    for key, digest in inputs.items():
        size += len(json.dumps(key)) + len(json.dumps(digest)) + 4
        if size > MAX_TAG_VALUE_LENGTH:
            break
        kept[key] = digest
    kept["..."] = f"{len(inputs) - len(kept)} more inputs: see `loopline pipeline show`"
    return json.dumps(kept)


def build_graph(
    fn: Callable[..., Any], call: tuple[tuple[Any, ...], dict[str, Any]], ctx: Context
) -> Graph:
    """Run a pipeline function in build mode and return its checked graph.

    Example:
        >>> # build_graph(train.fn, ((), {"n": 10}), get_context()).order()
    """
    builder = GraphBuilder(ctx.artifacts)
    with builder.building():
        fn(*call[0], **call[1])
    builder.graph.order()
    return builder.graph


class Runner:
    """Runs one built pipeline graph to the end and records everything (see module doc)."""

    def __init__(
        self,
        ctx: Context,
        graph: Graph,
        record: PipelineRecord,
        *,
        run: Run,
        on_event: EventFn | None = None,
        reuse: dict[str, Reused] | None = None,
        use_cache: bool = True,
    ) -> None:
        self.ctx = ctx
        self.pipeline_run = run
        self.use_cache = use_cache
        self.graph = graph
        self.record = record
        self.order = graph.order()
        self.on_event = on_event
        self.reuse = reuse or {}
        self.store = ctx.artifacts
        self.store_spec = StoreSpec(
            ctx.settings.artifacts_uri,
            ctx.settings.s3_storage_options()
            if ctx.settings.artifacts_uri.startswith("s3://")
            else {},
        )
        self.done: dict[str, StoredOutput] = {}
        self.waiting = {n.name: set(n.upstream) for n in self.order}
        self.downstream = graph.downstream()
        self.journal = StepJournal(ctx.engine, record, ctx.settings.actor_name)
        self.settled = 0
        #: Each submitted step's task, to send its next try; the try in flight (from 0);
        #: the start of a retried step's first try.
        self.tasks: dict[str, StepTask] = {}
        self.attempts_sent: dict[str, int] = {}
        self.first_start: dict[str, float] = {}
        for node in self.order:
            record.steps[node.name] = StepRecord(
                node.name,
                node.position,
                node.step.target,
                upstream=list(node.upstream),
                params={k: display(s) for k, s in node.args.items()},
                code_hash=node.step.code_hash,
            )

    # -- driving ---------------------------------------------------------------------------

    def run(self, executor: Executor) -> str:
        """Run every step on ``executor``; return ``finished`` or ``failed``.

        Step runs are children of ``run`` (the pipeline's run) and inherit its environment.

        Example:
            >>> # with start_run(...) as run:
            >>> #     status = Runner(ctx, graph, record, run=run).run(LocalExecutor())
        """
        self.journal.begin(self.pipeline_run)
        in_flight: dict[Future[StepOutcome], str] = {}
        # Futures report here when done: lighter than concurrent.futures.wait, which
        # registers a waiter on every pending future each time it is called.
        done: queue.SimpleQueue[Future[StepOutcome]] = queue.SimpleQueue()
        ready = [(n.position, n.name) for n in self.order if not n.upstream]
        heapq.heapify(ready)
        try:
            while ready or in_flight:
                while ready:
                    _, name = heapq.heappop(ready)
                    fut = self._start(self.graph.nodes[name], executor)
                    if fut is None:
                        self._release(name, ready)
                    else:
                        in_flight[fut] = name
                        fut.add_done_callback(done.put)
                if not in_flight:
                    break
                # Steps that end quickly are written once, when they end; slower ones are
                # shown as running (``loopline pipeline show``) after a moment, and what
                # ended meanwhile is not kept waiting longer than the journal allows.
                try:
                    first = done.get(timeout=self.journal.timeout(_SHOW_RUNNING_AFTER))
                except queue.Empty:
                    self.journal.flush()
                    first = done.get()
                finished = [first]
                while not done.empty():
                    finished.append(done.get_nowait())
                for fut in sorted(finished, key=lambda f: self.graph.nodes[in_flight[f]].position):
                    name = in_flight.pop(fut)
                    outcome = self._outcome(fut, name)
                    if self._retry(outcome):
                        again = self._submit(name, outcome.attempts, executor)
                        in_flight[again] = name
                        again.add_done_callback(done.put)
                    elif self._finish(name, outcome):
                        self._release(name, ready)
            failed = any(s.status == "failed" for s in self.record.steps.values())
            status = "failed" if failed else "finished"
            self.record.status = status
            self.record.finished_at = time.time()
            # Inside the try: a failure of this last write left the run `running` forever.
            self.journal.flush(status=status, finished_at=self.record.finished_at)
        except BaseException as exc:
            for fut in in_flight:
                fut.cancel()
            self._abort(exc)
            raise
        return status

    def _release(self, name: str, ready: list[tuple[int, str]]) -> None:
        for down in self.downstream[name]:
            waiting = self.waiting[down]
            waiting.discard(name)
            if not waiting and self.record.steps[down].status == "pending":
                heapq.heappush(ready, (self.graph.nodes[down].position, down))

    def _event(self, rec: StepRecord) -> None:
        if rec.status in ("finished", "failed", "cached", "skipped"):
            self.settled += 1
        if self.on_event is not None:
            self.on_event(
                StepEvent(rec.name, rec.status, rec.attempts, self.settled, len(self.order))
            )

    # -- one step --------------------------------------------------------------------------

    def _start(self, node: Node, executor: Executor) -> Future[StepOutcome] | None:
        """Resolve the inputs; settle the step from the cache, or submit it."""
        rec = self.record.steps[node.name]
        inputs: dict[str, str] = {}
        args = {k: cache.resolve(s, self.done, self.store, inputs, k) for k, s in node.args.items()}
        rec.inputs = inputs
        rec.cache_key = cache.cache_key(node.step, args)
        self.journal.touch(rec)
        reused = self.reuse.get(node.name)
        if reused is not None and (rec.cache_key is None or reused.cache_key != rec.cache_key):
            # The step's code or an input changed since the resumed run: its old output
            # was made by other code from other data, so the step runs again. No key (a
            # global it reads is too large to digest): no way to tell, so it runs too.
            reused = None
        hit = None
        reads: list[list[Any]] = []
        if reused is None and node.step.cache and self.use_cache and rec.cache_key is not None:
            hit = cache.lookup(self.ctx.engine, rec.cache_key, self.store)
            if hit is not None:
                reads = _step_reads(hit.run_id)
                if _read_newer_data(reads):  # the output was made from data now replaced
                    hit = None
        elif reused is not None:
            reads = _step_reads(reused.run_id)
        if reused is not None or hit is not None:
            rec.status = "cached"
            rec.output = reused.output if reused else hit.output  # type: ignore[union-attr]
            rec.cached_from = reused.run_id if reused else hit.run_id  # type: ignore[union-attr]
            rec.started_at = rec.finished_at = time.time()
            _carry_reads(reads)
            self.done[node.name] = rec.output
            self._event(rec)
            return None
        rec.status = "running"
        rec.started_at = time.time()
        # The run's bookkeeping is done before the step starts: done while a local step
        # runs, it would fight the step's thread for the GIL.
        self._open_run(node, rec)
        self.tasks[node.name] = StepTask(node.name, node.step, args, self.store_spec)
        future = self._submit(node.name, 0, executor)
        self._event(rec)
        return future

    def _submit(self, name: str, attempt: int, executor: Executor) -> Future[StepOutcome]:
        """Send try ``attempt`` (from 0) of a step to the executor.

        One try per call: a try that times out or whose worker dies ends the call, so the
        runner, not the worker, sends the next try.
        """
        task = replace(self.tasks[name], attempt=attempt)
        self.attempts_sent[name] = attempt
        timeout = task.step.timeout
        if timeout is None:
            return executor.submit(execute_step, task)
        # The try sleeps its backoff first, in the call: the call gets that time on top.
        return executor.submit_with_timeout(
            timeout + backoff(task.step, attempt), execute_step, task
        )

    def _retry(self, outcome: StepOutcome) -> bool:
        """Whether to try the step again: it failed by itself (it raised, timed out or
        its worker died) and has tries left. Keeps the first try's start."""
        step = self.graph.nodes[outcome.node].step
        if outcome.status != "failed" or not outcome.retryable or outcome.attempts > step.retries:
            return False
        self.first_start.setdefault(outcome.node, outcome.started_at)
        return True

    def _outcome(self, fut: Future[StepOutcome], name: str) -> StepOutcome:
        """The future's outcome; a try that timed out or whose worker process died is a
        failed (retryable) try; any other executor failure fails the step."""
        try:
            return fut.result()
        except Exception as exc:
            now = time.time()
            attempt = self.attempts_sent.get(name, 0)
            step = self.graph.nodes[name].step
            if isinstance(exc, TaskTimedOut):
                error = f"step {name!r} timed out after {step.timeout:g} s (its worker was stopped)"
            elif isinstance(exc, WorkerDied):
                error = f"{exc} while it ran step {name!r}"
            else:
                return StepOutcome(
                    name,
                    "failed",
                    0,
                    error=f"the executor lost the step: {type(exc).__name__}: {exc}",
                    started_at=now,
                    finished_at=now,
                )
            return StepOutcome(
                name,
                "failed",
                attempt + 1,
                error=error,
                started_at=self.record.steps[name].started_at or now,  # when it was sent
                finished_at=now,
                retryable=True,
            )

    def _open_run(self, node: Node, rec: StepRecord) -> None:
        """Give the submitted step its run (written by the journal, with the parent's
        environment tags), tagged for lineage and with the step's params."""
        tags = {
            STEP_TAG: node.name,
            f"{STEP_TAG}.function": node.step.target,
            f"{STEP_TAG}.code_hash": node.step.code_hash,
            f"{STEP_TAG}.inputs": inputs_tag(rec.inputs or {}),
            f"{PIPELINE_TAG}.run": self.record.id,
        }
        if rec.cache_key is not None:
            tags[f"{STEP_TAG}.cache_key"] = rec.cache_key
        rec.run_id = self.journal.started(
            rec, tags=tags, params={k: param_text(v) for k, v in (rec.params or {}).items()}
        )

    def _finish(self, name: str, outcome: StepOutcome) -> bool:
        """Record an outcome; True when the step finished (its dependents may start)."""
        from loopline.tracking.run_handle import ERROR_TAG
        from loopline.tracking.validation import MAX_TAG_VALUE_LENGTH

        rec = self.record.steps[name]
        node = self.graph.nodes[name]
        rec.status = outcome.status
        rec.attempts = outcome.attempts
        rec.output = outcome.output
        rec.error = outcome.error
        rec.started_at = self.first_start.pop(name, None) or outcome.started_at or rec.started_at
        rec.finished_at = outcome.finished_at or time.time()
        tags: dict[str, Any] = {
            f"{STEP_TAG}.status": rec.status,
            f"{STEP_TAG}.attempts": rec.attempts,
        }
        if rec.output is not None:
            tags[f"{STEP_TAG}.output"] = rec.output.digest
            tags[f"{STEP_TAG}.output_type"] = rec.output.type
        if outcome.reads:  # kept with the step's run: a cache hit on it reads them again
            tags[READS_TAG] = json.dumps([list(r) for r in outcome.reads])
        if rec.error is not None:
            tags[ERROR_TAG] = rec.error[-MAX_TAG_VALUE_LENGTH:]
        entry = None
        if (
            rec.status == "finished"
            and node.step.cache
            and rec.output is not None
            and rec.cache_key is not None  # no key: a global too large to digest
        ):
            entry = CacheWrite(rec.cache_key, node.step, rec.output, rec.run_id)
        self.journal.ended(rec, "FINISHED" if rec.status == "finished" else "FAILED", tags, entry)
        skipped: list[StepRecord] = []
        if rec.status == "finished":
            assert rec.output is not None
            self.done[name] = rec.output
        else:
            for down in sorted(
                self.graph.descendants(name), key=lambda n: self.graph.nodes[n].position
            ):
                skip = self.record.steps[down]
                if skip.status == "pending":
                    skip.status = "skipped"
                    skip.error = f"not run: upstream step {name!r} failed"
                    self.journal.touch(skip)
                    skipped.append(skip)
        # A failure is durable before anyone hears of it; the rest is written in batches.
        if rec.status != "finished" or self.journal.due():
            self.journal.flush()
        for skip in skipped:
            self._event(skip)
        self._event(rec)
        return rec.status == "finished"

    def _abort(self, exc: BaseException) -> None:
        """The driver itself failed or was interrupted: close what is open, then re-raise."""
        what = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        reason = f"pipeline {what}: {type(exc).__name__}: {exc}"
        now = time.time()
        for rec in self.record.steps.values():
            if rec.status in ("pending", "running"):
                rec.status = "failed" if rec.status == "running" else "skipped"
                rec.error, rec.finished_at = reason, now
                self.journal.touch(rec)
        self.journal.end_open("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        self.record.status, self.record.finished_at = "failed", now
        try:
            self.journal.flush(status="failed", finished_at=now)
        except Exception as write_error:
            # The batch may be what fails (a row the database refuses): written again, it
            # fails again. A second write of the run's status alone still marks it failed.
            _log.warning("pipeline run %s: writing its end failed: %s", self.record.id, write_error)
            error = f"{reason}; then writing the run's end failed: {write_error}"
            try:
                self.journal.mark_failed(error, now)
            except Exception as mark_error:  # the database is gone: nothing more to try
                _log.error("pipeline run %s stays 'running': %s", self.record.id, mark_error)


#: The tag of a step's run listing the dataset versions the step read, as JSON.
READS_TAG = f"{STEP_TAG}.datasets"


def _step_reads(step_run_id: str | None) -> list[list[Any]]:
    """The dataset reads a step's run recorded: ``[name, version, hash, latest]`` each."""
    from loopline.tracking.api import get_run

    if step_run_id is None:
        return []
    try:
        raw = get_run(step_run_id).tags.get(READS_TAG)
    except NotFound:  # the step's run was deleted: nothing left to carry
        return []
    return list(json.loads(raw or "[]"))


def _read_newer_data(reads: list[list[Any]]) -> bool:
    """Whether a read of "latest" would now give another version: the cache key (code and
    arguments) cannot see what a step reads inside, so a hit is checked against it."""
    from loopline.data.dataset_reads import latest_number

    for name, version, _digest, *latest in reads:
        if latest and latest[0]:
            try:
                if latest_number(name) != version:
                    return True
            except NotFound:  # the dataset is gone: the step must run to say so
                return True
    return False


def _carry_reads(reads: list[list[Any]]) -> None:
    """Record, on the active (pipeline) run, the dataset versions the step whose output is
    reused had read: the model built from that output came from them (lineage, and what
    ``reproduce`` pins), though the step does not run again to read them.
    """
    from loopline.tracking.api import active_run

    run = active_run()
    if run is None:
        return
    for name, version, digest, *_ in reads:
        run.log_input("dataset", name, str(version), digest)
