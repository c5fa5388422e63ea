"""Creating runs: check and name a new run, then write it, alone or with its first data.

Separate from a run's later life (:mod:`loopline.tracking.run_state`) and from logging to
it (:mod:`loopline.tracking.run_data`): creation is where the experiment is checked, the
run gets its id, name, artifact location and parent tag, and where the SDK's deferred write
(:func:`new_run` now, :func:`write_run` with the first data later) splits the work in two.
When ``actor`` is given, creating a run is also written to the audit log in the same
transaction.

Example:
    >>> from loopline.core.db import create_engine_for
    >>> from loopline.core.db_migrations import upgrade
    >>> engine = create_engine_for("sqlite:///:memory:"); upgrade(engine)
    >>> create_run(engine, 0, name="baseline").status
    'RUNNING'
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy.engine import Connection, Engine

from loopline.core import audit
from loopline.core.bulk import driver_executemany, driver_fetchone, placeholder
from loopline.core.db import begin
from loopline.errors import InvalidInput, NotFound
from loopline.tracking import metrics as metric_store
from loopline.tracking import run_json
from loopline.tracking._dialect import MetricRow
from loopline.tracking.entities import ArtifactEntry, Experiment, NewRun, RunRecord, now_ms
from loopline.tracking.experiments import experiment_for_run
from loopline.tracking.param_tag_checks import RUN_NAME_TAG, check_tags, tagged_name
from loopline.tracking.run_state import check_run_status
from loopline.tracking.tables import run_artifacts
from loopline.tracking.validation import (
    check_artifact_path,
    check_int,
    check_run_name,
    check_user_id,
)

#: Tag that MLflow's UI reads to nest a child run under its parent.
PARENT_RUN_TAG = "mlflow.parentRunId"
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
    clean_tags = check_tags(tags or {})
    tagged = tagged_name(clean_tags)
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

    ``params`` and ``tags`` (already checked: :func:`.check_params`, :func:`.check_tags`) and
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
    name = tagged_name(all_tags) or record.name  # a tag set before the run was written
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
