"""What the registry's store modules share: the plain records they return, and the row
helpers each of them writes with (the clock, tag rows, the hydration chunk size).

Rows never leave the store: every registry function returns one of these dataclasses.
They are apart from the SQL that fills them because the registered models, versions,
aliases and logged models modules all return or write them: each imports them from here,
one copy, without importing the others.

Example:
    >>> RegisteredModel("churn", None, 0, 0).aliases
    {}
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from loopline.training.logged_model_data import ModelMetric
from loopline.training.registry_checks import check_tag


@dataclass
class RegisteredModel:
    """A named model with numbered versions."""

    name: str
    description: str | None
    creation_time: int
    last_updated_time: int
    tags: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, int] = field(default_factory=dict)
    latest_version: int | None = None


@dataclass
class ModelVersion:
    """One numbered version of a registered model."""

    name: str
    version: int
    source: str | None
    run_id: str | None
    model_id: str | None
    status: str
    description: str | None
    creation_time: int
    last_updated_time: int
    tags: dict[str, str] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)


@dataclass
class LoggedModel:
    """A model logged by a run (MLflow 3's LoggedModel)."""

    model_id: str
    experiment_id: str | None
    name: str
    source_run_id: str | None
    status: str
    model_type: str | None
    artifact_location: str
    flavor: str | None
    manifest_digest: str | None
    signature: str | None
    creation_time: int
    last_updated_time: int
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    #: The metric points runs linked to the model (:mod:`.logged_model_data`).
    metrics: list[ModelMetric] = field(default_factory=list)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _drop_tag(conn: Connection, table: sa.Table, owner: dict[str, Any], key: str) -> None:
    """Delete tag ``key`` of the object whose key columns are ``owner``."""
    cond = sa.and_(*(table.c[col] == val for col, val in owner.items()), table.c.key == key)
    conn.execute(table.delete().where(cond))


def _put_tag(
    conn: Connection, table: sa.Table, owner: dict[str, Any], key: str, value: str | None
) -> None:
    """Set (or overwrite) tag ``key`` of the object whose key columns are ``owner``."""
    value = check_tag(key, value)
    _drop_tag(conn, table, owner, key)
    conn.execute(table.insert().values(**owner, key=key, value=value))


#: Names (or version rows) per query when a page of models or versions is hydrated.
_HYDRATE_CHUNK = 500
