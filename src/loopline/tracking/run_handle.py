"""The SDK's handle on one run (:class:`Run`): read it, log to it, end it.

Separate from :mod:`loopline.tracking.api`, which starts, finds and searches runs and hands
out these handles: a ``Run`` is where the SDK's per-call work happens - metric points
queued for the background writer (:mod:`loopline.tracking.ingest`), params and tags kept
until a new run is written (:mod:`loopline.tracking.deferred`, with the points of
:class:`~loopline.tracking.early_points.EarlyPoints`), artifacts stored, and the run ended
FINISHED, FAILED (with :data:`ERROR_TAG`) or KILLED.

Example:
    >>> import loopline as ll  # doctest: +SKIP
    >>> with ll.start_run(experiment="churn") as run:  # doctest: +SKIP
    ...     run.log_metric("auc", 0.91)
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from loopline.core.context import Context
from loopline.errors import BackendUnavailable, Conflict, InvalidInput, remedy
from loopline.tracking import active, artifact_files, deferred, ingest
from loopline.tracking._dialect import MetricRow
from loopline.tracking.backend import TrackingBackend, backend_for
from loopline.tracking.early_points import EarlyPoints
from loopline.tracking.entities import ArtifactEntry, NewRun, RunInput, RunRecord, now_ms
from loopline.tracking.param_tag_checks import check_params, check_tags
from loopline.tracking.validation import (
    MAX_TAG_VALUE_LENGTH,
    check_artifact_path,
    check_int,
    check_key,
    metric_float,
    stored_metric_value,
)

if TYPE_CHECKING:
    from loopline.training.registry_records import LoggedModel

#: Tag holding the exception type, message and traceback of a FAILED run.
ERROR_TAG = "loopline.error"


_new_rlock = threading.RLock


class Run:
    """One tracking run: read its data, log to it, end it.

    ``params``, ``metrics`` (latest values), ``tags`` and ``inputs`` reflect everything
    logged so far, including queued metric points.

    Example:
        >>> # with ll.start_run(experiment="churn") as run: run.log_metric("auc", 0.91)
    """

    # Immutable starting values live on the class, set on the instance when they change: a
    # search page makes hundreds of runs that are only read.
    _writer: ingest.MetricWriter | None = None
    #: Where log_metric puts points: the writer, or the early buffer while unwritten.
    _log_to: ingest.MetricWriter | EarlyPoints | None = None
    _dirty = False
    _ended = False
    #: The run as prepared, until it is written (None once it is, or when the backend
    #: wrote it at once), with the params and tags logged before that, checked.
    _new: NewRun | None = None
    _parent: Run | None = None
    _early: EarlyPoints | None = None

    def __init__(
        self,
        record: RunRecord,
        ctx: Context,
        new: NewRun | None = None,
        parent: Run | None = None,
        backend: TrackingBackend | None = None,
    ) -> None:
        self._record = record
        self._ctx = ctx
        self._backend: TrackingBackend = backend or backend_for(ctx)
        self._metric_keys: set[str] = set()
        if new is not None and not new.written:
            self._new = new
        if parent is not None:
            self._parent = parent
        self._params: dict[str, str] = {}
        self._tags: dict[str, str | None] = {}
        self._lock = _new_rlock()  # guards _new and the buffers
        #: The process that started the run; only it ends the run at exit (a forked child
        #: may log to an inherited run, and its points are flushed, but it leaves the run open).
        self.owner_pid = os.getpid()
        if self._new is not None:
            deferred.schedule(self)

    @classmethod
    def _read(
        cls, records: Sequence[RunRecord], ctx: Context, backend: TrackingBackend
    ) -> list[Run]:
        """Runs read from the store, as ``Run(record, ctx, backend=backend)`` makes each.

        A search page makes hundreds at once: this sets the same attributes without a
        call of ``__init__`` per run (``tests/tracking/test_api.py`` keeps the two equal).

        Example:
            >>> # Run._read(backend.search_runs(...).runs, ctx, backend)
        """
        pid = os.getpid()
        new_lock = _new_rlock
        runs = []
        for record in records:
            run = object.__new__(cls)
            run.__dict__.update(
                _record=record,
                _ctx=ctx,
                _backend=backend,
                _metric_keys=set(),
                _params={},
                _tags={},
                _lock=new_lock(),
                owner_pid=pid,
            )
            runs.append(run)
        return runs

    def write_pending(self) -> None:
        """Write the run with what was logged so far, if it is not written yet; idempotent.

        Called before anything that needs the run in the store. Raises (and the run stays
        unwritten, nothing lost) when the store refuses or cannot be reached.

        Example:
            >>> # run.write_pending()  # other processes now see the run
        """
        if self._new is None:
            return
        if self.owner_pid != os.getpid():  # inherited through fork: the parent writes it
            return
        with self._lock:
            new = self._new
            if new is None:
                return
            if self._parent is not None:
                self._parent.write_pending()
            self._backend.write_run(new, params=self._params, tags=self._tags, rows=(), end=None)
            self._new = None
            self._params, self._tags = {}, {}
            early, self._early = self._early, None
            self._log_to = self._writer
            if early is not None:  # the run lives on: its points go the usual way from now
                with early.lock:
                    rows, early.rows = early.rows, None
                if rows:
                    self._points_writer().extend(rows)
        deferred.cancel(self)

    # -- reading -------------------------------------------------------------------------

    def _fresh(self) -> RunRecord:
        if self._dirty or self._new is not None:
            self.flush()
            self._record = self._backend.get_run(self.id)
            self._dirty = False
        return self._record

    def refresh(self) -> Run:
        """Reload the run from the store (e.g. to see what another process logged).

        Example:
            >>> # run.refresh().status
        """
        self._dirty = True
        self._fresh()
        return self

    @property
    def id(self) -> str:
        """The run id: 32 hex characters. The run is in the store when this returns."""
        self.write_pending()
        return self._record.id

    @property
    def name(self) -> str | None:
        """The run name."""
        return self._fresh().name

    @property
    def experiment(self) -> str:
        """The name of the run's experiment."""
        return self._record.experiment

    @property
    def experiment_id(self) -> int:
        """The id of the run's experiment."""
        return self._record.experiment_id

    @property
    def status(self) -> str:
        """RUNNING, FINISHED, FAILED or KILLED (SCHEDULED when set by an MLflow client)."""
        return self._fresh().status

    @property
    def start_time(self) -> int:
        """Start time, milliseconds since the epoch."""
        return self._record.start_time

    @property
    def end_time(self) -> int | None:
        """End time, milliseconds since the epoch, or None while running."""
        return self._fresh().end_time

    @property
    def parent_run_id(self) -> str | None:
        """The id of the parent run, for a nested run."""
        return self._record.parent_run_id

    @property
    def user(self) -> str | None:
        """Who started the run."""
        return self._record.user_id

    @property
    def artifact_uri(self) -> str | None:
        """Where MLflow clients find the run's artifacts (served by the Loopline server)."""
        return self._record.artifact_uri

    @property
    def params(self) -> dict[str, str]:
        """Params, as text."""
        return dict(self._fresh().params)

    @property
    def metrics(self) -> dict[str, float]:
        """The latest value of each metric (greatest step, then timestamp)."""
        return self._fresh().metrics

    @property
    def tags(self) -> dict[str, str | None]:
        """Tags, including the ones recorded automatically."""
        return dict(self._fresh().tags)

    @property
    def inputs(self) -> list[RunInput]:
        """Datasets the run read (lineage)."""
        return list(self._fresh().inputs)

    @property
    def artifacts(self) -> list[ArtifactEntry]:
        """Artifact paths of the run and the blobs they point to."""
        self.write_pending()
        return self._backend.list_artifacts(self._record.id)

    def read_artifact(self, path: str) -> bytes:
        """The bytes of one artifact of the run, verified against their digest.

        Example:
            >>> # orjson.loads(run.read_artifact("config/features.json"))
        """
        return self._backend.read_artifact(self.id, path)

    def download_artifact(self, path: str, dest: str | Path) -> Path:
        """Write one artifact of the run to the file ``dest`` and return its path.

        Example:
            >>> # run.download_artifact("model/model.pkl", "/tmp/model.pkl")
        """
        return self._backend.download_artifact(self.id, path, Path(dest))

    def to_dict(self) -> dict[str, Any]:
        """Everything about the run as plain JSON-ready values.

        Example:
            >>> # run.to_dict()["metrics"]
        """
        r = self._fresh()
        return {
            "id": r.id,
            "name": r.name,
            "experiment": r.experiment,
            "experiment_id": r.experiment_id,
            "status": r.status,
            "start_time": r.start_time,
            "end_time": r.end_time,
            "parent_run_id": r.parent_run_id,
            "user": r.user_id,
            "lifecycle_stage": r.lifecycle_stage,
            "artifact_uri": r.artifact_uri,
            "params": dict(r.params),
            "metrics": r.metrics,
            "tags": dict(r.tags),
            "inputs": [i.__dict__ for i in r.inputs],
        }

    def __repr__(self) -> str:
        return f"<Run {self._record.id} {self._record.name!r} in {self.experiment!r}>"

    # -- logging -------------------------------------------------------------------------

    def log_metric(
        self, key: str, value: float, step: int | None = None, timestamp: int | None = None
    ) -> None:
        """Queue one metric point; cheap (microseconds), written in the background.

        ``step`` defaults to 0 and ``timestamp`` (ms) to now. NaN and +/-inf are allowed
        (stored as MLflow stores them: NaN flagged, inf as +/-1.7976931348623157e308).

        Example:
            >>> # run.log_metric("loss", 0.25, step=10)
        """
        if key not in self._metric_keys:
            self._metric_keys.add(check_key(key, "metric"))
        v = value if type(value) is float else metric_float(key, value)
        is_nan = 0
        if v - v:  # NaN or +/-inf
            v, nan = stored_metric_value(v)
            is_nan = int(nan)
        writer = self._log_to or self._new_writer()
        writer.add(
            (
                self._record.id,
                key,
                v,
                time.time_ns() // 1_000_000
                if timestamp is None
                else _as_int(timestamp, "timestamp"),
                0 if step is None else _as_int(step, "step"),
                is_nan,
            )
        )
        self._dirty = True

    def log_metrics(
        self, metrics: Mapping[str, float], step: int | None = None, timestamp: int | None = None
    ) -> None:
        """Queue several metric points with one step and timestamp; all or none are queued.

        Example:
            >>> # run.log_metrics({"loss": 0.25, "acc": 0.9}, step=10)
        """
        ts = time.time_ns() // 1_000_000 if timestamp is None else _as_int(timestamp, "timestamp")
        st = 0 if step is None else _as_int(step, "step")
        keys = self._metric_keys
        run_id = self._record.id
        rows = []
        try:  # inline, not _items: a call costs the hot path ~40 ns
            items = metrics.items()
        except AttributeError:
            _items(metrics, "metrics")  # raises, naming the field
            raise
        for key, value in items:
            if key not in keys:
                keys.add(check_key(key, "metric"))
            v = value if type(value) is float else metric_float(key, value)
            if v - v:
                v, nan = stored_metric_value(v)
                rows.append((run_id, key, v, ts, st, int(nan)))
            else:
                rows.append((run_id, key, v, ts, st, 0))
        (self._log_to or self._new_writer()).extend(rows)
        self._dirty = True

    def _new_writer(self) -> ingest.MetricWriter | EarlyPoints:
        with self._lock:
            if self._new is not None:  # not written yet: keep the points for the write
                if self._early is None:
                    self._early = EarlyPoints(self)
                self._log_to = self._early
                return self._early
            return self._points_writer()

    def _points_writer(self) -> ingest.MetricWriter:
        with self._lock:  # two threads logging the first points make one writer
            if self._writer is None:
                self._writer = ingest.MetricWriter(self._backend.metric_sink())
            self._log_to = self._writer
            return self._writer

    def log_param(self, key: str, value: Any) -> None:
        """Log one param (stored as text). Logging another value later is a Conflict.

        Example:
            >>> # run.log_param("lr", 0.05)
        """
        self.log_params({key: value})

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log several params at once (stored as text; at most 6,000 characters each).

        Example:
            >>> # run.log_params({"model": "lgbm", "lr": 0.05})
        """
        params = dict(_items(params, "params"))
        if self._new is not None:
            with self._lock:
                if self._new is not None:
                    self._buffer(check_params(params), {})
                    return
        self._backend.log_batch(self._record.id, params=params, tags={})
        self._dirty = True

    def set_tag(self, key: str, value: Any) -> None:
        """Set (or overwrite) a tag (at most 8,000 characters).

        Example:
            >>> # run.set_tag("stage", "candidate")
        """
        self.set_tags({key: value})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set (or overwrite) several tags.

        Example:
            >>> # run.set_tags({"team": "risk", "stage": "candidate"})
        """
        tags = dict(_items(tags, "tags"))
        if self._new is not None:
            with self._lock:
                if self._new is not None:
                    self._buffer({}, check_tags(tags))
                    return
        self._backend.log_batch(self._record.id, params={}, tags=tags)
        self._dirty = True

    def _buffer(self, params: dict[str, str], tags: dict[str, str | None]) -> None:
        """Keep checked params and tags for the run's write (caller holds the lock)."""
        for key, text in params.items():
            old = self._params.get(key)
            if old is not None and old != text:
                raise Conflict(
                    f"param {key!r} of run {self._record.id} is already {old!r}; "
                    f"it cannot be changed to {text!r}",
                    hint="params are immutable: start a new run, or log the new value as a "
                    "tag or a metric",
                )
        self._params.update(params)
        self._tags.update(tags)
        self._dirty = True

    def log_input(
        self, kind: str, name: str, version: str, digest: str, context: str | None = None
    ) -> None:
        """Record that the run read a dataset version (lineage); idempotent.

        Example:
            >>> # run.log_input("dataset", "churn", "3", "9f86d081...", context="training")
        """
        item = RunInput(kind, name, str(version), digest, context)
        self._backend.log_inputs(self.id, [item])
        self._dirty = True

    def log_artifact(
        self, path: str | Path, artifact_path: str | None = None
    ) -> list[ArtifactEntry]:
        """Store a file or a folder, content-addressed, under ``artifact_path`` in the run.

        A file keeps its name (``artifact_path/name``); a folder keeps its name and layout
        (``artifact_path/folder/...``). Returns the entries recorded.

        Example:
            >>> # run.log_artifact("model.pkl", artifact_path="model")
        """
        files = artifact_files.collect_files(path, artifact_path)
        return self._backend.log_artifact_files(self.id, files)

    def _log_bytes(self, data: bytes, artifact_file: str) -> ArtifactEntry:
        check_artifact_path(artifact_file)
        return self._backend.log_artifact_bytes(self.id, artifact_file.strip("/"), data)

    def log_dict(self, dictionary: Any, artifact_file: str) -> ArtifactEntry:
        """Store a dict (or list) as a JSON artifact, or YAML when the name ends .yaml/.yml.

        Example:
            >>> # run.log_dict({"features": ["age", "plan"]}, "config/features.json")
        """
        return self._log_bytes(artifact_files.encode_dict(dictionary, artifact_file), artifact_file)

    def log_figure(self, figure: Any, artifact_file: str) -> ArtifactEntry:
        """Store a matplotlib figure as an image (PNG, or SVG/PDF by the file's extension).

        matplotlib is imported only when this is called; without it, InvalidInput.

        Example:
            >>> # fig, ax = plt.subplots(); ax.plot([1, 2]); run.log_figure(fig, "plots/curve.png")
        """
        check_artifact_path(artifact_file)
        return self._log_bytes(artifact_files.render_figure(figure, artifact_file), artifact_file)

    def log_model(
        self, model: Any, name: str, input_example: Any = None, signature: Any = None
    ) -> LoggedModel:
        """Save a model (scikit-learn, XGBoost, LightGBM) as a logged model of this run.

        The files are stored content-addressed with a manifest (flavor, library versions,
        signature inferred from ``input_example``, file digests); see
        :mod:`loopline.training.models`. Register it with ``ll.registry.register``.

        Example:
            >>> # logged = run.log_model(clf, "model", input_example=X_train.head(5))
        """
        from loopline.training.models import log_model

        return log_model(
            self._ctx, self, model, name, input_example=input_example, signature=signature
        )

    def flush(self) -> None:
        """Write every queued metric point; when this returns they are committed.

        Example:
            >>> # run.flush()
        """
        try:
            self.write_pending()
        except BackendUnavailable as exc:
            early = self._early
            waiting = len(early.rows or ()) if early is not None else 0
            raise BackendUnavailable(
                f"could not write {waiting} metric points (nor run {self._record.id}, "
                f"not yet written either): {exc.message}",
                hint=f"they are still queued: {remedy(exc, 'fix the backend (LOOPLINE_URI)')};"
                " then flush again",
            ) from exc
        if self._writer is not None:
            self._writer.flush()

    # -- ending --------------------------------------------------------------------------

    def end(self, status: str = "FINISHED", error: BaseException | None = None) -> None:
        """Flush, record the end time and status; idempotent. ``error`` goes to a tag.

        Example:
            >>> # run.end("KILLED")
        """
        if self._ended:
            return
        if error is not None:
            self.set_tags(
                {ERROR_TAG: _describe_error(error), f"{ERROR_TAG}.type": type(error).__name__}
            )
        if self._new is None or not self._end_unwritten(status):
            # Raises if the points cannot be written: the run stays open, its points queued.
            self._backend.finish_run(
                self._record.id, status=status, end_time=now_ms(), writer=self._writer
            )
        self._writer = self._log_to = None
        self._ended = True
        self._dirty = True  # the next read fetches the final record
        active.forget(self)

    def _end_unwritten(self, status: str) -> bool:
        """Write a run not written yet together with its end: one commit. False if it was
        written meanwhile (by the background thread), and the caller ends it as usual."""
        if self.owner_pid != os.getpid():
            return True  # inherited through fork: the parent writes and ends it
        with self._lock:
            new = self._new
            if new is None:
                return False
            if self._parent is not None:
                self._parent.write_pending()
            early = self._early
            rows: list[MetricRow] = []
            if early is not None:
                with early.lock:
                    rows = early.rows or []
                    self._backend.write_run(
                        new, params=self._params, tags=self._tags, rows=rows,
                        end=(status, now_ms()),
                    )  # fmt: skip
                    early.rows = None
            else:
                self._backend.write_run(
                    new, params=self._params, tags=self._tags, rows=(), end=(status, now_ms())
                )
            self._new = None
            self._params, self._tags = {}, {}
            self._early = None
        deferred.cancel(self)
        return True

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.end("FINISHED")
        elif isinstance(exc, KeyboardInterrupt):
            self.end("KILLED", error=exc)
        else:
            self.end("FAILED", error=exc)


def _items(values: Mapping[str, Any], field: str) -> Any:
    """``values.items()``; InvalidInput naming ``field`` when ``values`` is no mapping.

    A list of pairs (or anything else) failed with AttributeError or ValueError from inside.
    """
    try:
        return values.items()
    except AttributeError:
        raise InvalidInput(
            f"{field} must be a dict of key to value, got {type(values).__name__}: {values!r:.200}",
            field=field,
            hint="pass a dict such as {'name': value}",
        ) from None


def _as_int(value: Any, field: str) -> int:
    # Checked here, at the call: a step or timestamp past 64 bits found only at the flush
    # would refuse the whole batch, the good points with it.
    if type(value) is int and -(2**63) <= value < 2**63:
        return value
    return check_int(value, field)


def _describe_error(exc: BaseException) -> str:
    head = f"{type(exc).__qualname__}: {exc}"
    tb = "".join(traceback.format_exception(exc))
    text = f"{head}\n\n{tb}"
    if len(text) <= MAX_TAG_VALUE_LENGTH:
        return text
    keep = MAX_TAG_VALUE_LENGTH - 200
    return f"{head[:150]}\n\n...\n{tb[-keep:]}"[:MAX_TAG_VALUE_LENGTH]
