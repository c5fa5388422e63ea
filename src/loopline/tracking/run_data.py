"""Logging to an existing run: params, tags and metric points (MLflow's ``LogBatch``),
deleting a tag, and reading one metric's history.

Separate from creating runs (:mod:`loopline.tracking.run_creation`) and changing their
state (:mod:`loopline.tracking.run_state`): this is the write path of a run's data, with
MLflow's semantics:

* a param is written once: logging the same value again is a no-op, a different value is
  :class:`~loopline.errors.Conflict` naming the key and both values;
* tags are overwritten; deleting a missing tag is :class:`~loopline.errors.NotFound`;
* only runs in the ``active`` lifecycle stage accept data;
* metric points go through :mod:`loopline.tracking.metrics` (history + latest value).

Example:
    >>> from loopline.core.db import create_engine_for
    >>> from loopline.core.db_migrations import upgrade
    >>> from loopline.tracking.entities import Metric
    >>> from loopline.tracking.run_creation import create_run
    >>> from loopline.tracking.run_state import get_run
    >>> engine = create_engine_for("sqlite:///:memory:"); upgrade(engine)
    >>> run = create_run(engine, 0, name="baseline")
    >>> log_batch(engine, run.id, params={"lr": "0.1"}, metrics=[Metric("loss", 0.5, 1, 0)])
    LoggedBatch(applied=True, stored=1)
    >>> get_run(engine, run.id).params
    {'lr': '0.1'}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from loopline.core.bulk import driver_fetchone
from loopline.core.db import begin, reading
from loopline.errors import InvalidInput, NotFound
from loopline.tracking import metrics as metric_store
from loopline.tracking import run_json
from loopline.tracking._dialect import MetricRow, cached_statement, insert_for
from loopline.tracking.entities import LoggedBatch, Metric, MetricPoint
from loopline.tracking.param_tag_checks import (
    INGEST_TAG_PREFIX,
    check_params,
    check_tags,
    refuse_changed_params,
    tagged_name,
)
from loopline.tracking.run_state import require_active, require_run
from loopline.tracking.tables import params as params_table
from loopline.tracking.tables import runs
from loopline.tracking.tables import tags as tags_table
from loopline.tracking.validation import check_int, check_key, metric_float, stored_metric_value

_CHUNK = 500


def log_batch(
    engine: Engine | Connection,
    run_id: str,
    *,
    metrics: Sequence[Metric] = (),
    params: Mapping[str, Any] | Iterable[tuple[str, Any]] = (),
    tags: Mapping[str, Any] | Iterable[tuple[str, Any]] = (),
    rows: Sequence[MetricRow] = (),
    batch: tuple[str, int] | None = None,
) -> LoggedBatch:
    """Log metrics, params and tags to a run in one transaction (MLflow's ``LogBatch``).

    Everything is validated before anything is written; a param that already has another
    value is :class:`Conflict` naming the key and both values, and nothing is written.
    ``rows`` are metric points already in stored form and checked (the REST API's decoder
    makes them).

    ``engine`` may be a connection held open by the caller, outside any transaction: the
    batch is its own transaction on it (:func:`loopline.core.db.begin`).

    ``batch=(writer, seq)`` makes a retried batch harmless: the batch is applied only when
    ``seq`` is greater than the last one applied from ``writer`` to this run (kept in the
    tag ``loopline.ingest.<writer>``, updated in the same transaction), so a batch whose
    acknowledgement was lost can be sent again.

    Returns a :class:`LoggedBatch`: ``applied`` is False when the batch had been applied
    already (nothing is written), and ``stored`` counts the metric points written now. A
    point already stored, or repeated in the batch, is stored once (see
    :mod:`loopline.tracking.metrics`), so a batch sent again without ``batch`` stores 0.

    Example:
        >>> # log_batch(engine, run_id, metrics=[Metric("loss", 0.3, now_ms(), 1)],
        >>> #           params={"lr": "0.1"}, tags={"team": "risk"})
    """
    param_pairs = check_params(params)
    tag_pairs = check_tags(tags)
    all_rows: list[MetricRow] = list(rows)
    all_rows.extend(_metric_rows(run_id, metrics))
    with begin(engine) as conn:
        # The batch ledger is a tag too.
        tags_written = bool(tag_pairs) or batch is not None
        copies = None
        if all_rows and conn.dialect.name == "sqlite":
            copies = {run_id: _active_run_copy(conn, run_id)}
        else:
            require_active(conn, run_id, lock=bool(param_pairs) or tags_written)
        if batch is not None and not _claim_batch(conn, run_id, *batch):
            return LoggedBatch(applied=False, stored=0)
        if param_pairs:
            _write_params(conn, run_id, param_pairs)
        if tag_pairs:
            _upsert_tags(conn, run_id, tag_pairs)
            renamed = tagged_name(tag_pairs)
            if renamed is not None:
                conn.execute(runs.update().where(runs.c.id == run_id).values(name=renamed))
        run_json.refresh(conn, (run_id,), params=bool(param_pairs), tags=tags_written)
        stored = metric_store.write_rows(conn, all_rows, copies=copies)
    return LoggedBatch(applied=True, stored=stored)


_ACTIVE_RUN_SQL = 'SELECT "lifecycle_stage", "metrics_json" FROM "runs" WHERE "id" = ?'


def _active_run_copy(conn: Connection, run_id: str) -> str | None:
    """On SQLite, :func:`require_active` and the run's ``metrics_json`` in one statement.

    A write transaction on SQLite holds the database's write lock from its start (``BEGIN
    IMMEDIATE``), so the copy read here is the one its metric write updates: one statement
    fewer per MLflow log-metric request. A missing or deleted run gets
    :func:`require_active`'s own error.
    """
    row = driver_fetchone(conn, _ACTIVE_RUN_SQL, (run_id,)) if type(run_id) is str else None
    if row is None or row[0] != "active":
        require_active(conn, run_id)  # raises: NotFound, or InvalidInput for a deleted run
    return row[1] if row is not None else None


def _metric_rows(run_id: str, metrics: Sequence[Metric]) -> list[MetricRow]:
    """Checked, stored-form rows; a batch repeats few keys, so each is checked once, and
    plain ints and finite floats skip the general conversions."""
    rows: list[MetricRow] = []
    keys: set[str] = set()
    for key, raw, timestamp, step in metrics:
        if type(key) is not str or key not in keys:
            keys.add(check_key(key, "metric"))
        value = raw if type(raw) is float else metric_float(key, raw)
        is_nan = 0
        if value - value:  # NaN or +/-inf (value - value is 0.0 for every finite float)
            value, nan = stored_metric_value(value)
            is_nan = int(nan)
        if type(timestamp) is not int:
            timestamp = check_int(timestamp, "timestamp")
        if type(step) is not int:
            step = check_int(step, "step")
        rows.append((run_id, key, value, timestamp, step, is_nan))
    return rows


def _claim_batch(conn: Connection, run_id: str, writer: str, seq: int) -> bool:
    """Record ``seq`` as the last batch applied from ``writer``; False if it was already.

    The conditional upsert is the gate: on PostgreSQL a concurrent retry of the same batch
    waits on the row lock and then finds the condition false; on SQLite the write lock
    serialises whole transactions.
    """
    stmt = cached_statement(conn, "tags.claim_batch", _claim_statement)
    bound = {"run_id": run_id, "key": INGEST_TAG_PREFIX + writer, "value": str(seq), "seq": seq}
    return conn.execute(stmt, bound).first() is not None


def _claim_statement(conn: Connection) -> Any:
    stmt = insert_for(conn, tags_table)
    return stmt.on_conflict_do_update(
        index_elements=["run_id", "key"],
        set_={"value": stmt.excluded.value},
        where=sa.cast(tags_table.c.value, sa.BigInteger) < sa.bindparam("seq", type_=sa.BigInteger),
    ).returning(tags_table.c.key)


_STORED_PARAMS = sa.select(params_table.c.key, params_table.c.value).where(
    params_table.c.run_id == sa.bindparam("run_id"),
    params_table.c.key.in_(sa.bindparam("keys", expanding=True)),
)


def _insert_params(conn: Connection) -> Any:
    return insert_for(conn, params_table).on_conflict_do_nothing(index_elements=["run_id", "key"])


def upsert_tag_statement(conn: Connection) -> Any:
    """INSERT of a tag that overwrites the value of an existing (run, key).

    Example:
        >>> # conn.execute(cached_statement(conn, "tags.upsert", upsert_tag_statement), rows)
    """
    stmt = insert_for(conn, tags_table)
    return stmt.on_conflict_do_update(
        index_elements=["run_id", "key"], set_={"value": stmt.excluded.value}
    )


def _write_params(conn: Connection, run_id: str, values: dict[str, str]) -> None:
    stmt = cached_statement(conn, "params.insert", _insert_params)
    conn.execute(stmt, [{"run_id": run_id, "key": k, "value": v} for k, v in values.items()])
    keys = list(values)
    for start in range(0, len(keys), _CHUNK):
        chunk = keys[start : start + _CHUNK]
        stored = conn.execute(_STORED_PARAMS, {"run_id": run_id, "keys": chunk})
        refuse_changed_params(
            stored,
            values,
            f"run {run_id}",
            "params are immutable: start a new run, or log the new value as a tag or a metric",
        )


def _upsert_tags(conn: Connection, run_id: str, values: dict[str, str | None]) -> None:
    stmt = cached_statement(conn, "tags.upsert", upsert_tag_statement)
    conn.execute(stmt, [{"run_id": run_id, "key": k, "value": v} for k, v in values.items()])


def set_tag(engine: Engine, run_id: str, key: str, value: Any) -> None:
    """Set (or overwrite) one tag on a run.

    Example:
        >>> # set_tag(engine, run_id, "stage", "candidate")
    """
    log_batch(engine, run_id, tags={key: value})


def delete_tag(engine: Engine, run_id: str, key: str) -> None:
    """Delete a tag from a run; :class:`NotFound` when the run has no such tag.

    Example:
        >>> # delete_tag(engine, run_id, "stage")
    """
    if key.startswith(INGEST_TAG_PREFIX):
        raise InvalidInput(
            f"tag {key!r} is reserved for the metric batch ledger and cannot be deleted",
            field="key",
        )
    with engine.begin() as conn:
        require_active(conn, run_id, lock=True)
        gone = conn.execute(
            tags_table.delete().where(tags_table.c.run_id == run_id, tags_table.c.key == key)
        )
        if gone.rowcount == 0:
            raise NotFound(
                f"run {run_id} has no tag {key!r}", hint="see its tags: loopline runs show"
            )
        run_json.refresh(conn, (run_id,), tags=True)


def get_metric_history(engine: Engine, run_id: str, key: str) -> list[MetricPoint]:
    """Every point logged for one metric of a run, by step then timestamp.

    Example:
        >>> # get_metric_history(engine, run_id, "loss")[0]  -> MetricPoint(0, 17..., 0.9)
    """
    require_run(engine, run_id)
    with reading(engine) as conn:
        return metric_store.history(conn, run_id, key)
