"""The tracking backend boundary: one interface, two implementations chosen by the URI.

The SDK (:mod:`loopline.tracking.api`) talks only to a :class:`TrackingBackend`:

* :class:`~loopline.tracking.embedded.EmbeddedBackend` for ``sqlite://``,
  ``postgresql://`` (direct SQL through the store functions, blobs in the artifact store);
* :class:`~loopline.tracking.remote.RemoteBackend` for ``http(s)://`` (Loopline's REST API
  ``/api/v1`` on a ``loopline server``).

:func:`backend_for` picks one per context. ``tests/tracking/test_backend_conformance.py``
runs the same SDK scenarios on both, on SQLite and PostgreSQL.

Every implementation keeps the store's semantics and raises the same errors: an unknown run
or experiment is :class:`~loopline.errors.NotFound` naming it; a bad key, value, filter or
page token is :class:`~loopline.errors.InvalidInput` naming the field (a filter error gives
its position); a param logged again with another value is
:class:`~loopline.errors.Conflict`; an unreachable backend is
:class:`~loopline.errors.BackendUnavailable`. Times are milliseconds since the epoch.

Example:
    >>> import loopline as ll, tempfile
    >>> ctx = ll.init(uri="sqlite:///:memory:", artifacts=tempfile.mkdtemp())
    >>> type(backend_for(ctx)).__name__
    'EmbeddedBackend'
"""

from __future__ import annotations

import threading
import weakref
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from loopline.core.context import Context
from loopline.errors import InvalidInput
from loopline.tracking._dialect import MetricRow
from loopline.tracking.entities import (
    ArtifactEntry,
    MetricPoint,
    NewRun,
    RunInput,
    RunRecord,
    RunSearchResult,
    ViewType,
)
from loopline.tracking.ingest import MetricSink, MetricWriter


class TrackingBackend(ABC):
    """What the tracking SDK needs from a store. Subclasses implement every method.

    Reads return plain records (:mod:`loopline.tracking.entities`); nothing backend-specific
    (rows, HTTP responses) leaves an implementation.
    """

    # -- runs --------------------------------------------------------------------------

    @abstractmethod
    def create_run(
        self,
        *,
        experiment: str,
        name: str | None,
        tags: Mapping[str, Any],
        parent_run_id: str | None,
        user_id: str | None,
        files: Mapping[str, bytes],
    ) -> RunRecord:
        """Start a RUNNING run in the experiment named ``experiment`` (created when missing).

        ``files`` (artifact path -> bytes, e.g. the environment document) are stored as the
        run's artifacts; ``tags`` are checked like any tag.

        Example:
            >>> # backend.create_run(experiment="churn", name="lgbm", tags={}, parent_run_id=None,
            >>> #                    user_id="ada", files={"notes.txt": b"hi"}).status  -> 'RUNNING'
        """

    def prepare_run(
        self,
        *,
        experiment: str,
        name: str | None,
        tags: Mapping[str, Any],
        parent_run_id: str | None,
        user_id: str | None,
        files: Mapping[str, bytes],
    ) -> NewRun:
        """Check and name a run as :meth:`create_run` would; :meth:`write_run` writes it.

        The SDK uses the pair to write a run together with its first data (often: the whole
        run in one commit). This default writes the run at once and returns it ``written``;
        a backend that can defer the write overrides both methods.

        Example:
            >>> # new = backend.prepare_run(experiment="churn", name=None, tags={},
            >>> #                           parent_run_id=None, user_id="ada", files={})
        """
        record = self.create_run(
            experiment=experiment,
            name=name,
            tags=tags,
            parent_run_id=parent_run_id,
            user_id=user_id,
            files=files,
        )
        return NewRun(record, written=True)

    def write_run(
        self,
        new: NewRun,
        *,
        params: Mapping[str, str],
        tags: Mapping[str, str | None],
        rows: Sequence[MetricRow],
        end: tuple[str, int] | None,
    ) -> None:
        """Write a run from :meth:`prepare_run` with checked params, tags and metric rows.

        ``end=(status, end_time)`` also ends it. This default, for a run already
        ``written``, logs the data with :meth:`log_batch`, :meth:`metric_sink` and
        :meth:`finish_run`; a backend that defers the write does it in one commit.

        Example:
            >>> # backend.write_run(new, params={"lr": "0.1"}, tags={}, rows=[],
            >>> #                   end=("FINISHED", now_ms()))
        """
        run_id = new.record.id
        if not new.written:
            raise InvalidInput(
                f"run {run_id} was prepared by another backend and cannot be written here",
                field="run",
            )
        if params or tags:
            self.log_batch(run_id, params=params, tags=tags)
        writer = MetricWriter(self.metric_sink()) if rows else None
        if writer is not None:
            writer.extend(rows)
        if end is not None:
            self.finish_run(run_id, status=end[0], end_time=end[1], writer=writer)
        elif writer is not None:
            writer.close()

    @abstractmethod
    def get_run(self, run_id: str) -> RunRecord:
        """Everything about one run; NotFound names the id.

        Example:
            >>> # backend.get_run(run_id).params  -> {'lr': '0.1'}
        """

    def run_ids_starting(self, prefix: str, *, limit: int = 2) -> list[str]:
        """The ids (at most ``limit``) of the runs, deleted ones too, that start with
        ``prefix`` (lowercase hex, shorter than an id).

        This default asks :meth:`search_runs` (``attributes.run_id LIKE 'prefix%'``), which
        a Loopline server answers with the same rules; the embedded backend queries the
        runs' primary key directly.

        Example:
            >>> # backend.run_ids_starting("3f2a9c0d")  -> ['3f2a9c0d1e2f4a5b6c7d8e9f00112233']
        """
        from loopline.tracking.run_state import check_run_id_prefix

        check_run_id_prefix(prefix)
        page = self.search_runs(
            experiments=None,
            filter=f"attributes.run_id LIKE '{prefix}%'",  # hex only: nothing to quote
            order_by=["attributes.run_id ASC"],
            max_results=limit,
            page_token=None,
            view="all",
        )
        return [run.id for run in page.runs]

    @abstractmethod
    def finish_run(
        self, run_id: str, *, status: str, end_time: int, writer: MetricWriter | None
    ) -> None:
        """Write the run's queued metric points, then set its status and end time.

        When this raises, the points are still queued in ``writer`` and the run is open.

        Example:
            >>> # backend.finish_run(run_id, status="FINISHED", end_time=now_ms(), writer=writer)
        """

    @abstractmethod
    def log_batch(self, run_id: str, *, params: Mapping[str, Any], tags: Mapping[str, Any]) -> None:
        """Write params and tags at once; Conflict names a param that had another value.

        Example:
            >>> # backend.log_batch(run_id, params={"lr": 0.1}, tags={"team": "risk"})
        """

    @abstractmethod
    def metric_sink(self) -> MetricSink:
        """Where the run's background metric writer sends its numbered batches.

        Example:
            >>> # writer = MetricWriter(backend.metric_sink())
        """

    @abstractmethod
    def metric_history(self, run_id: str, key: str) -> list[MetricPoint]:
        """Every point of one metric of a run, by step, then timestamp; NotFound for the run.

        Example:
            >>> # backend.metric_history(run_id, "loss")[-1].value  -> 0.01
        """

    @abstractmethod
    def search_runs(
        self,
        *,
        experiments: Sequence[str] | None,
        filter: str | None,
        order_by: Sequence[str] | None,
        max_results: int,
        page_token: str | None,
        view: ViewType,
    ) -> RunSearchResult:
        """One page of runs matching an MLflow filter in the named experiments.

        ``experiments=None`` searches every experiment; NotFound names every name that has
        no experiment.

        Example:
            >>> # backend.search_runs(experiments=["churn"], filter="metrics.auc > 0.8",
            >>> #     order_by=["metrics.auc DESC"], max_results=10, page_token=None, view="active")
        """

    # -- lineage and artifacts -----------------------------------------------------------

    @abstractmethod
    def log_inputs(self, run_id: str, inputs: Sequence[RunInput]) -> None:
        """Record dataset versions the run read; the same version again is a no-op.

        Example:
            >>> # backend.log_inputs(run_id, [RunInput("dataset", "churn", "3", digest)])
        """

    @abstractmethod
    def log_artifact_files(
        self, run_id: str, files: Sequence[tuple[Path, str]]
    ) -> list[ArtifactEntry]:
        """Store local files content-addressed under the given artifact paths of the run.

        Example:
            >>> # backend.log_artifact_files(run_id, [(Path("model.pkl"), "model/model.pkl")])
        """

    @abstractmethod
    def log_artifact_bytes(self, run_id: str, path: str, data: bytes) -> ArtifactEntry:
        """Store ``data`` content-addressed under artifact path ``path`` of the run.

        Example:
            >>> # backend.log_artifact_bytes(run_id, "config.json", b"{}").digest
        """

    @abstractmethod
    def list_artifacts(self, run_id: str, prefix: str | None = None) -> list[ArtifactEntry]:
        """The run's artifacts (only those under ``prefix/`` when given), by path.

        Example:
            >>> # [a.path for a in backend.list_artifacts(run_id, prefix="model")]
        """

    @abstractmethod
    def read_artifact(self, run_id: str, path: str) -> bytes:
        """The bytes of one artifact, verified against its digest; NotFound names the path.

        Example:
            >>> # backend.read_artifact(run_id, "config.json")  -> b'{}'
        """

    @abstractmethod
    def download_artifact(self, run_id: str, path: str, dest: Path) -> Path:
        """Write one artifact to ``dest`` (verified, atomically) and return ``dest``.

        Example:
            >>> # backend.download_artifact(run_id, "model.pkl", Path("/tmp/model.pkl"))
        """

    @abstractmethod
    def close(self) -> None:
        """Release connections.

        Example:
            >>> # backend.close()
        """


_backends: weakref.WeakKeyDictionary[Context, TrackingBackend] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def backend_for(ctx: Context) -> TrackingBackend:
    """The backend of ``ctx``, built on first use: remote for ``http(s)://``, else embedded.

    Example:
        >>> # backend_for(get_context()).get_run(run_id)
    """
    with _lock:
        found = _backends.get(ctx)
        if found is None:
            if ctx.is_remote:
                from loopline.tracking.remote import RemoteBackend

                found = RemoteBackend(ctx.settings)
            else:
                from loopline.tracking.embedded import EmbeddedBackend

                found = EmbeddedBackend(ctx)
            _backends[ctx] = found
        return found
