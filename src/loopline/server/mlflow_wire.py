"""MLflow's wire shapes: experiments and runs as its JSON, and its value conventions.

Experiment ids travel as strings, tags and params as ``{"key", "value"}`` lists, times as
milliseconds, and non-finite metric values as the strings ``"NaN"``, ``"Infinity"`` and
``"-Infinity"`` (protobuf's JSON mapping). Shared by the FastAPI routes
(:mod:`.mlflow_tracking`) and the fast path (:mod:`.fast_routes`), so both answer alike.

Example:
    >>> wire_float(float("inf"))
    'Infinity'
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from loopline.errors import InvalidInput
from loopline.tracking.entities import Experiment, RunInput, RunRecord

PARENT_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"
#: The options of :class:`loopline.server.responses.OrjsonResponse`, for bodies rendered
#: outside a response object (the fast path).
ORJSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def metric_value(v: float | str, key: str) -> float:
    """A metric value from the wire: a number, or one of protobuf's non-finite strings.

    Example:
        >>> metric_value("-Infinity", "loss")
        -inf
    """
    if isinstance(v, float | int):
        return float(v)
    try:
        return float({"Infinity": "inf", "-Infinity": "-inf"}.get(v, v))
    except ValueError as exc:
        raise InvalidInput(
            f"metric {key!r} has value {v!r}, which is not a number", field="value"
        ) from exc


def wire_float(v: float) -> float | str:
    """A metric value for the wire: non-finite values as protobuf's strings.

    Example:
        >>> wire_float(0.5), wire_float(float("nan"))
        (0.5, 'NaN')
    """
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return v


def key_values(d: dict[str, Any]) -> list[dict[str, Any]]:
    """A mapping as MLflow's sorted ``[{"key", "value"}]`` list (None as "").

    Example:
        >>> key_values({"b": None, "a": "1"})
        [{'key': 'a', 'value': '1'}, {'key': 'b', 'value': ''}]
    """
    return [{"key": k, "value": "" if v is None else v} for k, v in sorted(d.items())]


def experiment_id(raw: str | int | None) -> int:
    """An experiment id from the wire (a string of digits), or :class:`InvalidInput`.

    Example:
        >>> experiment_id("12")
        12
    """
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    # ASCII digits only: int() would also read " 1", "+1", "1_0" or other scripts' digits
    # as an id the client never sent.
    if isinstance(raw, str) and raw.isascii() and raw.isdigit():
        return int(raw)
    raise InvalidInput(
        f"experiment_id {raw!r} is not an experiment id",
        field="experiment_id",
        hint="experiment ids are numbers",
    )


def experiment_json(e: Experiment) -> dict[str, Any]:
    """An experiment in MLflow's JSON shape.

    Example:
        >>> # experiment_json(get_experiment(engine, 0))["name"] -> 'Default'
    """
    return {
        "experiment_id": str(e.id),
        "name": e.name,
        "artifact_location": e.artifact_location or f"mlflow-artifacts:/{e.id}",
        "lifecycle_stage": e.lifecycle_stage,
        "creation_time": e.creation_time,
        "last_update_time": e.last_update_time,
        "tags": key_values(e.tags),
    }


def run_info_json(r: RunRecord) -> dict[str, Any]:
    """The ``info`` part of a run in MLflow's JSON shape.

    Example:
        >>> # run_info_json(get_run(engine, run_id))["status"] -> 'RUNNING'
    """
    info: dict[str, Any] = {
        "run_id": r.id,
        "run_uuid": r.id,
        "run_name": r.name or "",
        "experiment_id": str(r.experiment_id),
        "user_id": r.user_id or "",
        "status": r.status,
        "start_time": r.start_time,
        "artifact_uri": f"mlflow-artifacts:/{r.experiment_id}/{r.id}/artifacts",
        "lifecycle_stage": r.lifecycle_stage,
    }
    if r.end_time is not None:
        info["end_time"] = r.end_time
    return info


def dataset_input_json(i: RunInput) -> dict[str, Any]:
    """A run's input in MLflow's ``DatasetInput`` shape: as the MLflow client sent it, or,
    for a dataset version read through ``ll.datasets``, its name, digest and ``NAME@VERSION``.

    Example:
        >>> dataset_input_json(RunInput("dataset", "churn", "3", "ab"))["dataset"]["source"]
        'churn@3'
    """
    dataset: dict[str, Any] = {
        "name": i.name,
        "digest": i.digest,
        "source_type": i.kind,
        "source": f"{i.name}@{i.version}",
    }
    tags = [{"key": "mlflow.data.context", "value": i.context or ""}]
    if i.details_json:
        sent = orjson.loads(i.details_json)
        for key in ("source", "schema", "profile"):
            if sent.get(key) is not None:
                dataset[key] = sent[key]
        tags = [{"key": k, "value": v} for k, v in sent.get("tags", [])]
    return {"tags": tags, "dataset": dataset}


def run_json(r: RunRecord) -> dict[str, Any]:
    """A run in MLflow's JSON shape, with its dataset inputs and model outputs.

    Example:
        >>> # run_json(get_run(engine, run_id))["data"]["params"] -> [{'key': 'lr', ...}]
    """
    tags = dict(r.tags)
    if r.name and RUN_NAME_TAG not in tags:
        tags[RUN_NAME_TAG] = r.name
    if r.parent_run_id and PARENT_TAG not in tags:
        tags[PARENT_TAG] = r.parent_run_id
    metrics = [
        {"key": k, "value": wire_float(p.value), "timestamp": p.timestamp, "step": p.step}
        for k, p in sorted(r.latest_metrics.items())
    ]
    inputs = [dataset_input_json(i) for i in r.inputs]
    outputs = [{"model_id": o.model_id, "step": o.step} for o in r.outputs]
    return {
        "info": run_info_json(r),
        "data": {"metrics": metrics, "params": key_values(r.params), "tags": key_values(tags)},
        "inputs": {"dataset_inputs": inputs},
        "outputs": {"model_outputs": outputs},
    }
