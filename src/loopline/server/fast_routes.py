"""The MLflow routes the fast path (:mod:`.fast_path`) answers: a strict parser for each.

A parser takes the request body and query string and returns the operation to run
(:mod:`.mlflow_ops`, the same one the FastAPI route calls), or None for anything it does
not expect: a body that is not a JSON object, an unknown or repeated field, a value of
another type than the wire's own (a number as a string, ``"NaN"``, a bool for an int). Such
a request goes on, unchanged, to the FastAPI route, whose validation answers it as always.
What a parser accepts, pydantic accepts too and reads the same way, so both paths accept
and refuse the same requests with the same answers.

Example:
    >>> parse = ROUTES[("GET", "/api/2.0/mlflow/runs/get")]
    >>> parse(b"", b"run_id=abc") is not None, parse(b"", b"run_id=a&run_id=b")
    (True, None)
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any
from urllib.parse import parse_qsl

import orjson
from sqlalchemy.engine import Connection

from loopline.core.context import Context
from loopline.server import mlflow_ops as ops
from loopline.server.mlflow_wire import RUN_NAME_TAG
from loopline.tracking.entities import Metric, now_ms

#: An MLflow call, ready to run on the server's context; returns the JSON answer.
Operation = Callable[[Context], dict[str, Any]]
#: ``(body, query string) -> operation``, or None to leave the request to FastAPI.
Parser = Callable[[bytes, bytes], Operation | None]

# A point with MLflow 3's model_id (and dataset_name, dataset_digest) links to a logged
# model: outside this set, it takes the FastAPI route, which stores the link. Plain points,
# the common case, cost nothing more here.
_METRIC = frozenset({"key", "value", "timestamp", "step"})
_KEY_VALUE = frozenset({"key", "value"})


def _object(body: bytes, fields: frozenset[str]) -> dict[str, Any] | None:
    """The body as a JSON object with no field outside ``fields``, else None."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if type(data) is not dict or not data.keys() <= fields:
        return None
    return data


def _query(query: bytes, fields: frozenset[str]) -> dict[str, str] | None:
    """The query string's fields, each given once and all in ``fields``, else None."""
    # Decoded as Starlette decodes it, so that both paths see the same values.
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    found = dict(pairs)
    if len(found) != len(pairs) or not found.keys() <= fields:
        return None
    return found


def _opt_str(value: Any) -> bool:
    return value is None or type(value) is str


def _opt_int(value: Any) -> bool:
    return value is None or type(value) is int


def _metric(item: Any, now: int) -> Metric | None:
    """A metric as sent by MLflow's client (a JSON number, int timestamp and step)."""
    if type(item) is not dict or not item.keys() <= _METRIC:
        return None
    key, value = item.get("key"), item.get("value")
    timestamp, step = item.get("timestamp"), item.get("step")
    if type(key) is not str or not (type(value) is float or type(value) is int):
        return None  # "NaN", "Infinity" and anything odd take the FastAPI route
    if not (_opt_int(timestamp) and _opt_int(step)):
        return None
    # 0 is a time like any other (1970): only a missing timestamp means "now".
    return Metric(key, float(value), now if timestamp is None else timestamp, step or 0)


def _pairs(items: Any) -> list[tuple[str, str]] | None:
    """MLflow's ``[{"key", "value"}]`` list (a missing or null value as "")."""
    if items is None:
        return []
    if type(items) is not list:
        return None
    out: list[tuple[str, str]] = []
    for item in items:
        if type(item) is not dict or not item.keys() <= _KEY_VALUE:
            return None
        key, value = item.get("key"), item.get("value")
        if type(key) is not str or not _opt_str(value):
            return None
        out.append((key, value or ""))
    return out


def _run_id(data: dict[str, Any]) -> str | None:
    """``run_id``, else the older ``run_uuid``, as the routes read them ("" when neither)."""
    run_id, run_uuid = data.get("run_id"), data.get("run_uuid")
    if not (_opt_str(run_id) and _opt_str(run_uuid)):
        return None
    return str(run_id or run_uuid or "")


_LOG_METRIC = frozenset({"run_id", "run_uuid", *_METRIC})


def log_metric(body: bytes, query: bytes) -> Operation | None:
    """``POST runs/log-metric``: one point (the MLflow client's most frequent request).

    Example:
        >>> log_metric(b'{"run_id": "r1", "key": "loss", "value": 0.5}', b"") is not None
        True
    """
    data = _object(body, _LOG_METRIC)
    if data is None:
        return None
    run_id = _run_id(data)
    metric = _metric({k: v for k, v in data.items() if k in _METRIC}, now_ms())
    if not run_id or metric is None:
        return None  # no run id: the route names the missing field
    return partial(ops.log_batch, run_id=run_id, metrics=[metric])


_LOG_BATCH = frozenset({"run_id", "metrics", "params", "tags"})


def log_batch(body: bytes, query: bytes) -> Operation | None:
    """``POST runs/log-batch``: metrics, params and tags in one transaction.

    Example:
        >>> body = b'{"run_id": "r1", "params": [{"key": "lr", "value": "0.1"}]}'
        >>> log_batch(body, b"") is not None
        True
    """
    data = _object(body, _LOG_BATCH)
    if data is None or type(data.get("run_id")) is not str:
        return None
    raw_metrics = data.get("metrics")
    if raw_metrics is not None and type(raw_metrics) is not list:
        return None
    now = now_ms()
    metrics: list[Metric] = []
    for item in raw_metrics or ():
        metric = _metric(item, now)
        if metric is None:
            return None
        metrics.append(metric)
    params, tags = _pairs(data.get("params")), _pairs(data.get("tags"))
    if params is None or tags is None:
        return None
    return partial(
        ops.log_batch,
        run_id=data["run_id"],
        metrics=metrics,
        params=params,
        tags=tags,
    )


_KEYED = frozenset({"run_id", "run_uuid", "key", "value"})


def _keyed(body: bytes) -> tuple[str, str, str] | None:
    """``(run_id, key, value)`` of a log-parameter or set-tag body."""
    data = _object(body, _KEYED)
    if data is None:
        return None
    run_id, key, value = _run_id(data), data.get("key"), data.get("value")
    if run_id is None or type(key) is not str or type(value) is not str:
        return None
    return run_id, key, value


def log_parameter(body: bytes, query: bytes) -> Operation | None:
    """``POST runs/log-parameter``.

    Example:
        >>> log_parameter(b'{"run_id": "r1", "key": "lr", "value": 1}', b"") is None
        True
    """
    found = _keyed(body)
    if found is None:
        return None
    run_id, key, value = found
    return partial(ops.log_batch, run_id=run_id, params=[(key, value)])


def set_tag(body: bytes, query: bytes) -> Operation | None:
    """``POST runs/set-tag``.

    Example:
        >>> set_tag(b'{"run_id": "r1", "key": "team", "value": "risk"}', b"") is not None
        True
    """
    found = _keyed(body)
    if found is None:
        return None
    run_id, key, value = found
    if key != RUN_NAME_TAG:  # one transaction, as ops.set_tag writes it (store.set_tag)
        return partial(ops.log_batch, run_id=run_id, tags=[(key, value)])
    return partial(ops.set_tag, run_id=run_id, key=key, value=value)


_CREATE_RUN = frozenset({"experiment_id", "user_id", "start_time", "tags", "run_name"})


def create_run(body: bytes, query: bytes) -> Operation | None:
    """``POST runs/create``.

    Example:
        >>> create_run(b'{"experiment_id": 1}', b"") is None  # an id is a string on the wire
        True
    """
    data = _object(body, _CREATE_RUN)
    if data is None:
        return None
    experiment, user_id = data.get("experiment_id"), data.get("user_id")
    run_name, start_time = data.get("run_name"), data.get("start_time")
    tags = _pairs(data.get("tags"))
    if tags is None or not (_opt_str(experiment) and _opt_str(user_id) and _opt_str(run_name)):
        return None
    if not _opt_int(start_time):
        return None
    return partial(
        ops.create_run,
        experiment=experiment,
        user_id=user_id,
        start_time=start_time,
        tags=dict(tags),
        run_name=run_name,
    )


_UPDATE_RUN = frozenset({"run_id", "run_uuid", "status", "end_time", "run_name"})


def update_run(body: bytes, query: bytes) -> Operation | None:
    """``POST runs/update``: MLflow's ``end_run`` and ``set_terminated``.

    Example:
        >>> update_run(b'{"run_id": "r1", "status": "FINISHED"}', b"") is not None
        True
    """
    data = _object(body, _UPDATE_RUN)
    if data is None:
        return None
    run_id = _run_id(data)
    status, end_time, run_name = data.get("status"), data.get("end_time"), data.get("run_name")
    if run_id is None or not (_opt_str(status) and _opt_str(run_name) and _opt_int(end_time)):
        return None
    return partial(
        ops.update_run,
        run_id=run_id,
        status=status,
        end_time=end_time,
        run_name=run_name,
    )


_GET_RUN = frozenset({"run_id", "run_uuid"})


def get_run(body: bytes, query: bytes) -> Operation | None:
    """``GET runs/get?run_id=...``.

    Example:
        >>> get_run(b"", b"run_id=r1&run_uuid=r1") is not None
        True
    """
    found = _query(query, _GET_RUN)
    if found is None:
        return None
    return partial(ops.get_run, run_id=found.get("run_id") or found.get("run_uuid"))


_BY_NAME = frozenset({"experiment_name"})


def get_experiment_by_name(body: bytes, query: bytes) -> Operation | None:
    """``GET experiments/get-by-name?experiment_name=...``.

    Example:
        >>> get_experiment_by_name(b"", b"") is None  # the route names the missing field
        True
    """
    found = _query(query, _BY_NAME)
    if found is None or "experiment_name" not in found:
        return None
    return partial(ops.get_experiment_by_name, name=found["experiment_name"])


_GET_EXPERIMENT = frozenset({"experiment_id"})


def get_experiment(body: bytes, query: bytes) -> Operation | None:
    """``GET experiments/get?experiment_id=...``.

    Example:
        >>> get_experiment(b"", b"experiment_id=0") is not None
        True
    """
    found = _query(query, _GET_EXPERIMENT)
    if found is None or "experiment_id" not in found:
        return None
    return partial(ops.get_experiment, raw_id=found["experiment_id"])


# The operations that write in one transaction (its audit event in it) and do nothing
# after it; ops.update_run only without a new name (then the name's tag is a second one).
_SINGLE_WRITES = frozenset({ops.log_batch, ops.create_run, ops.update_run})
# The reads of one transaction that take a connection to read on.
_CHEAP_READS = frozenset({ops.get_run, ops.get_experiment, ops.get_experiment_by_name})


def single_write(operation: Operation) -> bool:
    """True for an operation that writes in one transaction and does nothing after it:
    if it fails, nothing is written, so it can run again elsewhere (see :mod:`.fast_path`).

    Example:
        >>> single_write(log_metric(b'{"run_id": "r1", "key": "loss", "value": 0.5}', b""))
        True
        >>> single_write(update_run(b'{"run_id": "r1", "run_name": "new"}', b""))
        False
        >>> single_write(get_run(b"", b"run_id=r1"))
        False
    """
    if type(operation) is not partial or operation.func not in _SINGLE_WRITES:
        return False
    return operation.func is not ops.update_run or not operation.keywords.get("run_name")


def cheap_read(operation: Operation) -> bool:
    """True for an operation that only reads, in one transaction: a run, an experiment.

    Example:
        >>> cheap_read(get_run(b"", b"run_id=r1"))
        True
        >>> cheap_read(log_metric(b'{"run_id": "r1", "key": "loss", "value": 0.5}', b""))
        False
    """
    return type(operation) is partial and operation.func in _CHEAP_READS


def on_connection(operation: Operation, conn: Connection) -> Operation:
    """``operation``, a :func:`single_write` or a :func:`cheap_read`, run on ``conn`` (a
    connection of the context's database held open, outside any transaction; marked
    read-only for a read) instead of the context's engine.

    Example:
        >>> # on_connection(log_metric(body, b""), held)(ctx) -> {}
    """
    if not (single_write(operation) or cheap_read(operation)):
        raise TypeError(f"neither a single write nor a cheap read: {operation!r}")
    found: partial[dict[str, Any]] = operation  # type: ignore[assignment]
    return partial(found.func, *found.args, **found.keywords, bind=conn)


_PREFIX = "/api/2.0/mlflow/"
#: ``(method, path) -> parser``. MLflow's ``/ajax-api/`` alias reaches the fast path as
#: ``/api/`` (:mod:`loopline.server.ajax_api`).
ROUTES: dict[tuple[str, str], Parser] = {
    ("POST", _PREFIX + "runs/log-metric"): log_metric,
    ("POST", _PREFIX + "runs/log-batch"): log_batch,
    ("POST", _PREFIX + "runs/log-parameter"): log_parameter,
    ("POST", _PREFIX + "runs/set-tag"): set_tag,
    ("POST", _PREFIX + "runs/create"): create_run,
    ("POST", _PREFIX + "runs/update"): update_run,
    ("GET", _PREFIX + "runs/get"): get_run,
    ("GET", _PREFIX + "experiments/get-by-name"): get_experiment_by_name,
    ("GET", _PREFIX + "experiments/get"): get_experiment,
}
