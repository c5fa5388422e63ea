"""One numbered version of a registered model, as ``ll.registry`` returns it.

:class:`ModelVersion` wraps the store's record of a version
(:class:`loopline.training.registry_records.ModelVersion`) with its logged model, and
reads its lineage - the run that logged the model, that run's code version
(:data:`CODE_TAGS`), dataset versions, params and metrics - on first use. It is separate
from :mod:`loopline.training.registry` because every part of the SDK returns it: reads,
registration, aliases and lineage.

Example:
    >>> sorted(CODE_TAGS)[:2]
    ['command', 'git_branch']
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from loopline.core.context import Context
from loopline.errors import NotFound
from loopline.training import registry_logged_models, registry_records
from loopline.training.registry_records import LoggedModel

if TYPE_CHECKING:
    from loopline.tracking.entities import RunInput
    from loopline.tracking.run_handle import Run
    from loopline.training.signature import ModelSignature

#: Run tags that identify the code a run ran (see loopline.tracking.environment).
CODE_TAGS = {
    "git_commit": "mlflow.source.git.commit",
    "git_branch": "mlflow.source.git.branch",
    "git_dirty": "loopline.git.dirty",
    "git_diff_blake3": "loopline.git.diff_blake3",
    "source": "mlflow.source.name",
    "command": "loopline.command",
}


class ModelVersion:
    """One numbered version of a registered model, with its lineage through the run.

    ``run``, ``code_version``, ``datasets``, ``params`` and ``metrics`` are read from the
    run that logged the model, on first use.

    Example:
        >>> # v = ll.registry.get("churn", "champion"); v.version, v.datasets[0].version
    """

    def __init__(
        self, record: registry_records.ModelVersion, logged: LoggedModel | None, ctx: Context
    ) -> None:
        self._record = record
        self._logged = logged
        self._ctx = ctx

    @property
    def name(self) -> str:
        """The registered model's name."""
        return self._record.name

    @property
    def version(self) -> int:
        """The version number (1, 2, ...)."""
        return self._record.version

    @property
    def aliases(self) -> list[str]:
        """The aliases pointing at this version."""
        return list(self._record.aliases)

    @property
    def tags(self) -> dict[str, str]:
        """The version's tags."""
        return dict(self._record.tags)

    @property
    def description(self) -> str | None:
        """The version's description."""
        return self._record.description

    @property
    def status(self) -> str:
        """READY once registered."""
        return self._record.status

    @property
    def creation_time(self) -> int:
        """When the version was registered, milliseconds since the epoch."""
        return self._record.creation_time

    @property
    def source(self) -> str | None:
        """Where the model came from, e.g. ``models:/m-...``."""
        return self._record.source

    @property
    def model_id(self) -> str | None:
        """The logged model's id (None for a version registered from a bare source)."""
        return self._record.model_id

    @property
    def run_id(self) -> str | None:
        """The id of the run that logged the model (from the version, else its logged model)."""
        if self._record.run_id:
            return self._record.run_id
        return self._logged.source_run_id if self._logged else None

    @property
    def logged_model(self) -> LoggedModel | None:
        """The logged model this version points at."""
        return self._logged

    @property
    def flavor(self) -> str | None:
        """``sklearn``, ``xgboost``, ``lightgbm``; None for a model logged by MLflow."""
        return self._logged.flavor if self._logged and self._logged.manifest_digest else None

    @property
    def signature(self) -> ModelSignature | None:
        """The model's input/output signature, when it was logged with one."""
        if self._logged is None or not self._logged.signature:
            return None
        from loopline.training.signature import ModelSignature

        return ModelSignature.from_json(self._logged.signature)

    @property
    def uri(self) -> str:
        """``models:/NAME/VERSION``, what :func:`load` takes."""
        return f"models:/{self.name}/{self.version}"

    @cached_property
    def run(self) -> Run | None:
        """The run that logged the model (None when unknown or deleted)."""
        if not self.run_id:
            return None
        from loopline.tracking.api import get_run

        try:
            return get_run(self.run_id)
        except NotFound:
            return None

    @property
    def code_version(self) -> dict[str, str | None]:
        """The run's git commit, branch, dirty flag and diff hash, source and command."""
        tags = self.run.tags if self.run else {}
        return {key: tags.get(tag) for key, tag in CODE_TAGS.items()}

    @property
    def datasets(self) -> list[RunInput]:
        """The dataset versions the run read (``ll.datasets.get`` inside the run)."""
        return self.run.inputs if self.run else []

    @property
    def params(self) -> dict[str, str]:
        """The run's params."""
        return self.run.params if self.run else {}

    @property
    def metrics(self) -> dict[str, float]:
        """The run's metrics (latest values)."""
        return self.run.metrics if self.run else {}

    def to_dict(self, *, with_lineage: bool = True) -> dict[str, Any]:
        """Plain JSON-ready data; with the run's lineage unless ``with_lineage=False``.

        Example:
            >>> # ll.registry.get("churn", 3).to_dict()["datasets"]
        """
        sig = self.signature
        out: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "uri": self.uri,
            "aliases": self.aliases,
            "status": self.status,
            "description": self.description,
            "creation_time": self.creation_time,
            "source": self.source,
            "model_id": self.model_id,
            "run_id": self.run_id,
            "flavor": self.flavor,
            "model_type": self._logged.model_type if self._logged else None,
            "signature": None if sig is None else sig.to_dict(),
            "tags": self.tags,
        }
        if with_lineage:
            out["code_version"] = self.code_version
            out["datasets"] = [vars(i) for i in self.datasets]
            out["params"] = self.params
            out["metrics"] = self.metrics
        return out

    def __repr__(self) -> str:
        return f"<ModelVersion {self.name}/{self.version} aliases={self.aliases}>"


def _wrap(ctx: Context, record: registry_records.ModelVersion) -> ModelVersion:
    logged = None
    if record.model_id:
        try:
            logged = registry_logged_models.get_logged_model(ctx, record.model_id)
        except NotFound:
            logged = None
    return ModelVersion(record, logged, ctx)
