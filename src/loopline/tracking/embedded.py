"""The embedded tracking backend: direct SQL through the store functions, local blobs.

Used when ``LOOPLINE_URI`` is a database (``sqlite://``, ``postgresql://``). It is a thin
layer over :mod:`~loopline.tracking.run_creation`, :mod:`~loopline.tracking.run_state`,
:mod:`~loopline.tracking.run_data`, :mod:`~loopline.tracking.experiments`,
:mod:`~loopline.tracking.query` and :mod:`~loopline.tracking.lineage`, the same functions
the REST servers call, so embedded and remote use one implementation of the semantics.

Example:
    >>> import loopline as ll, tempfile
    >>> backend = EmbeddedBackend(ll.init(uri="sqlite:///:memory:", artifacts=tempfile.mkdtemp()))
    >>> backend.search_runs(experiments=None, filter=None, order_by=None, max_results=10,
    ...                     page_token=None, view="active").runs
    []
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.exc import DBAPIError

from loopline.core.context import Context
from loopline.core.db import driver_reason, shown_url
from loopline.errors import BackendUnavailable, NotFound, remedy
from loopline.tracking import experiments, lineage, query, run_creation, run_data, run_state
from loopline.tracking._dialect import MetricRow
from loopline.tracking.backend import TrackingBackend
from loopline.tracking.entities import (
    ArtifactEntry,
    MetricPoint,
    NewRun,
    RunInput,
    RunRecord,
    RunSearchResult,
    ViewType,
)
from loopline.tracking.ingest import EmbeddedSink, MetricSink, MetricWriter
from loopline.tracking.validation import check_artifact_path


class EmbeddedBackend(TrackingBackend):
    """The tracking store in the context's own database and artifact store.

    Example:
        >>> # EmbeddedBackend(ll.get_context()).get_run(run_id).params
    """

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        #: Files this process put in the artifact store, by content (a few small documents).
        self._stored: dict[bytes, str] = {}

    @property
    def _actor(self) -> str:
        return self.ctx.settings.actor_name

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
        """See :meth:`TrackingBackend.create_run`; the run, its tags and files in one commit.

        Example:
            >>> # backend.create_run(experiment="churn", name=None, tags={}, parent_run_id=None,
            >>> #                    user_id="ada", files={})
        """
        exp = experiments.get_or_create_experiment(self.ctx.engine, experiment, actor=self._actor)
        entries = [
            ArtifactEntry(check_artifact_path(path), self.ctx.artifacts.put_bytes(data), len(data))
            for path, data in files.items()
        ]
        return run_creation.create_run(
            self.ctx.engine,
            exp.id,
            name=name,
            tags=tags,
            parent_run_id=parent_run_id,
            user_id=user_id,
            actor=self._actor,
            artifacts=entries,
        )

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
        """See :meth:`TrackingBackend.prepare_run`: checked and named, nothing written yet.

        The experiment is looked up (created when missing) now, so that a deleted one is
        refused at once; the files go to the artifact store (content-addressed: the same
        environment document is stored once).

        Example:
            >>> # new = backend.prepare_run(experiment="churn", name=None, tags={},
            >>> #                           parent_run_id=None, user_id="ada", files={})
        """
        exp = experiments.active_experiment(self.ctx.engine, experiment, actor=self._actor)
        entries = [self._stored_file(path, data) for path, data in files.items()]
        return run_creation.new_run(
            exp,
            name=name,
            tags=tags,
            parent_run_id=parent_run_id,
            user_id=user_id,
            actor=self._actor,
            artifacts=entries,
        )

    def _stored_file(self, path: str, data: bytes) -> ArtifactEntry:
        """Store ``data`` for a new run; the same bytes again (the environment document of
        every run) are stored once per process."""
        check_artifact_path(path)
        digest = self._stored.get(data)  # the same bytes object: its hash is cached by Python
        if digest is None:
            digest = self.ctx.artifacts.put_bytes(data)
            if len(self._stored) >= 16:  # a bound, should callers pass other files
                self._stored.clear()
            self._stored[data] = digest
        return ArtifactEntry(path, digest, len(data))

    def write_run(
        self,
        new: NewRun,
        *,
        params: Mapping[str, str],
        tags: Mapping[str, str | None],
        rows: Sequence[MetricRow],
        end: tuple[str, int] | None,
    ) -> None:
        """See :meth:`TrackingBackend.write_run`: the run and its data in one commit.

        Example:
            >>> # backend.write_run(new, params={"lr": "0.1"}, tags={}, rows=[], end=None)
        """
        try:
            run_creation.write_run(
                self.ctx.engine, new, params=params, tags=tags, rows=rows, end=end
            )
        except (DBAPIError, BackendUnavailable) as exc:
            safe = shown_url(self.ctx.engine)
            raise BackendUnavailable(
                f"could not write run {new.record.id} to {safe}: {_reason(exc)}",
                hint=f"nothing of it is lost: {remedy(exc, _FIX)}; the run is written with its "
                "next call (or its end)",
            ) from exc

    def get_run(self, run_id: str) -> RunRecord:
        """See :meth:`TrackingBackend.get_run`.

        Example:
            >>> # backend.get_run(run_id).status
        """
        return run_state.get_run(self.ctx.engine, run_id)

    def run_ids_starting(self, prefix: str, *, limit: int = 2) -> list[str]:
        """See :meth:`TrackingBackend.run_ids_starting`: a range on the runs' primary key.

        Example:
            >>> # backend.run_ids_starting("3f2a9c0d")  -> ['3f2a9c0d1e2f4a5b6c7d8e9f00112233']
        """
        return run_state.run_ids_starting(self.ctx.engine, prefix, limit=limit)

    def finish_run(
        self, run_id: str, *, status: str, end_time: int, writer: MetricWriter | None
    ) -> None:
        """See :meth:`TrackingBackend.finish_run`; last points and status in one commit.

        Example:
            >>> # backend.finish_run(run_id, status="FINISHED", end_time=now_ms(), writer=w)
        """
        rows = writer.take_pending() if writer is not None else []
        try:
            run_state.finish_run(
                self.ctx.engine,
                run_id,
                status=status,
                end_time=end_time,
                rows=rows,
                actor=self._actor,
            )
        except BaseException as exc:
            if writer is not None:
                writer.put_back(rows)
            if isinstance(exc, (DBAPIError, BackendUnavailable)):
                safe = shown_url(self.ctx.engine)
                raise BackendUnavailable(
                    f"could not end run {run_id} and write its {len(rows)} queued metric "
                    f"points to {safe}: {_reason(exc)}",
                    hint=f"they are still queued: {remedy(exc, _FIX)}; then end the run again",
                ) from exc
            raise
        if writer is not None:
            writer.written += len(rows)

    def log_batch(self, run_id: str, *, params: Mapping[str, Any], tags: Mapping[str, Any]) -> None:
        """See :meth:`TrackingBackend.log_batch`.

        Example:
            >>> # backend.log_batch(run_id, params={"lr": 0.1}, tags={})
        """
        run_data.log_batch(self.ctx.engine, run_id, params=params, tags=tags)

    def metric_sink(self) -> MetricSink:
        """See :meth:`TrackingBackend.metric_sink`: one transaction per batch.

        Example:
            >>> # MetricWriter(backend.metric_sink())
        """
        return EmbeddedSink(self.ctx.engine, retry_s=self.ctx.settings.db_retry_s)

    def metric_history(self, run_id: str, key: str) -> list[MetricPoint]:
        """See :meth:`TrackingBackend.metric_history`.

        Example:
            >>> # backend.metric_history(run_id, "loss")[-1].value
        """
        return run_data.get_metric_history(self.ctx.engine, run_id, key)

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
        """See :meth:`TrackingBackend.search_runs`.

        Example:
            >>> # backend.search_runs(experiments=["churn"], filter="metrics.auc > 0.8",
            >>> #                     order_by=None, max_results=10, page_token=None,
            >>> #                     view="active")
        """
        ids = None
        if experiments is not None:
            ids = query.experiment_ids_by_name(self.ctx.engine, experiments)
        return query.search_runs(
            self.ctx.engine,
            experiment_ids=ids,
            filter=filter,
            order_by=order_by,
            max_results=max_results,
            page_token=page_token,
            view=view,
        )

    def log_inputs(self, run_id: str, inputs: Sequence[RunInput]) -> None:
        """See :meth:`TrackingBackend.log_inputs`.

        Example:
            >>> # backend.log_inputs(run_id, [RunInput("dataset", "churn", "3", digest)])
        """
        lineage.log_inputs(self.ctx.engine, run_id, inputs)

    def log_artifact_files(
        self, run_id: str, files: Sequence[tuple[Path, str]]
    ) -> list[ArtifactEntry]:
        """See :meth:`TrackingBackend.log_artifact_files`.

        Example:
            >>> # backend.log_artifact_files(run_id, [(Path("model.pkl"), "model/model.pkl")])
        """
        entries = [
            ArtifactEntry(rel, self.ctx.artifacts.put_file(file), file.stat().st_size)
            for file, rel in files
        ]
        lineage.add_artifacts(self.ctx.engine, run_id, entries)
        return entries

    def log_artifact_bytes(self, run_id: str, path: str, data: bytes) -> ArtifactEntry:
        """See :meth:`TrackingBackend.log_artifact_bytes`.

        Example:
            >>> # backend.log_artifact_bytes(run_id, "config.json", b"{}")
        """
        check_artifact_path(path)
        entry = ArtifactEntry(path.strip("/"), self.ctx.artifacts.put_bytes(data), len(data))
        lineage.add_artifacts(self.ctx.engine, run_id, [entry])
        return entry

    def list_artifacts(self, run_id: str, prefix: str | None = None) -> list[ArtifactEntry]:
        """See :meth:`TrackingBackend.list_artifacts`.

        Example:
            >>> # [a.path for a in backend.list_artifacts(run_id)]
        """
        return lineage.list_artifacts(self.ctx.engine, run_id, prefix)

    def _entry(self, run_id: str, path: str) -> ArtifactEntry:
        clean = check_artifact_path(path).strip("/")
        for entry in lineage.list_artifacts(self.ctx.engine, run_id, prefix=clean):
            if entry.path == clean:
                return entry
        raise NotFound(
            f"run {run_id} has no artifact {clean!r}",
            hint="list them with run.artifacts",
        )

    def read_artifact(self, run_id: str, path: str) -> bytes:
        """See :meth:`TrackingBackend.read_artifact`.

        Example:
            >>> # backend.read_artifact(run_id, "config.json")
        """
        return self.ctx.artifacts.get_bytes(self._entry(run_id, path).digest)

    def download_artifact(self, run_id: str, path: str, dest: Path) -> Path:
        """See :meth:`TrackingBackend.download_artifact`.

        Example:
            >>> # backend.download_artifact(run_id, "model.pkl", Path("/tmp/model.pkl"))
        """
        return self.ctx.artifacts.get_file(self._entry(run_id, path).digest, dest)

    def close(self) -> None:
        """Nothing to release: the context owns the engine.

        Example:
            >>> # backend.close()
        """


_FIX = "fix the database (LOOPLINE_URI)"


def _reason(exc: DBAPIError | BackendUnavailable) -> str:
    """The first line of what the database said (or of Loopline's message about it)."""
    if isinstance(exc, BackendUnavailable):
        return exc.message
    return driver_reason(exc)
