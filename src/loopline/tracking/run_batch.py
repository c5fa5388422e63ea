"""Bulk writes of child runs in the caller's transaction (a pipeline's step runs).

:func:`loopline.tracking.api.start_run` costs one transaction per call, plus a ``git``
process for the code version; a pipeline of many short steps would spend most of its time
there. This module writes many child runs of one parent at once, in a transaction the
caller owns (so a step's run commits together with the step's record and cache entry):

* :func:`parent_of` reads, once, what every child inherits from the parent run: its
  experiment, the environment tags :func:`~loopline.tracking.api.start_run` recorded
  (git commit and diff hash, command, Python, host, user, the environment digest) and
  the environment document artifact. Children of one process share its code and packages,
  so nothing is recomputed per child;
* :func:`write_runs` inserts new child runs (RUNNING, or already ended) with their tags,
  params and inherited artifacts, and ends runs inserted earlier; the audit events
  (``run.create``, ``run.update``) are the ones the per-call path writes, chained with one
  head update (:func:`loopline.core.audit.append_many`).

The rows are the same as the per-call path's, so search, the UI and the MLflow API see no
difference. Only the embedded backend writes this way.

Example:
    >>> import loopline as ll, tempfile
    >>> ctx = ll.init(uri="sqlite:///:memory:", artifacts=tempfile.mkdtemp())
    >>> with ll.start_run(experiment="demo") as parent:
    ...     p = parent_of(parent)
    ...     child = ChildRun(new_run_id(), "step-1", now_ms(), tags={"k": "v"},
    ...                      status="FINISHED", end_time=now_ms())
    ...     with ctx.engine.begin() as conn:
    ...         write_runs(conn, p, created=[child], actor="ada")
    >>> ll.get_run(child.id).parent_run_id == parent.id
    True
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection

from loopline.core import audit
from loopline.core.bulk import insert_rows
from loopline.tracking import run_json
from loopline.tracking._dialect import cached_statement
from loopline.tracking.entities import ArtifactEntry, now_ms
from loopline.tracking.environment import ENVIRONMENT_ARTIFACT
from loopline.tracking.run_creation import PARENT_RUN_TAG, artifact_rows
from loopline.tracking.run_data import upsert_tag_statement
from loopline.tracking.run_state import END_RUN, check_run_status
from loopline.tracking.tables import params as params_table
from loopline.tracking.tables import run_artifacts, runs
from loopline.tracking.tables import tags as tags_table
from loopline.tracking.validation import (
    check_key,
    check_param_value,
    check_run_name,
    check_tag_value,
)

if TYPE_CHECKING:
    from loopline.tracking.run_handle import Run

#: Tags a child inherits from its parent: those ``start_run`` records about the code and
#: the environment (see :mod:`loopline.tracking.environment`), the same for the whole process.
INHERITED_TAG_PREFIXES = ("mlflow.source.", "loopline.git.")
INHERITED_TAGS = (
    "loopline.command",
    "loopline.python",
    "loopline.host",
    "loopline.pid",
    "mlflow.user",
    "loopline.environment",
)
#: Artifacts a child inherits (index rows pointing at the parent's blobs).
INHERITED_ARTIFACTS = (ENVIRONMENT_ARTIFACT,)


@dataclass(frozen=True)
class Parent:
    """What the children of one run inherit from it (see :func:`parent_of`)."""

    run_id: str
    experiment_id: int
    experiment: str
    artifact_root: str
    user_id: str | None
    tags: dict[str, str | None]
    artifacts: tuple[ArtifactEntry, ...]


@dataclass
class ChildRun:
    """A child run to insert: RUNNING (``end_time`` None) or already ended.

    Example:
        >>> ChildRun(new_run_id(), "fit", now_ms()).status
        'RUNNING'
    """

    id: str
    name: str
    start_time: int
    tags: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    status: str = "RUNNING"
    end_time: int | None = None


@dataclass(frozen=True)
class RunEnd:
    """The end of a child run inserted earlier as RUNNING: status, time, tags to set.

    Example:
        >>> RunEnd("ab" * 16, "FINISHED", now_ms(), {"loopline.step.status": "finished"}).status
        'FINISHED'
    """

    id: str
    status: str
    end_time: int
    tags: dict[str, Any] = field(default_factory=dict)


def new_run_id() -> str:
    """A fresh run id (32 hex characters), as the store makes them.

    Example:
        >>> len(new_run_id())
        32
    """
    return uuid.uuid4().hex


def _inherited(key: str) -> bool:
    return key in INHERITED_TAGS or key.startswith(INHERITED_TAG_PREFIXES)


def parent_of(run: Run) -> Parent:
    """What children of ``run`` inherit, read once through the SDK (which writes ``run``
    first if it is still waiting to be written).

    Example:
        >>> # parent_of(pipeline_run).tags["mlflow.source.git.commit"]
    """
    suffix = f"/{run.id}/artifacts"
    uri = run.artifact_uri or ""
    root = uri[: -len(suffix)] if uri.endswith(suffix) else f"mlflow-artifacts:/{run.experiment_id}"
    return Parent(
        run_id=run.id,
        experiment_id=run.experiment_id,
        experiment=run.experiment,
        artifact_root=root,
        user_id=run.user,
        tags={k: v for k, v in run.tags.items() if _inherited(k)},
        artifacts=tuple(a for a in run.artifacts if a.path in INHERITED_ARTIFACTS),
    )


# Keys already checked: a pipeline's step runs use the same few keys again and again, and
# checking a key costs more than writing it.
_GOOD_KEYS: set[tuple[str, str]] = set()


def _key(key: str, what: str) -> str:
    if (what, key) not in _GOOD_KEYS:
        check_key(key, what)
        if len(_GOOD_KEYS) < 10_000:
            _GOOD_KEYS.add((what, key))
    return key


def _clean_tags(tags: Mapping[str, Any]) -> dict[str, str | None]:
    return {_key(k, "tag"): check_tag_value(k, v) for k, v in tags.items()}


def write_runs(
    conn: Connection,
    parent: Parent,
    *,
    created: Sequence[ChildRun] = (),
    ended: Sequence[RunEnd] = (),
    actor: str | None = None,
) -> None:
    """Insert ``created`` children of ``parent`` and end the ``ended`` ones, in ``conn``'s
    transaction; with ``actor``, audit them as the per-call path does.

    Everything is validated before anything is written (InvalidInput names the field).
    A created child gets the parent's inherited tags and artifacts, ``mlflow.parentRunId``
    and its own tags and params; one created already ended is audited as created, then
    updated. An ended run must have been created RUNNING by an earlier call.

    Example:
        >>> # with engine.begin() as conn:
        >>> #     write_runs(conn, parent, created=[ChildRun(...)], ended=[RunEnd(...)])
    """
    run_rows: list[dict[str, Any]] = []
    tag_rows: list[dict[str, Any]] = []
    param_rows: list[dict[str, Any]] = []
    artifacts: list[dict[str, Any]] = []
    events: list[audit.NewEvent] = []
    now = now_ms()
    for child in created:
        check_run_name(child.name)
        check_run_status(child.status)
        tags = {**parent.tags, **_clean_tags(child.tags), PARENT_RUN_TAG: parent.run_id}
        run_rows.append(
            {
                "id": child.id,
                "experiment_id": parent.experiment_id,
                "name": child.name,
                "status": child.status,
                "start_time": child.start_time,
                "end_time": child.end_time,
                "parent_run_id": parent.run_id,
                "lifecycle_stage": "active",
                "user_id": parent.user_id,
                "artifact_uri": f"{parent.artifact_root}/{child.id}/artifacts",
            }
        )
        child_params = {_key(k, "param"): check_param_value(k, v) for k, v in child.params.items()}
        run_rows[-1]["params_json"] = run_json.object_json(child_params)
        run_rows[-1]["tags_json"] = run_json.object_json(tags)
        tag_rows.extend({"run_id": child.id, "key": k, "value": v} for k, v in tags.items())
        param_rows.extend(
            {"run_id": child.id, "key": k, "value": v} for k, v in child_params.items()
        )
        artifacts.extend(artifact_rows(child.id, parent.artifacts, now))
        if actor:
            events.append(
                audit.NewEvent(
                    actor,
                    "run.create",
                    "run",
                    child.id,
                    after={"experiment": parent.experiment, "parent_run_id": parent.run_id},
                )
            )
            if child.status != "RUNNING":
                events.append(_update_event(actor, child.id, child.status))
    end_rows: list[dict[str, Any]] = []
    end_tags: list[dict[str, Any]] = []
    for end in ended:
        end_rows.append(
            {"run": end.id, "new_status": check_run_status(end.status), "new_end": end.end_time}
        )
        end_tags.extend(
            {"run_id": end.id, "key": k, "value": v} for k, v in _clean_tags(end.tags).items()
        )
        if actor and end.status != "RUNNING":
            events.append(_update_event(actor, end.id, end.status))
    insert_rows(conn, runs, run_rows)
    insert_rows(conn, tags_table, tag_rows)
    insert_rows(conn, params_table, param_rows)
    insert_rows(conn, run_artifacts, artifacts)
    tagged = {row["run_id"] for row in end_tags}
    run_json.lock_runs(conn, tagged)
    if end_rows:
        conn.execute(END_RUN, end_rows)
    if end_tags:
        conn.execute(cached_statement(conn, "tags.upsert", upsert_tag_statement), end_tags)
        run_json.refresh(conn, tagged, tags=True)
    audit.append_many(conn, events)


def _update_event(actor: str, run_id: str, status: str) -> audit.NewEvent:
    return audit.NewEvent(
        actor, "run.update", "run", run_id, before={"status": "RUNNING"}, after={"status": status}
    )
