"""One stored version of a dataset as users hold it: :class:`DatasetVersion`.

Its manifest, schema and statistics as the catalog recorded them, and the ways to read
its data (:attr:`~DatasetVersion.path`, :meth:`~DatasetVersion.to_arrow`,
:meth:`~DatasetVersion.to_pandas`), built on first use from the artifact store. Made
from a catalog row by :func:`_version`, for registration
(:mod:`loopline.data.dataset_registration`) and reads (:mod:`loopline.data.dataset_reads`)
alike.

Example:
    >>> # v = ll.datasets.get("churn"); v.ref, v.path
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopline.core.artifacts import ArtifactStore
from loopline.core.context import Context, get_context
from loopline.data import formats
from loopline.data.catalog_rows import VersionRow
from loopline.data.checkout import materialize
from loopline.data.dataset_own_files import _home
from loopline.data.ingest import FileEntry, IngestReport
from loopline.errors import InvalidInput

if TYPE_CHECKING:
    import pyarrow as pa

TABLE_FILE = "data.parquet"


@dataclass(frozen=True)
class DatasetVersion:
    """One immutable version of a dataset.

    ``schema`` maps column -> Arrow type and ``stats`` column -> statistics (tables only);
    ``files`` is the manifest; ``description`` is this version's own; ``ingest`` says what
    :func:`register` had to do (None when the version was loaded with :func:`get`), and
    ``description_updated`` whether it replaced the description of an unchanged version.
    """

    name: str
    version: int
    hash: str
    kind: str
    created: float
    schema: dict[str, str]
    stats: dict[str, dict[str, Any]]
    row_count: int | None
    byte_size: int
    files: tuple[FileEntry, ...]
    description: str | None
    actor: str
    created_now: bool = field(default=False, compare=False)
    description_updated: bool = field(default=False, compare=False)
    ingest: IngestReport | None = field(default=None, compare=False, repr=False)
    _store: ArtifactStore | None = field(default=None, compare=False, repr=False)
    _home: Path = field(default=Path(".loopline"), compare=False, repr=False)

    @property
    def ref(self) -> str:
        """``NAME@VERSION``, e.g. ``churn@3``."""
        return f"{self.name}@{self.version}"

    @property
    def folder(self) -> Path:
        """A local folder holding this version's files (see :attr:`path`)."""
        store = self._store if self._store is not None else get_context().artifacts
        return materialize(store, self._home, self.name, self.version, self.hash, self.files)

    @property
    def path(self) -> Path:
        """A local path to the data: the Parquet file of a table, the folder of files.

        Built on first use under ``LOOPLINE_HOME/checkouts/NAME/VERSION`` (hard links to the
        local artifact store, or verified downloads from S3). Treat it as read-only.

        Example:
            >>> # pd.read_parquet(ll.datasets.get("churn").path)
        """
        folder = self.folder
        return folder / TABLE_FILE if self.kind == "table" else folder

    def to_arrow(self) -> pa.Table:
        """The data as a pyarrow Table (a table, or a folder of Parquet files).

        Example:
            >>> # ll.datasets.get("churn").to_arrow().num_rows
        """
        import pyarrow as pa

        from loopline.data import tabular

        if self.kind == "table":
            return tabular.read_parquet(self.path)
        parts = [f for f in self.files if formats.is_parquet(Path(f.path))]
        if not parts or len(parts) != len(self.files):
            raise InvalidInput(
                f"dataset {self.ref} is a folder of files, not a table",
                field="kind",
                hint="read its files from .path, or register the table as a DataFrame/CSV/Parquet",
            )
        folder = self.folder
        return pa.concat_tables(
            [tabular.read_parquet(folder / f.path) for f in parts], promote_options="default"
        )

    def to_pandas(self) -> Any:
        """The data as a pandas DataFrame.

        Example:
            >>> # df = ll.datasets.get("churn", version=3).to_pandas()
        """
        return self.to_arrow().to_pandas()

    def to_dict(self, *, with_files: bool = True) -> dict[str, Any]:
        """Plain data for JSON: every attribute, the manifest too unless ``with_files=False``.

        Example:
            >>> # orjson.dumps(v.to_dict())
        """
        out: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "ref": self.ref,
            "hash": self.hash,
            "kind": self.kind,
            "created": self.created,
            "description": self.description,
            "actor": self.actor,
            "row_count": self.row_count,
            "byte_size": self.byte_size,
            "file_count": len(self.files),
            "schema": self.schema,
            "stats": self.stats,
        }
        if with_files:
            out["files"] = [
                {"path": f.path, "digest": f.digest, "size": f.size} for f in self.files
            ]
        if self.ingest is not None:
            out["created_now"] = self.created_now
            out["description_updated"] = self.description_updated
            out["ingest"] = self.ingest.to_dict()
        return out


def _version(
    ctx: Context,
    row: VersionRow,
    files: list[FileEntry],
    *,
    created_now: bool = False,
    description_updated: bool = False,
    report: IngestReport | None = None,
) -> DatasetVersion:
    return DatasetVersion(
        name=row.name,
        version=row.version,
        hash=row.hash,
        kind=row.kind,
        created=row.created,
        schema=row.schema,
        stats=row.stats,
        row_count=row.row_count,
        byte_size=row.byte_size,
        files=tuple(files),
        description=row.description,
        actor=row.actor,
        created_now=created_now,
        description_updated=description_updated,
        ingest=report,
        _store=ctx.artifacts,
        _home=_home(ctx),
    )
