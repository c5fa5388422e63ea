"""What a logged model gathers after its creation: params logged later, metrics runs link.

MLflow 3's client sends a logged model's first 100 params with its creation and the rest
in batches of 100 (``POST logged-models/{id}/params``, MLflow's ``LogLoggedModelParams``);
``mlflow.log_model_params`` sends more. Params are checked as a run's are
(:func:`loopline.tracking.param_tag_checks.check_params`: key rules, values of at most
6,000 characters, no NUL) and, like a run's, cannot change: the same value again is a no-op (a
retried request), another value is :class:`~loopline.errors.Conflict` and nothing of the
batch is kept.

A run links a metric point to a logged model by sending the model's id with it (MLflow 3's
``log_metric(..., model_id=...)``, autolog's ``training_*`` metrics, and ``log_model``,
which sends the run's points at the model's step again). The point stays the run's (the
tracking store keeps it); :func:`prepare_metrics` checks the link (the model exists; the key,
value, step and time as a run's; the dataset's name and digest, when named, fit their
columns) and :func:`write_metrics` stores it, once per (model, key, time, step, run) as
MLflow keeps it. The two are apart so that a caller checks every link before it writes the
run's points, and writes the links after them: a refused link leaves nothing behind.

:mod:`loopline.training.registry_logged_models` creates, reads and searches logged models;
this module adds to them. Rows never leave either: functions return plain values.

Example:
    >>> import tempfile, loopline
    >>> from loopline.training import registry_logged_models
    >>> ctx = loopline.init(uri="sqlite:///:memory:", artifacts=tempfile.mkdtemp())
    >>> m = registry_logged_models.create_logged_model(
    ...     ctx, name="m", experiment_id="0", source_run_id=None)
    >>> log_params(ctx, m.model_id, {"depth": "3"})
    >>> registry_logged_models.get_logged_model(ctx, m.model_id).params
    {'depth': '3'}
    >>> point = ModelMetric(m.model_id, "acc", 0.9, 1_700_000_000_000, 0, "0" * 32, "train")
    >>> write_metrics(ctx, prepare_metrics(ctx, [point]))
    >>> [(x.key, x.value, x.dataset_name) for x in registry_logged_models.get_logged_model(
    ...     ctx, m.model_id).metrics]
    [('acc', 0.9, 'train')]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from loopline.core.context import Context
from loopline.core.db import reading
from loopline.core.text import check_no_nul
from loopline.errors import InvalidInput, NotFound
from loopline.tracking._dialect import insert_for
from loopline.tracking.param_tag_checks import check_params, refuse_changed_params
from loopline.tracking.validation import check_int, check_key, metric_float, stored_metric_value
from loopline.training.registry_tables import (
    logged_model_metrics,
    logged_model_params,
    logged_models,
)

# Keys (or ids) per IN list (SQLite's limit on bound values).
_CHUNK = 500
#: The widths of a linked metric's dataset columns.
MAX_DATASET_NAME_LENGTH = 500
MAX_DATASET_DIGEST_LENGTH = 128


@dataclass(frozen=True)
class ModelMetric:
    """One metric point of logged model ``model_id``, logged by run ``run_id``, computed on
    dataset ``dataset_name`` (of digest ``dataset_digest``) when the client named one.

    Example:
        >>> ModelMetric("m-01", "acc", 0.9, 1_700_000_000_000, 0, "0" * 32).dataset_name
    """

    model_id: str
    key: str
    value: float
    timestamp: int
    step: int
    run_id: str
    dataset_name: str | None = None
    dataset_digest: str | None = None


@dataclass(frozen=True)
class PreparedMetrics:
    """Links checked by :func:`prepare_metrics`, as the rows :func:`write_metrics` stores."""

    rows: tuple[dict[str, Any], ...]


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
            refuse_changed_params(
                stored,
                values,
                f"logged model {model_id}",
                "params are immutable: log a new model, or record the new value as a tag",
            )


def _dataset_text(value: str | None, what: str, limit: int) -> str | None:
    """A dataset's name or digest as stored: None when not named (MLflow's unset is "")."""
    if not value:
        return None
    check_no_nul(value, what)
    if len(value) > limit:
        raise InvalidInput(
            f"{what} is {len(value)} characters, over the limit of {limit}",
            field=what,
            hint=f"name the dataset in at most {limit} characters",
        )
    return value


def prepare_metrics(ctx: Context, metrics: Sequence[ModelMetric]) -> PreparedMetrics:
    """Check links of metric points to logged models before anything is written.

    Each point is checked as a run's is (key, number, 64-bit step and time); a dataset's
    name and digest must fit their columns; every model must exist (:class:`NotFound`
    naming the first that does not).

    Example:
        >>> # links = prepare_metrics(ctx, [ModelMetric("m-01", "acc", 0.9, now, 0, run_id)])
    """
    rows: list[dict[str, Any]] = []
    for m in metrics:
        check_no_nul(m.model_id, "model_id")
        key = check_key(m.key, "metric")
        value, is_nan = stored_metric_value(metric_float(key, m.value))
        rows.append(
            {
                "model_id": m.model_id,
                "key": key,
                "timestamp": check_int(m.timestamp, "timestamp"),
                "step": check_int(m.step, "step"),
                "run_id": m.run_id,
                "value": value,
                "is_nan": is_nan,
                "dataset_name": _dataset_text(
                    m.dataset_name, "dataset_name", MAX_DATASET_NAME_LENGTH
                ),
                "dataset_digest": _dataset_text(
                    m.dataset_digest, "dataset_digest", MAX_DATASET_DIGEST_LENGTH
                ),
            }
        )
    wanted = list(dict.fromkeys(row["model_id"] for row in rows))
    found: set[str] = set()
    with reading(ctx.engine) as conn:
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            query = sa.select(logged_models.c.model_id).where(logged_models.c.model_id.in_(chunk))
            found.update(conn.execute(query).scalars())
    for model_id in wanted:
        if model_id not in found:
            raise NotFound(
                f"logged model {model_id!r} does not exist, so no metric can be linked to it",
                hint="log the model first (mlflow.<flavor>.log_model), then its metrics",
            )
    return PreparedMetrics(tuple(rows))


def write_metrics(ctx: Context, prepared: PreparedMetrics) -> None:
    """Store checked links; a point a model holds already (same key, time, step and run) is
    kept once, as in MLflow (``log_model`` links the run's points again on a retry).

    Example:
        >>> # write_metrics(ctx, prepare_metrics(ctx, links))
    """
    if not prepared.rows:
        return
    with ctx.engine.begin() as conn:
        conn.execute(
            insert_for(conn, logged_model_metrics).on_conflict_do_nothing(
                index_elements=["model_id", "key", "timestamp", "step", "run_id"]
            ),
            list(prepared.rows),
        )


def metrics_of(conn: Connection, model_ids: Sequence[str]) -> dict[str, list[ModelMetric]]:
    """The metric points linked to each of ``model_ids`` (by key, step, time, run); NaN comes
    back as NaN, +/-inf as +/- the largest float (as a run's history reads).

    Example:
        >>> # metrics_of(conn, ["m-01"])["m-01"][0].key -> 'acc'
    """
    out: dict[str, list[ModelMetric]] = {}
    t = logged_model_metrics.c
    ids = list(dict.fromkeys(model_ids))
    for start in range(0, len(ids), _CHUNK):
        query = (
            sa.select(
                t.model_id, t.key, t.value, t.is_nan, t.timestamp, t.step, t.run_id,
                t.dataset_name, t.dataset_digest,
            )
            .where(t.model_id.in_(ids[start : start + _CHUNK]))
            .order_by(t.model_id, t.key, t.step, t.timestamp, t.run_id)
        )  # fmt: skip
        for row in conn.execute(query):
            value = float("nan") if row.is_nan else row.value
            out.setdefault(row.model_id, []).append(
                ModelMetric(
                    row.model_id, row.key, value, row.timestamp, row.step, row.run_id,
                    row.dataset_name, row.dataset_digest,
                )
            )  # fmt: skip
    return out
