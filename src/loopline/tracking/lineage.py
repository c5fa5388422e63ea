"""Run lineage in the embedded tracking store: the datasets a run read, the models it
logged, and its artifacts.

An artifact is a path inside a run pointing to a content-addressed blob of the artifact
store (its BLAKE3 digest); logging the same path again points it at the new blob. A
dataset input is (kind, name, version, digest); the same version cannot change digest.
Each of the four is non-empty text of at most :data:`INPUT_LIMITS` characters (their
columns' widths; the optional context at most 100), without NUL or another control
character (a name and a context may hold tab and newline).

A run's output is a logged model's id and the run's step (MLflow 3's run outputs); the
id is the registry's (:mod:`loopline.training`), which checks it names a model.

Example:
    >>> # log_inputs(engine, run_id, [RunInput("dataset", "churn", "3", "ab12...")])
    >>> # log_outputs(engine, run_id, [RunOutput("m-0123", step=0)])
    >>> # add_artifacts(engine, run_id, [ArtifactEntry("model.pkl", digest, 1024)])
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from loopline.core.db import reading
from loopline.core.text import check_no_control, check_no_nul
from loopline.errors import Conflict, InvalidInput
from loopline.tracking import run_json
from loopline.tracking._dialect import insert_for
from loopline.tracking.entities import ArtifactEntry, RunInput, RunOutput, now_ms
from loopline.tracking.run_state import require_active, require_run
from loopline.tracking.tables import run_artifacts, run_inputs, run_outputs
from loopline.tracking.validation import check_artifact_path, check_int

#: The longest kind, name, version and digest of a dataset input (its columns' widths).
INPUT_LIMITS = {"kind": 50, "name": 500, "version": 200, "digest": 128}
#: The longest context of a dataset input (``training``, ``evaluation``).
MAX_INPUT_CONTEXT_LENGTH = 100
#: The fields that may hold tab and newline (free text, as MLflow's dataset name is).
_MULTILINE = frozenset({"name", "context"})


def check_input(item: RunInput) -> RunInput:
    """``item`` if it may be stored as a run's dataset input, else :class:`InvalidInput`
    naming the field: kind, name, version and digest are non-empty text within
    :data:`INPUT_LIMITS`, the context (optional) within :data:`MAX_INPUT_CONTEXT_LENGTH`,
    and none holds NUL or a control character but a name's or context's tab and newline.

    Example:
        >>> check_input(RunInput("dataset", "churn", "3", "ab12")).name
        'churn'
    """
    for field_name, limit in (*INPUT_LIMITS.items(), ("context", MAX_INPUT_CONTEXT_LENGTH)):
        value = getattr(item, field_name)
        if value is None and field_name == "context":
            continue
        if not isinstance(value, str) or not value:
            raise InvalidInput(
                f"input {field_name} must be a non-empty string, got {value!r}",
                field=field_name,
            )
        if len(value) > limit:
            raise InvalidInput(
                f"input {field_name} is {len(value)} characters, over the limit of {limit}",
                field=field_name,
                hint=f"give a {field_name} of at most {limit} characters",
            )
        check_no_nul(value, field_name)
        check_no_control(value, field_name, lines=field_name in _MULTILINE)
    return item


def log_inputs(engine: Engine, run_id: str, inputs: Sequence[RunInput]) -> None:
    """Record datasets a run read (each checked by :func:`check_input`, all before any is
    written); logging the same one again is a no-op.

    The same (kind, name, version) with another digest is :class:`Conflict`: a version's
    content does not change.

    Example:
        >>> # log_inputs(engine, run_id, [RunInput("dataset", "churn", "3", "ab12...")])
    """
    for item in inputs:
        check_input(item)
    now = now_ms()
    with engine.begin() as conn:
        require_active(conn, run_id)
        for item in inputs:
            row = {
                "run_id": run_id,
                "kind": item.kind,
                "name": item.name,
                "version": item.version,
                "digest": item.digest,
                "context": item.context,
                "logged_time": now,
                "details": item.details_json,
            }
            conn.execute(
                insert_for(conn, run_inputs)
                .values(**row)
                .on_conflict_do_nothing(index_elements=["run_id", "kind", "name", "version"])
            )
            stored = conn.execute(
                sa.select(run_inputs.c.digest).where(
                    run_inputs.c.run_id == run_id,
                    run_inputs.c.kind == item.kind,
                    run_inputs.c.name == item.name,
                    run_inputs.c.version == item.version,
                )
            ).scalar_one()
            if stored != item.digest:
                raise Conflict(
                    f"run {run_id} already read {item.kind} {item.name!r} version "
                    f"{item.version!r} with digest {stored}, not {item.digest}",
                    hint="a version's content cannot change; register a new version",
                )


#: The width of ``run_outputs.model_id`` (a logged model's id).
MAX_MODEL_ID_LENGTH = 64


def log_outputs(engine: Engine, run_id: str, outputs: Sequence[RunOutput]) -> None:
    """Record models a run logged; the same (model, step) again is a no-op.

    The run must exist and not be deleted; each model id is checked to fit its column (the
    caller checks it names a logged model), each step to be a 64-bit integer.

    Example:
        >>> # log_outputs(engine, run_id, [RunOutput("m-0123", step=0)])
    """
    rows = []
    now = now_ms()
    for n, item in enumerate(outputs):
        what = f"models[{n}].model_id"
        if not isinstance(item.model_id, str) or not item.model_id:
            raise InvalidInput(f"{what} must be a non-empty string", field=what)
        check_no_nul(item.model_id, what)
        if len(item.model_id) > MAX_MODEL_ID_LENGTH:
            raise InvalidInput(
                f"{what} is {len(item.model_id)} characters, over the limit of "
                f"{MAX_MODEL_ID_LENGTH}",
                field=what,
                hint="send the id of a logged model (m-...)",
            )
        step = check_int(item.step, f"models[{n}].step")
        rows.append({"run_id": run_id, "model_id": item.model_id, "step": step, "logged_time": now})
    with engine.begin() as conn:
        # The lock makes the rebuild of the run's copy see every committed output.
        require_active(conn, run_id, lock=True)
        if rows:
            conn.execute(
                insert_for(conn, run_outputs).on_conflict_do_nothing(
                    index_elements=["run_id", "model_id", "step"]
                ),
                rows,
            )
            run_json.refresh_outputs(conn, run_id)


def add_artifacts(engine: Engine, run_id: str, entries: Sequence[ArtifactEntry]) -> None:
    """Map artifact paths of a run to stored blobs; a path logged again points to the new blob.

    Example:
        >>> # add_artifacts(engine, run_id, [ArtifactEntry("model.pkl", digest, 1024)])
    """
    if not entries:
        return
    now = now_ms()
    rows = [
        {
            "run_id": run_id,
            "path": check_artifact_path(e.path),
            "digest": e.digest,
            "size": e.size,
            "logged_time": now,
        }
        for e in entries
    ]
    with engine.begin() as conn:
        require_active(conn, run_id)
        stmt = insert_for(conn, run_artifacts)
        stmt = stmt.on_conflict_do_update(
            index_elements=["run_id", "path"],
            set_={
                "digest": stmt.excluded.digest,
                "size": stmt.excluded.size,
                "logged_time": stmt.excluded.logged_time,
            },
        )
        conn.execute(stmt, rows)


def _under(prefix: str) -> sa.ColumnElement[bool]:
    """Paths equal to ``prefix`` or inside it as a folder."""
    base = prefix.rstrip("/")
    return sa.or_(
        run_artifacts.c.path == base,
        sa.func.substr(run_artifacts.c.path, 1, len(base) + 1) == base + "/",
    )


def delete_artifacts(engine: Engine, run_id: str, prefix: str | None) -> int:
    """Forget a run's artifact at ``prefix``, or every one under it (all for None); how
    many were forgotten.

    The bytes stay in the content-addressed store (other runs or versions may share them).

    Example:
        >>> # delete_artifacts(engine, run_id, "plots")  -> 2
    """
    where = run_artifacts.c.run_id == run_id
    if prefix is not None:
        where = sa.and_(where, _under(check_artifact_path(prefix)))
    with engine.begin() as conn:
        require_active(conn, run_id)
        result = conn.execute(run_artifacts.delete().where(where))
    return int(result.rowcount or 0)


def list_artifacts(engine: Engine, run_id: str, prefix: str | None = None) -> list[ArtifactEntry]:
    """The artifacts of a run (optionally only those under ``prefix/``), by path.

    Example:
        >>> # [a.path for a in list_artifacts(engine, run_id)]  -> ['model.pkl', ...]
    """
    require_run(engine, run_id)
    query = sa.select(run_artifacts).where(run_artifacts.c.run_id == run_id)
    if prefix:
        query = query.where(_under(prefix))
    with reading(engine) as conn:
        return [
            ArtifactEntry(r.path, r.digest, r.size)
            for r in conn.execute(query.order_by(run_artifacts.c.path))
        ]
