"""What the MLflow client's frequent tracking calls do, given their already-parsed fields.

Both ways into the server call these: the FastAPI routes (:mod:`.mlflow_runs`,
:mod:`.mlflow_experiments`, after pydantic has validated the request) and the fast path
(:mod:`.fast_routes`, after its strict parser has accepted it). Each writes through
:mod:`loopline.tracking`'s store in one transaction, which commits before the answer is
returned, and returns the JSON answer.
Those that take ``bind`` run on it, a connection of the context's database held open by
the caller (the fast path's work on the event loop's thread), instead of ``ctx.engine``.

Where MLflow's server answers otherwise than Loopline's own API, these answer as MLflow's
does: a param logged again with another value, and a key given twice in one batch, are
``INVALID_PARAMETER_VALUE`` (the SDK and ``/api/v1`` keep Loopline's 409 ``CONFLICT`` for
the first and take the same value twice).

Example:
    >>> # get_run(ctx, run_id)["run"]["info"]["status"] -> 'RUNNING'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import Connection, Engine

from loopline.core.context import Context
from loopline.errors import Conflict, InvalidInput
from loopline.server.mlflow_wire import (
    PARENT_TAG,
    RUN_NAME_TAG,
    experiment_id,
    experiment_json,
    run_info_json,
    run_json,
)
from loopline.tracking import experiments as exp_store
from loopline.tracking import run_creation, run_data, run_state
from loopline.tracking.entities import Metric

#: MLflow's answer to a write that returns nothing.
EMPTY: dict[str, Any] = {}


def _on(ctx: Context, bind: Connection | None) -> Engine | Connection:
    """Where an operation runs: ``bind`` when the caller holds a connection, else ``ctx``'s
    engine."""
    return ctx.engine if bind is None else bind


def create_run(
    ctx: Context,
    *,
    experiment: str | None,
    user_id: str | None,
    start_time: int | None,
    tags: dict[str, str],
    run_name: str | None,
    bind: Connection | None = None,
) -> dict[str, Any]:
    """``runs/create``: a RUNNING run; the parent and the name may come as MLflow's tags.
    One transaction (with its audit event), on ``ctx``'s engine or on ``bind``.

    Example:
        >>> # create_run(ctx, experiment="1", user_id=None, start_time=None, tags={},
        >>> #            run_name="trial")["run"]["info"]["run_name"] -> 'trial'
    """
    name = run_name or tags.get(RUN_NAME_TAG) or None
    if name is not None and RUN_NAME_TAG not in tags:
        # MLflow's server stores the name as this tag too: filters on it find the run.
        tags = {**tags, RUN_NAME_TAG: name}
    record = run_creation.create_run(
        _on(ctx, bind),
        experiment_id(experiment or "0"),
        name=name,
        start_time=start_time,
        tags=tags,
        parent_run_id=tags.get(PARENT_TAG) or None,
        user_id=user_id,
        actor=ctx.settings.actor_name,
    )
    return {"run": run_json(record)}


def require_run_id(run_id: str | None) -> str:
    """``run_id`` as sent, or :class:`InvalidInput` naming it when it is missing or empty.

    Example:
        >>> require_run_id("3f2a")
        '3f2a'
    """
    if not run_id:
        raise InvalidInput("run_id is required", field="run_id")
    return run_id


def update_run(
    ctx: Context,
    *,
    run_id: str | None,
    status: str | None,
    end_time: int | None,
    run_name: str | None,
    bind: Connection | None = None,
) -> dict[str, Any]:
    """``runs/update``: status, end time or name; answers the run's new ``run_info``.

    On ``ctx``'s engine or on ``bind``; one transaction without a name (MLflow's
    ``end_run``), two with one (the name, then its tag), which ``bind`` cannot take.

    Example:
        >>> # update_run(ctx, run_id=rid, status="FINISHED", end_time=None, run_name=None)
    """
    if run_name and bind is not None:
        raise TypeError("a rename is two transactions: it runs on ctx's engine only")
    record = run_state.update_run(
        _on(ctx, bind),
        require_run_id(run_id),
        status=status,
        end_time=end_time,
        name=run_name or None,
        actor=ctx.settings.actor_name,
    )
    if run_name:  # the tag follows the name, as in MLflow's server
        run_data.set_tag(ctx.engine, record.id, RUN_NAME_TAG, run_name)
    return {"run_info": run_info_json(record)}


def get_run(ctx: Context, run_id: str | None, bind: Connection | None = None) -> dict[str, Any]:
    """``runs/get``: the whole run (latest metrics, params, tags, inputs), read on ``ctx``'s
    engine or on ``bind``.

    Example:
        >>> # get_run(ctx, rid)["run"]["data"]["params"] -> [{'key': 'lr', 'value': '0.1'}]
    """
    return {"run": run_json(run_state.get_run(_on(ctx, bind), require_run_id(run_id)))}


def log_batch(
    ctx: Context,
    run_id: str,
    *,
    metrics: Sequence[Metric] = (),
    params: Sequence[tuple[str, str]] = (),
    tags: Sequence[tuple[str, str]] = (),
    bind: Connection | None = None,
) -> dict[str, Any]:
    """``runs/log-batch``, ``runs/log-metric`` and ``runs/log-parameter``: one transaction,
    on ``ctx``'s engine or on ``bind``, a connection of the same database held open by the
    caller (the fast path's writes on the event loop's thread).

    Example:
        >>> # log_batch(ctx, rid, metrics=[Metric("loss", 0.3, now_ms(), 1)]) -> {}
    """
    if len(params) > 1:
        _refuse_duplicate_params(params)
    try:
        run_data.log_batch(_on(ctx, bind), run_id, metrics=metrics, params=params, tags=tags)
    except Conflict as exc:
        # Only a param can conflict here: MLflow's client raises INVALID_PARAMETER_VALUE
        # for it ("Changing param values is not allowed"), and so must this server.
        raise InvalidInput(exc.message, field="params", hint=exc.hint) from exc
    return EMPTY


def _refuse_duplicate_params(params: Sequence[tuple[str, str]]) -> None:
    """MLflow's answer to a batch naming a param key twice, even with the same value."""
    keys = [key for key, _ in params]
    if len(set(keys)) == len(keys):
        return
    seen: set[str] = set()
    dupes = []  # as MLflow lists them: each repeat of a key once more
    for key in keys:
        if key in seen:
            dupes.append(key)
        seen.add(key)
    raise InvalidInput(
        f"Duplicate parameter keys have been submitted: {dupes}. Please ensure the request "
        "contains only one param value per param key.",
        field="params",
        hint="send each param once per batch",
    )


def set_tag(ctx: Context, run_id: str, key: str, value: str) -> dict[str, Any]:
    """``runs/set-tag``; MLflow renames a run by setting its ``mlflow.runName`` tag.

    Example:
        >>> # set_tag(ctx, rid, "mlflow.runName", "better-name") -> {}
    """
    if key == RUN_NAME_TAG:
        run_state.update_run(ctx.engine, run_id, name=value)
    run_data.set_tag(ctx.engine, run_id, key, value)
    return EMPTY


def get_experiment(ctx: Context, raw_id: str, bind: Connection | None = None) -> dict[str, Any]:
    """``experiments/get``, read on ``ctx``'s engine or on ``bind``.

    Example:
        >>> # get_experiment(ctx, "0")["experiment"]["name"] -> 'Default'
    """
    found = exp_store.get_experiment(_on(ctx, bind), experiment_id(raw_id))
    return {"experiment": experiment_json(found)}


def get_experiment_by_name(
    ctx: Context, name: str, bind: Connection | None = None
) -> dict[str, Any]:
    """``experiments/get-by-name``, read on ``ctx``'s engine or on ``bind``; MLflow's
    ``set_experiment`` asks it first.

    Example:
        >>> # get_experiment_by_name(ctx, "Default")["experiment"]["experiment_id"] -> '0'
    """
    found = exp_store.get_experiment_by_name(_on(ctx, bind), name)
    return {"experiment": experiment_json(found)}
