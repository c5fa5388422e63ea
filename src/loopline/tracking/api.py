"""The tracking SDK: ``ll.start_run``, ``Run``, ``ll.get_run``, ``ll.search_runs``, ...

A run started with :func:`start_run` records, without being asked, the git commit and a
hash of uncommitted changes, the command line, the Python version, the host and every
installed package (see :mod:`loopline.tracking.environment`). Used as a context manager it
ends FINISHED, or FAILED with the exception's type, message and traceback in the
``loopline.error`` tag (KILLED on Ctrl-C). A run started while another is active in the
same thread becomes its child.

``log_metric`` and ``log_metrics`` only queue the points (:mod:`loopline.tracking.ingest`);
a background thread writes them. ``run.flush()``, the end of the run, every read through
this module and interpreter exit write what is queued. Params, tags, inputs and artifacts
are written at once - except that a new run is written together with its first data: the
params and tags logged right after ``start_run`` (checked at once, as always), and for a
run that ends quickly its points and its end too, all in one commit. A started run is
written at the latest :data:`~loopline.tracking.deferred.WRITE_DELAY_S` after it started,
and as soon as anything needs it to exist: reading it, ``run.id``, an artifact, an input,
``flush``, a search or ``get_run`` in this process (see :mod:`loopline.tracking.deferred`).

Everything goes through a :class:`~loopline.tracking.backend.TrackingBackend` chosen by
``LOOPLINE_URI``: the database itself (``sqlite://``, ``postgresql://``) or a Loopline
server (``http(s)://``, the REST API ``/api/v1``); the code using the SDK is the same.

Example:
    >>> import loopline as ll  # doctest: +SKIP
    >>> with ll.start_run(experiment="churn", name="lgbm") as run:  # doctest: +SKIP
    ...     run.log_params({"model": "lgbm", "lr": 0.05})
    ...     for step in range(100):
    ...         run.log_metrics({"loss": 1 / (step + 1)}, step=step)
    >>> ll.search_runs("churn", filter="params.model = 'lgbm'")[0].metrics["loss"]  # doctest: +SKIP
    0.01
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

from loopline.core.context import Context, get_context
from loopline.errors import BackendUnavailable, Conflict, InvalidInput, NotFound, remedy
from loopline.tracking import active, artifact_files, deferred, environment, ingest
from loopline.tracking._dialect import MetricRow
from loopline.tracking.backend import TrackingBackend, backend_for
from loopline.tracking.entities import (
    MIN_RUN_ID_PREFIX,
    RUN_ID_LENGTH,
    ArtifactEntry,
    MetricPoint,
    NewRun,
    RunInput,
    RunRecord,
    ViewType,
    is_run_id_prefix,
    now_ms,
)
from loopline.tracking.experiments import check_experiment_name
from loopline.tracking.param_tag_checks import check_params, check_tags
from loopline.tracking.validation import (
    MAX_TAG_VALUE_LENGTH,
    check_artifact_path,
    check_int,
    check_key,
    check_run_name,
    check_run_search,
    metric_float,
    stored_metric_value,
)

if TYPE_CHECKING:
    from loopline.training.registry_records import LoggedModel

DEFAULT_EXPERIMENT = "Default"
#: Tag holding the exception type, message and traceback of a FAILED run.
ERROR_TAG = "loopline.error"
#: Tag holding the digest of the run's environment document.
ENVIRONMENT_TAG = "loopline.environment"


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
    _log_to: ingest.MetricWriter | _EarlyPoints | None = None
    _dirty = False
    _ended = False
    #: The run as prepared, until it is written (None once it is, or when the backend
    #: wrote it at once), with the params and tags logged before that, checked.
    _new: NewRun | None = None
    _parent: Run | None = None
    _early: _EarlyPoints | None = None

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

    def _new_writer(self) -> ingest.MetricWriter | _EarlyPoints:
        with self._lock:
            if self._new is not None:  # not written yet: keep the points for the write
                if self._early is None:
                    self._early = _EarlyPoints(self)
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


#: Points a run not yet written keeps before it writes itself to hand them to a writer.
_EARLY_ROWS = 10_000


class _EarlyPoints:
    """Metric points of a run not yet written: written with the run (often with its end).

    Same ``add``/``extend`` as :class:`~loopline.tracking.ingest.MetricWriter`, without its
    thread: a short run then costs one commit. ``rows`` is None once handed over; later
    points go to the run's writer.
    """

    __slots__ = ("_run", "lock", "rows")

    def __init__(self, run: Run) -> None:
        self.lock = threading.Lock()
        self.rows: list[MetricRow] | None = []
        self._run = run

    def add(self, row: MetricRow) -> None:
        with self.lock:
            rows = self.rows
            if rows is not None:
                rows.append(row)
                if len(rows) < _EARLY_ROWS:
                    return
        if rows is None:
            self._run._points_writer().add(row)
        else:
            self._hand_over(len(rows))

    def extend(self, new: Sequence[MetricRow]) -> None:
        with self.lock:
            rows = self.rows
            if rows is not None:
                rows.extend(new)
                if len(rows) < _EARLY_ROWS:
                    return
        if rows is None:
            self._run._points_writer().extend(new)
        else:
            self._hand_over(len(rows))

    def _hand_over(self, waiting: int) -> None:
        """Enough points wait: write the run with them; later points go to a writer."""
        try:
            self._run.write_pending()
        except BackendUnavailable:
            if waiting >= ingest.MAX_PENDING_ROWS:
                raise  # as MetricWriter does: the loop learns that the backend is gone
            # else the background thread, the next hand-over or the end writes them


class RunPage(list[Run]):
    """A page of search results; pass ``next_page_token`` back for the next page (None: last).

    Example:
        >>> RunPage([], next_page_token=None).next_page_token is None
        True
    """

    def __init__(self, runs: Sequence[Run], next_page_token: str | None) -> None:
        super().__init__(runs)
        self.next_page_token = next_page_token


def active_run() -> Run | None:
    """The innermost run started in this thread (else in the main thread), or None.

    The data stage calls this to record which dataset versions a run read.

    Example:
        >>> # if (run := ll.active_run()) is not None: run.log_input("dataset", "churn", "3", d)
    """
    return active.current()


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


def start_run(
    experiment: str | None = None,
    name: str | None = None,
    tags: Mapping[str, Any] | None = None,
    nested: bool = False,
) -> Run:
    """Start a run (use it as a context manager); a run started inside another is its child.

    ``experiment`` is created if missing; it defaults to the parent's experiment, else
    ``Default``. ``nested=True`` insists on a parent: it raises InvalidInput when no run is
    active (MLflow's spelling; a run inside another run is nested either way).

    Example:
        >>> # with ll.start_run(experiment="churn", name="lgbm", tags={"team": "risk"}) as run:
        >>> #     run.log_param("lr", 0.05)
    """
    # Checked before either backend: a wrong type failed deep inside the embedded one
    # (TypeError) and in pydantic for the remote one (ValidationError), and "" silently
    # meant the parent's experiment or Default.
    if experiment is not None:
        check_experiment_name(experiment)
    if name is not None:
        check_run_name(name)
    user_tags = {} if tags is None else dict(_items(tags, "tags"))
    parent = active_run()
    if nested and parent is None:
        raise InvalidInput(
            "start_run(nested=True) needs an active parent run, but none is active",
            field="nested",
            hint="start the parent first: with ll.start_run() as parent: ...",
        )
    ctx = get_context()
    actor = ctx.settings.actor_name
    env_doc = environment.environment_document()
    all_tags: dict[str, Any] = {
        **environment.run_tags(),
        "mlflow.user": actor,
        ENVIRONMENT_TAG: environment.environment_digest(),
        **user_tags,
    }
    new = backend_for(ctx).prepare_run(
        experiment=experiment or (parent.experiment if parent else DEFAULT_EXPERIMENT),
        name=name,
        tags=all_tags,
        parent_run_id=parent._record.id if parent else None,
        user_id=actor,
        files={environment.ENVIRONMENT_ARTIFACT: env_doc},
    )
    run = Run(new.record, ctx, new, parent)
    active.push(run)
    return run


# -- reading ---------------------------------------------------------------------------


def get_run(run_id: str) -> Run:
    """The run with this id; NotFound names the id.

    Example:
        >>> # ll.get_run("3f2a9c...").metrics
    """
    ctx = get_context()
    deferred.write_all()
    ingest.flush_all()
    return Run(backend_for(ctx).get_run(run_id), ctx)


def resolve_run_id(
    run_id: str, *, field: str = "run_id", min_length: int = MIN_RUN_ID_PREFIX
) -> str:
    """The full id of the one run whose id starts with ``run_id``, as git and docker take
    an abbreviated id: at least ``min_length`` lowercase hex characters.

    Anything else is given back unchanged, without a query, for the read that follows to
    judge: a full-length id, and text that is no hex prefix (so ``runs show nope`` still
    says the run does not exist). A hex prefix shorter than ``min_length``, or one that
    starts several runs, is :class:`~loopline.errors.InvalidInput` on ``field`` (the
    latter naming the candidates); one that starts none is
    :class:`~loopline.errors.NotFound`. Deleted runs count too, as ``get_run`` finds them.
    Against a Loopline server the prefix goes through its run search with the same rules.
    :func:`get_run` itself takes full ids only.

    Example:
        >>> import loopline as ll, tempfile
        >>> _ = ll.init(uri="sqlite:///:memory:", artifacts=tempfile.mkdtemp())
        >>> with ll.start_run(experiment="demo") as run:
        ...     pass
        >>> resolve_run_id(run.id[:8]) == run.id
        True
    """
    if type(run_id) is not str or len(run_id) >= RUN_ID_LENGTH or not is_run_id_prefix(run_id):
        return run_id
    if len(run_id) < min_length:
        raise InvalidInput(
            f"run id prefix {run_id!r} is too short: give at least {min_length} characters",
            field=field,
            hint=f"pass at least the first {min_length} characters of the id "
            "(`loopline runs ls` shows them)",
        )
    ctx = get_context()
    deferred.write_all()  # a run this process started but has not written yet
    found = backend_for(ctx).run_ids_starting(run_id, limit=2)
    if not found:
        raise NotFound(
            f"run {run_id!r} does not exist (no run id starts with it)",
            hint="list runs with `loopline runs ls` and check the id",
        )
    if len(found) > 1:
        raise InvalidInput(
            f"run id prefix {run_id!r} is ambiguous: it starts {found[0]}, {found[1]} and "
            "maybe more",
            field=field,
            hint="give more characters of the id",
        )
    return found[0]


def metric_history(run_id: str, key: str) -> list[MetricPoint]:
    """Every point of one metric as ``(step, timestamp, value)`` tuples, by step.

    Example:
        >>> # [p.value for p in ll.metric_history(run.id, "loss")]
    """
    check_key(key, "metric")  # None, 5 or '' found no points and said nothing
    ctx = get_context()
    deferred.write_all()
    ingest.flush_all()
    return backend_for(ctx).metric_history(run_id, key)


def search_runs(
    experiment: str | Sequence[str] | None = None,
    filter: str | None = None,
    order_by: Sequence[str] | str | None = None,
    max_results: int = 1000,
    page_token: str | None = None,
    view: ViewType = "active",
) -> RunPage:
    """Runs matching an MLflow-style filter, in order; ``.next_page_token`` pages on.

    ``experiment`` is a name or a list of names (None: every experiment). The grammar is
    in :mod:`loopline.tracking.search`: ``metrics.auc > 0.8 and params.model = 'lgbm'``.

    Example:
        >>> # page = ll.search_runs("churn", filter="metrics.auc > 0.8",
        >>> #                       order_by=["metrics.auc DESC"])
        >>> # best = page[0]; more = ll.search_runs("churn", page_token=page.next_page_token)
    """
    names, orders = check_run_search(
        experiments=[experiment] if isinstance(experiment, str) else experiment,
        filter=filter,
        order_by=[order_by] if isinstance(order_by, str) else order_by,
        max_results=max_results,
        page_token=page_token,
        view=view,
    )
    ctx = get_context()
    deferred.write_all()
    ingest.flush_all()
    backend = backend_for(ctx)
    result = backend.search_runs(
        experiments=names,
        filter=filter,
        order_by=orders,
        max_results=max_results,
        page_token=page_token,
        view=view,
    )
    return RunPage(Run._read(result.runs, ctx, backend), result.next_page_token)
