"""Experiments in the embedded tracking store: create, get, get-or-create, rename, delete,
tag, untag.

Experiment ids are integers (MLflow's REST API shows them as strings); ``Default`` is
experiment 0 and exists from the first migration. Names are unique, deleted experiments
included. When ``actor`` is given, creation, deletion and restoration are audited in the
same transaction. A rename keeps the id, the runs and the artifacts (they live under the
id); what asks for the experiment by its old name afterwards (a script's
``start_run(experiment=...)``, a loop policy) gets a new experiment of that name.

Example:
    >>> from loopline.core.db import create_engine_for
    >>> from loopline.core.db_migrations import upgrade
    >>> engine = create_engine_for("sqlite:///:memory:"); upgrade(engine)
    >>> get_or_create_experiment(engine, "churn").artifact_location
    'mlflow-artifacts:/1'
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from loopline.core import audit
from loopline.core.bulk import driver_fetchone, placeholder
from loopline.core.columns import MAX_INTEGER
from loopline.core.db import read_on
from loopline.errors import Conflict, InvalidInput, NotFound
from loopline.tracking._dialect import insert_for
from loopline.tracking.entities import Experiment, now_ms
from loopline.tracking.tables import experiment_tags, experiments, runs
from loopline.tracking.validation import MAX_EXPERIMENT_NAME_LENGTH, check_key, check_tag_value

# Lookups built once: every run start looks its experiment up (building a statement costs
# more than running it).
_TAGS = sa.select(experiment_tags.c.key, experiment_tags.c.value).where(
    experiment_tags.c.experiment_id == sa.bindparam("experiment_id")
)
_BY_ID = sa.select(experiments).where(experiments.c.id == sa.bindparam("experiment_id"))
_BY_NAME = sa.select(experiments).where(experiments.c.name == sa.bindparam("name"))
#: Experiment ids per query when the tags of a page of experiments are read.
_TAG_CHUNK = 500


def experiment_from_row(conn: Connection, row: Any) -> Experiment:
    """An :class:`Experiment` from an ``experiments`` row, with its tags.

    Example:
        >>> # experiment_from_row(conn, conn.execute(sa.select(experiments)).first())
    """
    found = conn.execute(_TAGS, {"experiment_id": row.id})
    return _experiment(row, {r.key: r.value for r in found})


def _experiment(row: Any, tags: dict[str, str | None]) -> Experiment:
    return Experiment(
        id=row.id,
        name=row.name,
        artifact_location=row.artifact_location,
        lifecycle_stage=row.lifecycle_stage,
        creation_time=row.creation_time,
        last_update_time=row.last_update_time,
        tags=tags,
    )


def experiments_from_rows(conn: Connection, rows: Sequence[Any]) -> list[Experiment]:
    """:class:`Experiment` objects from ``experiments`` rows, their tags read in one query
    (a page of 50 experiments took 51 queries, one per experiment's tags).

    Example:
        >>> # experiments_from_rows(conn, list(conn.execute(sa.select(experiments))))
    """
    tags: dict[int, dict[str, str | None]] = {row.id: {} for row in rows}
    ids = list(tags)
    for start in range(0, len(ids), _TAG_CHUNK):  # a page may hold 50,000: bound the IN list
        query = sa.select(
            experiment_tags.c.experiment_id, experiment_tags.c.key, experiment_tags.c.value
        ).where(experiment_tags.c.experiment_id.in_(ids[start : start + _TAG_CHUNK]))
        for found in conn.execute(query):
            tags[found.experiment_id][found.key] = found.value
    return [_experiment(row, tags[row.id]) for row in rows]


def check_experiment_name(name: Any) -> str:
    """An experiment name: non-empty text of at most :data:`MAX_EXPERIMENT_NAME_LENGTH`
    characters, without a control character; :class:`InvalidInput` otherwise.

    Example:
        >>> check_experiment_name("churn")
        'churn'
    """
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(
            f"experiment name {name!r} must be a non-empty string",
            field="experiment",
            hint="e.g. experiment='churn'",
        )
    if len(name) > MAX_EXPERIMENT_NAME_LENGTH:
        raise InvalidInput(
            f"experiment name is {len(name)} characters, over the limit of "
            f"{MAX_EXPERIMENT_NAME_LENGTH}",
            field="experiment",
        )
    # Names never become paths (artifacts live under the numeric id), so '/' and '..'
    # stay allowed as in MLflow; control characters and NUL do not (PostgreSQL refuses NUL).
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise InvalidInput(
            f"experiment name {name!r} contains a control character or NUL",
            field="experiment",
            hint="remove newlines, tabs and other control characters",
        )
    return name


def create_experiment(
    engine: Engine,
    name: str,
    *,
    artifact_location: str | None = None,
    tags: Mapping[str, str] | None = None,
    actor: str | None = None,
) -> Experiment:
    """Create an experiment; :class:`Conflict` if the name is taken (deleted ones too).

    Example:
        >>> # create_experiment(engine, "churn", tags={"team": "risk"}).id
    """
    check_experiment_name(name)
    clean_tags = {check_key(k, "tag"): check_tag_value(k, v) for k, v in (tags or {}).items()}
    now = now_ms()
    with engine.begin() as conn:
        stmt = (
            insert_for(conn, experiments)
            .values(
                name=name,
                artifact_location=artifact_location,
                lifecycle_stage="active",
                creation_time=now,
                last_update_time=now,
            )
            .on_conflict_do_nothing(index_elements=["name"])
            .returning(experiments.c.id)
        )
        new_id = conn.execute(stmt).scalar()
        if new_id is None:
            raise Conflict(
                f"an experiment named {name!r} already exists",
                hint="use get_or_create_experiment, or restore it if it was deleted",
            )
        if artifact_location is None:
            conn.execute(
                experiments.update()
                .where(experiments.c.id == new_id)
                .values(artifact_location=f"mlflow-artifacts:/{new_id}")
            )
        for key, value in clean_tags.items():
            conn.execute(
                experiment_tags.insert().values(experiment_id=new_id, key=key, value=value)
            )
        if actor:
            audit.append(
                conn,
                actor=actor,
                action="experiment.create",
                object_type="experiment",
                object_id=str(new_id),
                after={"name": name},
            )
        row = conn.execute(sa.select(experiments).where(experiments.c.id == new_id)).one()
        return experiment_from_row(conn, row)


def get_experiment(bind: Engine | Connection, experiment_id: int) -> Experiment:
    """The experiment with this id, or :class:`NotFound`; ``bind`` is an engine or a
    connection held open outside any transaction (:func:`loopline.core.db.read_on`).

    Example:
        >>> # get_experiment(engine, 0).name  -> 'Default'
    """
    with read_on(bind) as conn:
        return experiment_from_row(conn, _row_by_id(conn, experiment_id))


def _row_by_id(conn: Connection, experiment_id: int) -> Any:
    """The ``experiments`` row with this id, or :class:`NotFound`."""
    if _may_exist(experiment_id):
        row = conn.execute(_BY_ID, {"experiment_id": int(experiment_id)}).one_or_none()
        if row is not None:
            return row
    raise _no_experiment(experiment_id)


def _may_exist(experiment_id: int) -> bool:
    # An id past the column's 32-bit range names no experiment (PostgreSQL would refuse
    # to compare it).
    return 0 <= int(experiment_id) <= MAX_INTEGER


def _no_experiment(experiment_id: int) -> NotFound:
    return NotFound(
        f"experiment {experiment_id} does not exist",
        hint="list experiments with search_experiments",
    )


# On the driver: every run's creation reads its experiment, and SQLAlchemy's statement and
# row handling cost several times the lookup.
_FOR_RUN_SQL = (
    'SELECT "id", "name", "artifact_location", "lifecycle_stage", "creation_time", '
    '"last_update_time" FROM "experiments" WHERE "id" = {p}'
)


def experiment_for_run(conn: Connection, experiment_id: int) -> Experiment:
    """The experiment with this id, read in the caller's transaction, without its tags (a
    new run needs its name, stage and artifact location only), or :class:`NotFound`.

    Example:
        >>> # with engine.begin() as conn: experiment_for_run(conn, 0).name -> 'Default'
    """
    row = None
    if _may_exist(experiment_id):
        sql = _FOR_RUN_SQL.format(p=placeholder(conn))
        row = driver_fetchone(conn, sql, (int(experiment_id),))
    if row is None:
        raise _no_experiment(experiment_id)
    return Experiment(*row)


def get_experiment_by_name(bind: Engine | Connection, name: str) -> Experiment:
    """The experiment with this name, or :class:`NotFound`; ``bind`` as in
    :func:`get_experiment`.

    Example:
        >>> # get_experiment_by_name(engine, "Default").id  -> 0
    """
    with read_on(bind) as conn:
        row = conn.execute(_BY_NAME, {"name": name}).one_or_none()
        if row is None:
            raise NotFound(
                f"experiment {name!r} does not exist",
                hint="check the name with `loopline runs ls`; start_run creates it",
            )
        return experiment_from_row(conn, row)


def get_or_create_experiment(engine: Engine, name: str, *, actor: str | None = None) -> Experiment:
    """The experiment with this name, created if missing; safe when processes race.

    Example:
        >>> # get_or_create_experiment(engine, "churn").name  -> 'churn'
    """
    check_experiment_name(name)
    try:
        return get_experiment_by_name(engine, name)
    except NotFound:
        pass
    try:
        return create_experiment(engine, name, actor=actor)
    except Conflict:  # another process created it in between
        return get_experiment_by_name(engine, name)


#: How long :func:`active_experiment` trusts what it read (seconds). A change made in this
#: process is seen at once; one made by another process within this time is still caught
#: when the run is written (:func:`loopline.tracking.run_creation.write_run` checks
#: the stage).
ACTIVE_CACHE_S = 1.0
_generation = 0  # bumped by every change to an experiment made through this module
_cache_lock = threading.Lock()
_active: weakref.WeakKeyDictionary[Engine, dict[str, tuple[int, float, Experiment]]] = (
    weakref.WeakKeyDictionary()
)


def _changed() -> None:
    global _generation
    with _cache_lock:
        _generation += 1


def active_experiment(engine: Engine, name: str, *, actor: str | None = None) -> Experiment:
    """:func:`get_or_create_experiment`, remembered for :data:`ACTIVE_CACHE_S` per engine.

    Every run start looks its experiment up; this spares the query when runs start in a
    loop. Only an active experiment is remembered, and any change to an experiment made
    in this process forgets them all.

    Example:
        >>> # active_experiment(engine, "churn").id  -> 3
    """
    now = time.monotonic()
    with _cache_lock:
        generation = _generation
        known = _active.get(engine, {}).get(name)
    if known is not None and known[0] == generation and now - known[1] < ACTIVE_CACHE_S:
        return known[2]
    exp = get_or_create_experiment(engine, name, actor=actor)
    if exp.lifecycle_stage == "active":
        with _cache_lock:
            _active.setdefault(engine, {})[name] = (generation, now, exp)
    return exp


def set_experiment_lifecycle(
    engine: Engine, experiment_id: int, stage: str, *, actor: str | None = None
) -> None:
    """Soft-delete (``deleted``) or restore (``active``) an experiment, with its runs.

    As MLflow's server does, deleting an experiment deletes every run in it (searches of
    active runs no longer find them) and restoring it restores every run in it.

    Example:
        >>> # set_experiment_lifecycle(engine, 3, "deleted", actor="ada")
    """
    if stage not in ("active", "deleted"):
        raise InvalidInput(f"unknown lifecycle stage {stage!r}", field="stage")
    get_experiment(engine, experiment_id)
    _changed()  # lookups from now on do not trust what they remembered
    with engine.begin() as conn:
        conn.execute(
            experiments.update()
            .where(experiments.c.id == experiment_id)
            .values(lifecycle_stage=stage, last_update_time=now_ms())
        )
        conn.execute(
            runs.update()
            .where(runs.c.experiment_id == experiment_id)
            .values(lifecycle_stage=stage, deleted_time=now_ms() if stage == "deleted" else None)
        )
        if actor:
            audit.append(
                conn,
                actor=actor,
                action="experiment.delete" if stage == "deleted" else "experiment.restore",
                object_type="experiment",
                object_id=str(experiment_id),
            )
    _changed()  # again: a lookup between the first bump and the commit saw the old stage


def rename_experiment(
    engine: Engine, experiment_id: int, new_name: str, *, actor: str | None = None
) -> None:
    """Give an active experiment a new name (MLflow's ``experiments/update``).

    :class:`NotFound` for an unknown id, :class:`Conflict` when another experiment (a
    deleted one too) has the name, :class:`InvalidInput` for a deleted experiment or a name
    :func:`create_experiment` would refuse. Renaming to its own name changes nothing.

    Example:
        >>> # rename_experiment(engine, 3, "churn-2026", actor="ada")
    """
    check_experiment_name(new_name)
    _changed()  # lookups from now on do not trust what they remembered
    taken = Conflict(
        f"an experiment named {new_name!r} already exists",
        hint="choose another name, or rename that experiment first (a deleted experiment "
        "keeps its name)",
    )
    try:
        with engine.begin() as conn:
            row = _row_by_id(conn, experiment_id)
            if row.lifecycle_stage != "active":
                raise InvalidInput(
                    f"experiment {experiment_id} ({row.name!r}) is deleted: only an active "
                    "experiment can be renamed",
                    field="experiment_id",
                    hint="restore it first",
                )
            if row.name == new_name:
                return
            if conn.execute(_BY_NAME, {"name": new_name}).first() is not None:
                raise taken
            conn.execute(
                experiments.update()
                .where(experiments.c.id == row.id)
                .values(name=new_name, last_update_time=now_ms())
            )
            if actor:
                audit.append(
                    conn,
                    actor=actor,
                    action="experiment.rename",
                    object_type="experiment",
                    object_id=str(row.id),
                    before={"name": row.name},
                    after={"name": new_name},
                )
    except sa.exc.IntegrityError as exc:  # PostgreSQL: created meanwhile by another writer
        raise taken from exc
    finally:
        _changed()  # again: a lookup between the first bump and the commit saw the old name


def set_experiment_tag(engine: Engine, experiment_id: int, key: str, value: str) -> None:
    """Set (or overwrite) a tag on an experiment.

    Example:
        >>> # set_experiment_tag(engine, 3, "team", "risk")
    """
    check_key(key, "tag")
    text = check_tag_value(key, value)
    get_experiment(engine, experiment_id)
    _changed()  # lookups from now on do not trust what they remembered
    with engine.begin() as conn:
        stmt = insert_for(conn, experiment_tags).values(
            experiment_id=experiment_id, key=key, value=text
        )
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["experiment_id", "key"], set_={"value": stmt.excluded.value}
            )
        )


def delete_experiment_tag(engine: Engine, experiment_id: int, key: str) -> None:
    """Delete a tag from an experiment; :class:`NotFound` when it has no such tag (as
    MLflow's ``DeleteExperimentTag``). The key is checked as :func:`set_experiment_tag`
    checks it: a key it refuses names no tag.

    Example:
        >>> # delete_experiment_tag(engine, 3, "team")
    """
    check_key(key, "tag")
    found = get_experiment(engine, experiment_id)
    _changed()  # lookups from now on do not trust what they remembered
    with engine.begin() as conn:
        gone = conn.execute(
            experiment_tags.delete().where(
                experiment_tags.c.experiment_id == experiment_id, experiment_tags.c.key == key
            )
        )
    if gone.rowcount == 0:
        raise NotFound(
            f"experiment {found.name!r} (id {experiment_id}) has no tag {key!r}",
            hint="see its tags: MlflowClient().get_experiment(id).tags",
        )
