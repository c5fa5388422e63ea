"""One run by its id: find it, and change its status, end time, name or lifecycle stage.

Separate from creating runs (:mod:`loopline.tracking.run_creation`) and logging to them
(:mod:`loopline.tracking.run_data`), which both check a run through :func:`require_run` and
:func:`require_active` from here. Every function takes the metadata ``Engine`` and runs in
its own transaction, with MLflow's semantics: only runs in the ``active`` lifecycle stage
accept data; delete and restore are soft. When ``actor`` is given, ending, deleting and
restoring a run is also written to the audit log in the same transaction.

Example:
    >>> from loopline.core.db import create_engine_for
    >>> from loopline.core.db_migrations import upgrade
    >>> from loopline.tracking.run_creation import create_run
    >>> engine = create_engine_for("sqlite:///:memory:"); upgrade(engine)
    >>> run = create_run(engine, 0, name="baseline")
    >>> update_run(engine, run.id, status="FINISHED").status
    'FINISHED'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from loopline.core import audit
from loopline.core.bulk import driver_executemany, driver_fetchone, placeholder
from loopline.core.db import begin, reading
from loopline.errors import InvalidInput, NotFound
from loopline.tracking import metrics as metric_store
from loopline.tracking import run_json
from loopline.tracking._dialect import MetricRow
from loopline.tracking.entities import RUN_ID_LENGTH, RunRecord, is_run_id_prefix, now_ms
from loopline.tracking.param_tag_checks import RUN_NAME_TAG
from loopline.tracking.run_records import get_runs, runs_in
from loopline.tracking.tables import RUN_STATUSES, runs
from loopline.tracking.tables import tags as tags_table
from loopline.tracking.validation import check_int, check_run_name


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
        >>> from loopline.core.db import create_engine_for
        >>> from loopline.core.db_migrations import upgrade
        >>> from loopline.tracking.run_creation import create_run
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
        if status is not None:
            _audit_status(conn, run_id, actor, before.status, status)
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


def _audit_status(
    conn: Connection, run_id: str, actor: str | None, before: str, after: str
) -> None:
    """Record a change of the run's status in the audit log (an actor given, the status
    changed): what an update and the end of a run both do."""
    if actor and after != before:
        audit.append(
            conn,
            actor=actor,
            action="run.update",
            object_type="run",
            object_id=run_id,
            before={"status": before},
            after={"status": after},
        )


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
        _audit_status(conn, run_id, actor, before.status, status)
