"""The rows the dataset catalog hands out, in a module without SQLAlchemy.

:mod:`loopline.data.catalog` reads and writes them; :mod:`loopline.data.datasets` names them
at import time, and that import must not load SQLAlchemy (``register`` opens the catalog on
a helper thread while the bytes are copied).

Example:
    >>> DatasetSummary("churn", None, 0.0, 0, None, None, None, None, None, None).versions
    0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class VersionRow:
    """One ``dataset_versions`` row (its ``description`` is the version's own)."""

    id: int
    name: str
    version: int
    created: float
    hash: str
    kind: str
    schema: dict[str, str]
    stats: dict[str, dict[str, Any]]
    row_count: int | None
    byte_size: int
    file_count: int
    actor: str
    description: str | None


@dataclass(frozen=True)
class DatasetSummary:
    """A dataset and its newest version, for listings (``description`` is that version's)."""

    name: str
    description: str | None
    created: float
    versions: int
    latest_version: int | None
    latest_hash: str | None
    latest_kind: str | None
    latest_created: float | None
    latest_byte_size: int | None
    latest_row_count: int | None
