"""SQL for model aliases (``champion``, ``challenger``): set, move, delete, resolve.

Apart from versions because an alias move is the registry's audited act of promotion:
every move and deletion is written to the audit log in the same transaction, under the
model's lock (:func:`~loopline.training.registry_models.lock_model`), and deployments move
``champion`` through :func:`move_alias` inside their own transaction.

Example:
    >>> import tempfile, loopline
    >>> from loopline.training.registry_versions import create_model_version
    >>> ctx = loopline.init(uri="sqlite:///:memory:", artifacts=tempfile.mkdtemp())
    >>> _ = create_model_version(ctx, "churn", source="models:/m-1", run_id=None)
    >>> set_alias(ctx, "churn", "champion", 1)
    >>> get_version_by_alias(ctx, "churn", "champion").version
    1
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from loopline.core.context import Context
from loopline.core.db import reading
from loopline.errors import NotFound
from loopline.training.registry_checks import check_alias
from loopline.training.registry_models import _model_row, lock_model
from loopline.training.registry_records import ModelVersion
from loopline.training.registry_tables import (
    model_aliases,
)
from loopline.training.registry_versions import _hydrate_version, _version_row


def set_alias(ctx: Context, name: str, alias: str, version: int, reason: str | None = None) -> None:
    """Point ``alias`` of model ``name`` at ``version``; the move is audited with its reason.

    Example:
        >>> # set_alias(ctx, "churn", "champion", 3, reason="passed the gate")
    """
    check_alias(alias)
    with ctx.engine.begin() as conn:
        _model_row(conn, name)
        lock_model(conn, name)  # so that the version cannot be deleted meanwhile
        _version_row(conn, name, int(version))
        move_alias(ctx, conn, name, alias, int(version), reason=reason, unchanged_too=True)


def move_alias(
    ctx: Context,
    conn: Connection,
    name: str,
    alias: str,
    version: int,
    reason: str | None = None,
    actor: str | None = None,
    unchanged_too: bool = False,
) -> bool:
    """Point ``alias`` at ``version`` inside the caller's transaction; False if it was there.

    The caller has checked the version exists. Unless ``unchanged_too`` (a person setting
    an alias explicitly, whose reason is worth keeping), a move to where the alias already
    points writes nothing, so automatic re-assertions leave no noise in the audit log.

    Example:
        >>> # with ctx.engine.begin() as conn: move_alias(ctx, conn, "churn", "champion", 3)
    """
    lock_model(conn, name)  # a no-op when the caller holds it already
    where = (model_aliases.c.name == name) & (model_aliases.c.alias == alias)
    before = conn.execute(sa.select(model_aliases.c.version).where(where)).scalar()
    if before == version and not unchanged_too:
        return False
    conn.execute(model_aliases.delete().where(where))
    conn.execute(model_aliases.insert().values(name=name, alias=alias, version=version))
    event: dict[str, Any] = {} if actor is None else {"actor": actor}
    ctx.audit(
        conn,
        action="alias.set",
        object_type="registered_model",
        object_id=name,
        before={alias: before},
        after={alias: version},
        reason=reason,
        **event,
    )
    return True


def delete_alias(ctx: Context, name: str, alias: str, reason: str | None = None) -> None:
    """Remove an alias (audited); :class:`NotFound` when it is not set.

    Example:
        >>> # delete_alias(ctx, "churn", "challenger")
    """
    with ctx.engine.begin() as conn:
        lock_model(conn, name)  # a concurrent delete waits and then finds nothing
        before = conn.execute(
            sa.select(model_aliases.c.version).where(
                (model_aliases.c.name == name) & (model_aliases.c.alias == alias)
            )
        ).scalar()
        if before is None:
            raise NotFound(f"model {name!r} has no alias {alias!r}")
        conn.execute(
            model_aliases.delete().where(
                (model_aliases.c.name == name) & (model_aliases.c.alias == alias)
            )
        )
        ctx.audit(
            conn,
            action="alias.delete",
            object_type="registered_model",
            object_id=name,
            before={alias: before},
            after=None,
            reason=reason,
        )


def get_version_by_alias(ctx: Context, name: str, alias: str) -> ModelVersion:
    """The version that ``alias`` points at; :class:`NotFound` naming both.

    Example:
        >>> # get_version_by_alias(ctx, "churn", "champion").version
    """
    with reading(ctx.engine) as conn:
        version = conn.execute(
            sa.select(model_aliases.c.version).where(
                (model_aliases.c.name == name) & (model_aliases.c.alias == alias)
            )
        ).scalar()
        if version is None:
            _model_row(conn, name)
            raise NotFound(
                f"model {name!r} has no alias {alias!r}",
                hint=f"see its aliases with `loopline models show {name}`",
            )
        return _hydrate_version(conn, _version_row(conn, name, int(version)))
