"""What a logged model gathers after its creation: params logged later.

MLflow 3's client sends a logged model's first 100 params with its creation and the rest
in batches of 100 (``POST logged-models/{id}/params``, MLflow's ``LogLoggedModelParams``);
``mlflow.log_model_params`` sends more. Params are checked as a run's are
(:func:`loopline.tracking.store.check_params`: key rules, values of at most 6,000
characters, no NUL) and, like a run's, cannot change: the same value again is a no-op (a
retried request), another value is :class:`~loopline.errors.Conflict` and nothing of the
batch is kept.

:mod:`loopline.training.registry_store` creates, reads and searches logged models; this
module adds to them. Rows never leave either: functions return plain values.

Example:
    >>> import tempfile, loopline
    >>> from loopline.training import registry_store
    >>> ctx = loopline.init(uri="sqlite:///:memory:", artifacts=tempfile.mkdtemp())
    >>> m = registry_store.create_logged_model(
    ...     ctx, name="m", experiment_id="0", source_run_id=None)
    >>> log_params(ctx, m.model_id, {"depth": "3"})
    >>> registry_store.get_logged_model(ctx, m.model_id).params
    {'depth': '3'}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from loopline.core.context import Context
from loopline.core.text import check_no_nul
from loopline.errors import Conflict, NotFound
from loopline.tracking._dialect import insert_for
from loopline.tracking.store import check_params
from loopline.training.registry_tables import logged_model_params, logged_models

# Keys per IN list when reading back what a batch stored (SQLite's limit on bound values).
_CHUNK = 500


def require_logged_model(conn: Connection, model_id: str) -> None:
    """:class:`NotFound` naming ``model_id`` unless the logged model exists.

    A NUL is refused first (:class:`~loopline.errors.InvalidInput`): PostgreSQL cannot
    compare it, and no model id holds one.

    Example:
        >>> # with ctx.engine.begin() as conn: require_logged_model(conn, "m-0123")
    """
    check_no_nul(model_id, "model_id")
    found = conn.execute(
        sa.select(logged_models.c.model_id).where(logged_models.c.model_id == model_id)
    ).first()
    if found is None:
        raise NotFound(
            f"logged model {model_id!r} does not exist",
            hint="the client logs a model (mlflow.<flavor>.log_model) before adding to it",
        )


def log_params(
    ctx: Context, model_id: str, params: Mapping[str, Any] | Iterable[tuple[str, Any]]
) -> None:
    """Add params to logged model ``model_id``, checked and kept as a run's params are.

    Everything is checked before anything is written; a key already stored with another
    value is :class:`~loopline.errors.Conflict` naming both values, and nothing is kept.

    Example:
        >>> # log_params(ctx, "m-0123", {"n_estimators": "200"})
    """
    values = check_params(params)
    with ctx.engine.begin() as conn:
        require_logged_model(conn, model_id)
        if not values:
            return
        conn.execute(
            insert_for(conn, logged_model_params).on_conflict_do_nothing(
                index_elements=["model_id", "key"]
            ),
            [{"model_id": model_id, "key": k, "value": v} for k, v in values.items()],
        )
        keys = list(values)
        for start in range(0, len(keys), _CHUNK):
            stored = conn.execute(
                sa.select(logged_model_params.c.key, logged_model_params.c.value).where(
                    logged_model_params.c.model_id == model_id,
                    logged_model_params.c.key.in_(keys[start : start + _CHUNK]),
                )
            )
            for key, value in stored:
                if value != values[key]:
                    raise Conflict(
                        f"param {key!r} of logged model {model_id} is already {value!r}; "
                        f"it cannot be changed to {values[key]!r}",
                        hint="params are immutable: log a new model, or record the new "
                        "value as a tag",
                    )
