"""The embedded tracking store: runs, params, tags and metrics (SQL).

Every function takes the metadata ``Engine`` and runs in its own transaction, with MLflow's
semantics, so that the SDK and the MLflow-compatible REST server share one implementation:

* a param is written once: logging the same value again is a no-op, a different value is
  :class:`~loopline.errors.Conflict` naming the key and both values;
* tags are overwritten; deleting a missing tag is :class:`~loopline.errors.NotFound`;
* only runs in the ``active`` lifecycle stage accept data; delete/restore are soft;
* metric points go through :mod:`loopline.tracking.metrics` (history + latest value).

Experiments live in :mod:`loopline.tracking.experiments`, dataset inputs and artifacts in
:mod:`loopline.tracking.lineage`, search in :mod:`loopline.tracking.query`. When ``actor``
is given, creating, ending, deleting and restoring runs is also written to the audit log
in the same transaction.

Example:
    >>> from loopline.core.db import create_engine_for, upgrade
    >>> engine = create_engine_for("sqlite:///:memory:"); upgrade(engine)
    >>> run = create_run(engine, 0, name="baseline")
    >>> log_batch(engine, run.id, params={"lr": "0.1"}, metrics=[Metric("loss", 0.5, 1, 0)])
    LoggedBatch(applied=True, stored=1)
    >>> get_run(engine, run.id).params
    {'lr': '0.1'}
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from loopline.core import audit
from loopline.core.bulk import driver_executemany, driver_fetchone, placeholder
from loopline.core.db import begin, reading
from loopline.errors import Conflict, InvalidInput, NotFound
from loopline.tracking import metrics as metric_store
from loopline.tracking import run_json
from loopline.tracking._dialect import MetricRow, cached_statement, insert_for
from loopline.tracking.entities import (
    RUN_ID_LENGTH,
    ArtifactEntry,
    Experiment,
    LoggedBatch,
    Metric,
    MetricPoint,
    NewRun,
    RunRecord,
    is_run_id_prefix,
    now_ms,
)
from loopline.tracking.experiments import experiment_for_run
from loopline.tracking.run_records import get_runs as get_runs  # re-exported
from loopline.tracking.run_records import runs_in
from loopline.tracking.tables import (
    RUN_STATUSES,
    run_artifacts,
    runs,
)
from loopline.tracking.tables import params as params_table
from loopline.tracking.tables import tags as tags_table
from loopline.tracking.validation import (
    check_artifact_path,
    check_int,
    check_key,
    check_param_value,
    check_run_name,
    check_tag_value,
    check_user_id,
    metric_float,
    stored_metric_value,
)

#: Tag that MLflow's UI reads to nest a child run under its parent.
PARENT_RUN_TAG = "mlflow.parentRunId"
#: MLflow's tag for the run name: setting it renames the run, as in MLflow (the SDK's
#: ``run.set_tag("mlflow.runName", ...)`` left the name as it was, so ``run.name``,
#: ``loopline runs`` and the UI showed one name and MLflow clients the tag's).
RUN_NAME_TAG = "mlflow.runName"
#: Tags ``loopline.ingest.<writer>`` hold the last batch number applied from each metric
#: writer (see :func:`log_batch`); they are written by the server only.
INGEST_TAG_PREFIX = "loopline.ingest."
_CHUNK = 500
_names = random.Random()
_ADJECTIVES = (
    "bold brave bright calm clever crisp eager fast gentle glad grand keen kind lively lucky "
    "merry neat nimble proud quick quiet sharp shiny smart steady sunny swift warm wise"
)
_NOUNS = (
    "ant bass bear bee crab crane deer dove eel elk finch fox frog gull hare hawk heron ibis "
    "koala lark lynx mole moth newt owl panda puma quail robin seal shrew slug snail stork "
    "swan toad trout wasp whale wolf wren yak"
)


def random_run_name() -> str:
    """A readable run name such as ``swift-heron-274`` (MLflow-style).

    Example:
        >>> len(random_run_name().split("-"))
        3
    """
    adjective = _names.choice(_ADJECTIVES.split())
    noun = _names.choice(_NOUNS.split())
    return f"{adjective}-{noun}-{_names.randint(100, 999)}"


# -- runs --------------------------------------------------------------------------------


def create_run(
    engine: Engine | Connection,
    experiment_id: int,
    *,
    name: str | None = None,
    start_time: int | None = None,
    tags: Mapping[str, Any] | None = None,
    parent_run_id: str | None = None,
    user_id: str | None = None,
    actor: str | None = None,
    artifacts: Sequence[ArtifactEntry] = (),
) -> RunRecord:
    """Create a RUNNING run in an active experiment and return it.

    ``name`` defaults to a random readable name; a child run also gets MLflow's
    ``mlflow.parentRunId`` tag so that MLflow's UI nests it. ``artifacts`` (blobs already
    in the artifact store) are indexed in the same transaction.

    One transaction, which reads the experiment and writes the run and its audit event, on
    ``engine`` or on a connection held open by the caller outside any transaction
    (:func:`loopline.core.db.begin`): if it fails, nothing is written.

    Example:
        >>> # create_run(engine, 0, name="baseline", tags={"team": "risk"}).status -> 'RUNNING'
    """
    with begin(engine) as conn:
        new = new_run(
            experiment_for_run(conn, experiment_id),
            name=name,
            start_time=start_time,
            tags=tags,
            parent_run_id=parent_run_id,
            user_id=user_id,
            actor=actor,
            artifacts=artifacts,
        )
        # The experiment was read in this transaction: its stage needs no second look.
        _insert_run(conn, new, experiment_read=True)
    return new.record


def new_run(
    exp: Experiment,
    *,
    name: str | None = None,
    start_time: int | None = None,
    tags: Mapping[str, Any] | None = None,
    parent_run_id: str | None = None,
    user_id: str | None = None,
    actor: str | None = None,
    artifacts: Sequence[ArtifactEntry] = (),
) -> NewRun:
    """Check and name a RUNNING run of ``exp`` without writing it (see :func:`write_run`).

    Everything that can be refused is refused here, so that the write can come later (the
    SDK writes a run with its first params, or whole when it ends quickly).

    Example:
        >>> from loopline.tracking.entities import Experiment
        >>> new_run(Experiment(0, "Default", None, "active", 0, 0, {})).record.status
        'RUNNING'
    """
    if exp.lifecycle_stage != "active":
        raise _deleted_experiment(exp.name)
    if name is not None:
        check_run_name(name)
    if user_id is not None:
        check_user_id(user_id)
    clean_tags = _clean_tags(tags or {})
    tagged = _tagged_name(clean_tags)
    if tagged is not None and name is not None and tagged != name:
        raise InvalidInput(  # MLflow's store refuses it too
            f"the run name {name!r} and the tag {RUN_NAME_TAG} {tagged!r} differ",
            field="name",
            hint=f"give the name once: as name, or as the tag {RUN_NAME_TAG}",
        )
    name = name or tagged
    if parent_run_id is not None:
        clean_tags[PARENT_RUN_TAG] = parent_run_id
    for entry in artifacts:
        check_artifact_path(entry.path)
    run_id = uuid.uuid4().hex
    location = exp.artifact_location or f"mlflow-artifacts:/{exp.id}"
    record = RunRecord(
        id=run_id,
        experiment_id=exp.id,
        experiment=exp.name,
        name=name or random_run_name(),
        status="RUNNING",
        start_time=check_int(start_time, "start_time") if start_time is not None else now_ms(),
        end_time=None,
        parent_run_id=parent_run_id,
        lifecycle_stage="active",
        user_id=user_id,
        artifact_uri=f"{location.rstrip('/')}/{run_id}/artifacts",
        tags=dict(sorted(clean_tags.items())),
    )
    return NewRun(record, tuple(artifacts), actor)


def _deleted_experiment(name: str) -> InvalidInput:
    return InvalidInput(
        f"experiment {name!r} is deleted; runs cannot be added to it",
        field="experiment",
        hint="restore the experiment or use another one",
    )


_RUN_EXISTS_SQL = 'SELECT "id" FROM "runs" WHERE "id" = {p}'
# A new run's statements go straight to the driver (``?`` on SQLite, ``%s`` on PostgreSQL),
# inside the transaction ``engine.begin()`` opened: they are fixed, and SQLAlchemy's work
# per statement (~50 us) added up to a fifth of the CPU time of creating a run.
_INSERT_RUN_SQL = (
    'INSERT INTO "runs" ("id", "experiment_id", "name", "status", "start_time", "end_time", '
    '"parent_run_id", "lifecycle_stage", "user_id", "artifact_uri", "params_json", "tags_json") '
    "VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p})"
)
_INSERT_TAGS_SQL = 'INSERT INTO "tags" ("run_id", "key", "value") VALUES ({p}, {p}, {p})'
_INSERT_PARAMS_SQL = 'INSERT INTO "params" ("run_id", "key", "value") VALUES ({p}, {p}, {p})'
_EXPERIMENT_STAGE_SQL = 'SELECT "lifecycle_stage" FROM "experiments" WHERE "id" = {p}'


def write_run(
    engine: Engine,
    new: NewRun,
    *,
    params: Mapping[str, str] | None = None,
    tags: Mapping[str, str | None] | None = None,
    rows: Sequence[MetricRow] = (),
    end: tuple[str, int] | None = None,
) -> None:
    """Insert a run made by :func:`new_run`, in one transaction with its first data.

    ``params`` and ``tags`` (already checked: :func:`check_params`, :func:`check_tags`) and
    metric ``rows`` are written with it; ``end=(status, end_time)`` ends it in the same
    commit. The experiment must still be active and the parent must exist. The audit log
    gets the run's creation (and its end) as separate calls to the store would record them.

    Example:
        >>> # write_run(engine, new_run(exp), params={"lr": "0.1"}, end=("FINISHED", now_ms()))
    """
    with engine.begin() as conn:
        _insert_run(conn, new, params=params, tags=tags, rows=rows, end=end)


def _insert_run(
    conn: Connection,
    new: NewRun,
    *,
    params: Mapping[str, str] | None = None,
    tags: Mapping[str, str | None] | None = None,
    rows: Sequence[MetricRow] = (),
    end: tuple[str, int] | None = None,
    experiment_read: bool = False,
) -> None:
    """:func:`write_run` in the caller's transaction; ``experiment_read``: the experiment
    was read (and found active) in this transaction already."""
    record = new.record
    status, end_time = "RUNNING", None
    if end is not None:
        status, end_time = check_run_status(end[0]), check_int(end[1], "end_time")
    all_tags = {**record.tags, **(tags or {})}
    name = _tagged_name(all_tags) or record.name  # a tag set before the run was written
    p = placeholder(conn)
    if not experiment_read:
        _require_active_experiment(conn, record)
    if record.parent_run_id is not None:
        sql = _RUN_EXISTS_SQL.format(p=p)
        if driver_fetchone(conn, sql, (record.parent_run_id,)) is None:
            raise NotFound(
                f"run {record.parent_run_id!r} does not exist",
                hint="list runs with `loopline runs ls` and check the parent run id",
            )
    driver_executemany(
        conn,
        _INSERT_RUN_SQL.format(p=p),
        [
            (
                record.id,
                record.experiment_id,
                name,
                status,
                record.start_time,
                end_time,
                record.parent_run_id,
                "active",
                record.user_id,
                record.artifact_uri,
                run_json.object_json(params or {}),
                run_json.object_json(all_tags),
            )
        ],
    )
    run_id = record.id
    if all_tags:
        rows_t = [(run_id, k, v) for k, v in all_tags.items()]
        driver_executemany(conn, _INSERT_TAGS_SQL.format(p=p), rows_t)
    if params:
        rows_p = [(run_id, k, v) for k, v in params.items()]
        driver_executemany(conn, _INSERT_PARAMS_SQL.format(p=p), rows_p)
    if new.artifacts:
        conn.execute(run_artifacts.insert(), artifact_rows(record.id, new.artifacts, now_ms()))
    if rows:
        metric_store.write_rows(conn, rows, new_runs=(run_id,))
    if new.actor:
        events = [
            audit.NewEvent(
                new.actor,
                "run.create",
                "run",
                record.id,
                after={"experiment": record.experiment, "parent_run_id": record.parent_run_id},
            )
        ]
        if status != "RUNNING":
            events.append(
                audit.NewEvent(
                    new.actor,
                    "run.update",
                    "run",
                    record.id,
                    before={"status": "RUNNING"},
                    after={"status": status},
                )
            )
        audit.append_many(conn, events)


def artifact_rows(
    run_id: str, entries: Iterable[ArtifactEntry], logged_time: int
) -> list[dict[str, Any]]:
    """The ``run_artifacts`` rows indexing ``entries`` (blobs already in the store) under
    ``run_id``.

    Example:
        >>> artifact_rows("r1", [], 0)
        []
    """
    return [
        {"run_id": run_id, "path": e.path, "digest": e.digest, "size": e.size,
         "logged_time": logged_time}
        for e in entries
    ]  # fmt: skip


def _require_active_experiment(conn: Connection, record: RunRecord) -> None:
    """Raise unless the run's experiment still exists and is active (it may have been
    deleted since :func:`new_run` read it)."""
    sql = _EXPERIMENT_STAGE_SQL.format(p=placeholder(conn))
    found_stage = driver_fetchone(conn, sql, (record.experiment_id,))
    if found_stage is None:
        raise NotFound(
            f"experiment {record.experiment!r} (id {record.experiment_id}) does not exist",
            hint="it was removed while the run started; start the run again",
        )
    if found_stage[0] != "active":
        raise _deleted_experiment(record.experiment)


def check_run_status(status: str) -> str:
    """``status`` if it is one of MLflow's run statuses, else InvalidInput naming them.

    Example:
        >>> check_run_status("FINISHED")
        'FINISHED'
    """
    if status not in RUN_STATUSES:
        raise InvalidInput(
            f"unknown run status {status!r}",
            field="status",
            hint=f"use one of {', '.join(RUN_STATUSES)}",
        )
    return status


class RunState(NamedTuple):
    """What a write checks before it touches a run (:func:`require_run`)."""

    id: str
    lifecycle_stage: str
    status: str


# On the driver: every write through the MLflow REST API checks its run first, one request
# per metric, and SQLAlchemy's statement handling cost more than the lookup.
_RUN_STATE_SQL = 'SELECT "id", "lifecycle_stage", "status" FROM "runs" WHERE "id" = {p}'


def require_run(engine_or_conn: Engine | Connection, run_id: str) -> RunState:
    """The run's id, lifecycle stage and status, or :class:`NotFound` naming the id.

    Example:
        >>> # require_run(engine, run_id).lifecycle_stage  -> 'active'
    """
    if isinstance(engine_or_conn, Engine):
        with reading(engine_or_conn) as conn:
            return require_run(conn, run_id)
    sql = _RUN_STATE_SQL.format(p=placeholder(engine_or_conn))
    row = driver_fetchone(engine_or_conn, sql, (run_id,)) if type(run_id) is str else None
    if row is None:
        raise NotFound(
            f"run {run_id!r} does not exist",
            hint="list runs with `loopline runs ls` and check the id",
        )
    return RunState(*row)


def require_active(conn: Connection, run_id: str, *, lock: bool = False) -> None:
    """Raise unless the run exists and is not deleted (only such runs accept data).

    ``lock=True`` first locks the run's row for the transaction (PostgreSQL; see
    :func:`loopline.tracking.run_json.lock_runs`): pass it before writing params or tags.

    Example:
        >>> # with engine.begin() as conn: require_active(conn, run_id)
    """
    if lock:
        run_json.lock_runs(conn, (run_id,))
    row = require_run(conn, run_id)
    if row.lifecycle_stage != "active":
        raise InvalidInput(
            f"run {run_id} is deleted; it accepts no more data",
            field="run_id",
            hint="restore the run first (restore_run)",
        )


def get_run(engine: Engine | Connection, run_id: str) -> RunRecord:
    """Everything about one run, or :class:`NotFound` naming the id; ``engine`` may be a
    connection held open outside any transaction (:func:`loopline.core.db.read_on`).

    Example:
        >>> # get_run(engine, "3f2a...").metrics  -> {'auc': 0.91}
    """
    # A run id is text: another type names no run (PostgreSQL refused to compare it).
    found = get_runs(engine, [run_id]) if type(run_id) is str else []
    if not found:
        raise NotFound(
            f"run {run_id!r} does not exist",
            hint="list runs with `loopline runs ls` and check the id",
        )
    return found[0]


_HEX_DIGITS = "0123456789abcdef"


def check_run_id_prefix(prefix: str) -> str:
    """``prefix`` when it can start a run id and is not one: 1 to 31 lowercase hex digits.

    Example:
        >>> check_run_id_prefix("3f2a9c0d")
        '3f2a9c0d'
    """
    if type(prefix) is not str or len(prefix) >= RUN_ID_LENGTH or not is_run_id_prefix(prefix):
        raise InvalidInput(
            f"a run id prefix is 1 to {RUN_ID_LENGTH - 1} lowercase hex digits, got {prefix!r}",
            field="run_id",
            hint="pass the first characters of an id as `loopline runs ls` shows it",
        )
    return prefix


def run_ids_starting(engine: Engine, prefix: str, *, limit: int = 2) -> list[str]:
    """The ids (at most ``limit``, in order) of the runs, deleted ones too, whose id starts
    with ``prefix``, a lowercase hex string shorter than a run id.

    A range on the primary key (``prefix <= id < successor``) that the index answers on
    SQLite and PostgreSQL alike; ``LIKE 'prefix%'`` is a full scan on PostgreSQL unless the
    database collation is C. The successor is the prefix with its last digit raised
    (``...9`` -> ``...a``, ``...f`` -> ``...g``): letters and digits only, which sort the
    same in every collation, unlike a ``'\uffff'`` sentinel or ``':'`` after ``'9'``.

    Example:
        >>> from loopline.core.db import create_engine_for, upgrade
        >>> engine = create_engine_for("sqlite:///:memory:"); upgrade(engine)
        >>> run = create_run(engine, 0)
        >>> run_ids_starting(engine, run.id[:8]) == [run.id]
        True
    """
    check_run_id_prefix(prefix)
    last = prefix[-1]
    successor = prefix[:-1] + ("g" if last == "f" else _HEX_DIGITS[_HEX_DIGITS.index(last) + 1])
    query = (
        sa.select(runs.c.id)
        .where(runs.c.id >= prefix, runs.c.id < successor)
        .order_by(runs.c.id)
        .limit(limit)
    )
    with reading(engine) as conn:
        found = [str(row.id) for row in conn.execute(query)]
    return [run_id for run_id in found if run_id.startswith(prefix)]


def update_run(
    engine: Engine | Connection,
    run_id: str,
    *,
    status: str | None = None,
    end_time: int | None = None,
    name: str | None = None,
    actor: str | None = None,
) -> RunRecord:
    """Change a run's status, end time or name (MLflow's ``UpdateRun``); a new name is its
    ``mlflow.runName`` tag's too, if it has one. Returns the run as the change left it.

    One transaction, which writes the change and its audit event and reads the run back,
    on ``engine`` or on a connection held open by the caller outside any transaction
    (:func:`loopline.core.db.begin`): if it fails, nothing is written.

    Example:
        >>> # update_run(engine, run_id, status="FINISHED", end_time=now_ms())
    """
    values: dict[str, Any] = {}
    if status is not None:
        values["status"] = check_run_status(status)
    if end_time is not None:
        values["end_time"] = check_int(end_time, "end_time")
    if name is not None:
        values["name"] = check_run_name(name)
    with begin(engine) as conn:
        before = require_run(conn, run_id)
        if values:
            _update_run_row(conn, run_id, values)
        if name is not None:  # a run's RUN_NAME_TAG follows its name (it showed the old one)
            renamed = conn.execute(
                tags_table.update()
                .where(tags_table.c.run_id == run_id, tags_table.c.key == RUN_NAME_TAG)
                .values(value=values["name"])
            )
            if renamed.rowcount:
                run_json.refresh(conn, (run_id,), tags=True)
        if actor and status is not None and status != before.status:
            audit.append(
                conn,
                actor=actor,
                action="run.update",
                object_type="run",
                object_id=run_id,
                before={"status": before.status},
                after={"status": status},
            )
        # Read back in the transaction: no second one (and its checkout) after the commit;
        # require_run found the run, and nothing removes it before the commit.
        return runs_in(conn, [run_id])[0]


def _update_run_row(conn: Connection, run_id: str, values: dict[str, Any]) -> None:
    """Set the run's columns named in ``values`` (status, end_time, name) on the driver:
    MLflow's client ends every run this way, and building the statement in SQLAlchemy cost
    more than running it."""
    p = placeholder(conn)
    columns = ", ".join(f'"{column}" = {p}' for column in values)  # names of this module
    sql = f'UPDATE "runs" SET {columns} WHERE "id" = {p}'
    driver_executemany(conn, sql, [(*values.values(), run_id)])


def delete_run(engine: Engine, run_id: str, *, actor: str | None = None) -> None:
    """Soft-delete a run: it disappears from searches but can be restored.

    Example:
        >>> # delete_run(engine, run_id, actor="ada")
    """
    _set_run_lifecycle(engine, run_id, "deleted", now_ms(), actor)


def restore_run(engine: Engine, run_id: str, *, actor: str | None = None) -> None:
    """Undo :func:`delete_run`.

    Example:
        >>> # restore_run(engine, run_id)
    """
    _set_run_lifecycle(engine, run_id, "active", None, actor)


def _set_run_lifecycle(
    engine: Engine, run_id: str, stage: str, deleted_time: int | None, actor: str | None
) -> None:
    with engine.begin() as conn:
        require_run(conn, run_id)
        conn.execute(
            runs.update()
            .where(runs.c.id == run_id)
            .values(lifecycle_stage=stage, deleted_time=deleted_time)
        )
        if actor:
            audit.append(
                conn,
                actor=actor,
                action="run.delete" if stage == "deleted" else "run.restore",
                object_type="run",
                object_id=run_id,
            )


# -- params, tags, metrics ---------------------------------------------------------------


def _pairs(items: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> list[tuple[str, Any]]:
    return list(items.items()) if isinstance(items, Mapping) else list(items)


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
    param_pairs = _clean_params(_pairs(params))
    tag_pairs = _clean_tags(tags)
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
            renamed = _tagged_name(tag_pairs)
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


#: Sets a run's status and end time (bound: ``run``, ``new_status``, ``new_end``).
END_RUN = (
    runs.update()
    .where(runs.c.id == sa.bindparam("run"))
    .values(status=sa.bindparam("new_status"), end_time=sa.bindparam("new_end"))
)


def finish_run(
    engine: Engine,
    run_id: str,
    *,
    status: str,
    end_time: int,
    rows: Sequence[MetricRow] = (),
    actor: str | None = None,
) -> None:
    """End a run: write its last metric points and set status and end time, in one transaction.

    Example:
        >>> # finish_run(engine, run_id, status="FINISHED", end_time=now_ms(), rows=pending)
    """
    check_run_status(status)
    end = check_int(end_time, "end_time")
    with engine.begin() as conn:
        before = require_run(conn, run_id)
        if rows:
            metric_store.write_rows(conn, rows)
        conn.execute(END_RUN, {"run": run_id, "new_status": status, "new_end": end})
        if actor and status != before.status:
            audit.append(
                conn,
                actor=actor,
                action="run.update",
                object_type="run",
                object_id=run_id,
                before={"status": before.status},
                after={"status": status},
            )


def check_params(params: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> dict[str, str]:
    """Params as stored (text), checked as :func:`log_batch` checks them; raises on a bad one.

    Example:
        >>> check_params({"lr": 0.1})
        {'lr': '0.1'}
    """
    return _clean_params(_pairs(params))


def check_tags(tags: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> dict[str, str | None]:
    """Tags as stored, checked as :func:`log_batch` checks them; raises on the first bad one.

    Example:
        >>> check_tags({"team": "risk"})
        {'team': 'risk'}
    """
    return _clean_tags(tags)


def _clean_tags(tags: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> dict[str, str | None]:
    clean: dict[str, str | None] = {}
    for key, value in _pairs(tags):
        check_key(key, "tag")
        if key.startswith(INGEST_TAG_PREFIX):
            raise InvalidInput(
                f"tag {key!r} is reserved: tags starting with {INGEST_TAG_PREFIX!r} record "
                "which metric batches a run has received",
                field=f"tags.{key}",
                hint="choose another tag key",
            )
        text = clean[key] = check_tag_value(key, value)
        if key == RUN_NAME_TAG and text:  # it becomes the name: it must fit the column
            check_run_name(text)
    return clean


def _tagged_name(tags: Mapping[str, str | None]) -> str | None:
    """The run name a checked :data:`RUN_NAME_TAG` sets, if any (an empty one sets none)."""
    return tags.get(RUN_NAME_TAG) or None


def _clean_params(pairs: list[tuple[str, Any]]) -> dict[str, str]:
    clean: dict[str, str] = {}
    for key, value in pairs:
        check_key(key, "param")
        text = check_param_value(key, value)
        if key in clean and clean[key] != text:
            raise Conflict(
                f"param {key!r} appears twice in one batch, as {clean[key]!r} and {text!r}",
                hint="log each param once per batch",
            )
        clean[key] = text
    return clean


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


def refuse_changed_params(
    stored: Iterable[Any], values: Mapping[str, str], owner: str, hint: str
) -> None:
    """Raise :class:`Conflict` for the first stored ``(key, value)`` that ``values`` gives
    another value: a param, once written, never changes (a run's, a logged model's).

    Example:
        >>> refuse_changed_params([("lr", "0.1")], {"lr": "0.1"}, "run r1", "start a new run")
    """
    for key, value in stored:
        if value != values[key]:
            raise Conflict(
                f"param {key!r} of {owner} is already {value!r}; "
                f"it cannot be changed to {values[key]!r}",
                hint=hint,
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
