"""MLflow's wire shapes: experiments and runs as its JSON, and its value conventions.

Experiment ids travel as strings, tags and params as ``{"key", "value"}`` lists, times as
milliseconds, and non-finite metric values as the strings ``"NaN"``, ``"Infinity"`` and
``"-Infinity"`` (protobuf's JSON mapping). Shared by the FastAPI routes
(:mod:`.mlflow_experiments`, :mod:`.mlflow_runs`, :mod:`.mlflow_run_lineage`,
:mod:`.mlflow_metric_history`) and the fast path (:mod:`.fast_routes`), so both answer alike.

What a request may send is protobuf's JSON mapping, read strictly (:func:`wire_double`,
:func:`wire_int64`, :func:`view_type`): a ``double`` is a JSON number, a string in JSON's
number syntax, or one of the three strings above; an ``int64`` is a JSON integer or a
string of ASCII digits with an optional ``-``; a ``ViewType`` is its name or its number.
Python's ``float()`` and ``int()`` (which protobuf's Python parser calls) would also read
``"1_000"``, ``" 5 "``, ``"+3"``, other scripts' digits and ``true`` as numbers the client
never meant: those are refused, as :func:`experiment_id` refuses ``" 1"``.

Example:
    >>> wire_float(float("inf"))
    'Infinity'
    >>> wire_double("1e3"), wire_int64("-7")
    (1000.0, -7)
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict
from pydantic_core import PydanticCustomError

from loopline.errors import InvalidInput
from loopline.tracking.entities import Experiment, RunInput, RunRecord, ViewType

PARENT_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"
#: The options of :class:`loopline.server.responses.OrjsonResponse`, for bodies rendered
#: outside a response object (the fast path).
ORJSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


#: JSON's number syntax (RFC 8259), in ASCII: no sign '+', no space, no '_', no '.5'.
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
#: An int64 as protobuf's JSON writes it in a string.
_INT64 = re.compile(r"-?[0-9]+")
#: The non-finite doubles, as protobuf's JSON mapping spells them (and nothing else:
#: ``"nan"`` and ``"inf"`` are Python's spellings, not the wire's).
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_DOUBLE_HINT = 'send a JSON number, or "NaN", "Infinity" or "-Infinity"'


def _shown(raw: Any) -> str:
    """``raw`` as a message quotes it: its repr (a bool as JSON writes it, as it was sent),
    cut short (a fuzzer sends megabytes)."""
    text = ("true" if raw else "false") if type(raw) is bool else repr(raw)
    return text if len(text) <= 60 else f"{text[:57]}..."


def wire_double(raw: Any) -> float:
    """A protobuf ``double`` from MLflow's JSON, or ValueError saying why it is none.

    A JSON number is taken as it is (a bare ``NaN`` or ``Infinity`` literal included: the
    MLflow client sends them); a string must hold a number in JSON's own syntax, or be
    ``"NaN"``, ``"Infinity"`` or ``"-Infinity"``. A bool is not a number.

    Example:
        >>> wire_double(0.5), wire_double("-Infinity"), wire_double("2.5e-3")
        (0.5, -inf, 0.0025)
        >>> try:
        ...     wire_double("1_000")
        ... except ValueError as exc:
        ...     print(exc)
        '1_000' is not a number: send a JSON number, or "NaN", "Infinity" or "-Infinity"
    """
    kind = type(raw)
    if kind is float:
        return float(raw)
    if kind is int:
        try:
            return float(raw)
        except OverflowError:
            raise ValueError(f"{raw} is beyond the range of a double") from None
    if kind is str:
        special = _NON_FINITE.get(raw)
        if special is not None:
            return special
        if _JSON_NUMBER.fullmatch(raw):
            number = float(raw)
            if math.isinf(number):
                raise ValueError(f'{_shown(raw)} is beyond the range of a double: send "Infinity"')
            return number
    raise ValueError(f"{_shown(raw)} is not a number: {_DOUBLE_HINT}")


def wire_int64(raw: Any) -> int:
    """A protobuf ``int64`` from MLflow's JSON (a JSON integer, or a string of ASCII digits
    with an optional ``-``), or ValueError saying why it is none.

    Its range is the store's to check (as for a JSON integer the fast path takes), so that
    both ways into the server refuse an out-of-range step with the same answer.

    Example:
        >>> wire_int64(3), wire_int64("-12")
        (3, -12)
        >>> try:
        ...     wire_int64(True)
        ... except ValueError as exc:
        ...     print(exc)
        true is not an integer: send a JSON integer such as 3, or its digits as a string
    """
    if type(raw) is int:
        return int(raw)
    if type(raw) is str and _INT64.fullmatch(raw):
        return int(raw)
    raise ValueError(
        f"{_shown(raw)} is not an integer: send a JSON integer such as 3, or its digits as a string"
    )


#: ViewType by its name and by its number, as protobuf's JSON mapping writes an enum (the
#: numbers also as text: a query string holds nothing else).
_VIEW_TYPES: dict[Any, ViewType] = {
    "ACTIVE_ONLY": "active",
    "DELETED_ONLY": "deleted",
    "ALL": "all",
    1: "active",
    2: "deleted",
    3: "all",
    "1": "active",
    "2": "deleted",
    "3": "all",
}


def view_type(raw: Any) -> ViewType | None:
    """MLflow's ``ViewType`` (``ACTIVE_ONLY``, ``DELETED_ONLY``, ``ALL`` or its number 1, 2,
    3) as Loopline's view; None (not sent) stays None; ValueError for anything else.

    Example:
        >>> view_type("DELETED_ONLY"), view_type(3), view_type(None)
        ('deleted', 'all', None)
    """
    if raw is None:
        return None
    # type() and not isinstance(): True == 1 would find ACTIVE_ONLY's number.
    found = _VIEW_TYPES.get(raw) if type(raw) is str or type(raw) is int else None
    if found is None:
        raise ValueError(
            f"{_shown(raw)} is not a view type: use ACTIVE_ONLY, DELETED_ONLY or ALL "
            "(or their numbers 1, 2, 3)"
        )
    return found


def _pydantic(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``check`` as a pydantic validator: its ValueError becomes the field's error, its own
    words the message (the 400 names the field, as for any other bad field)."""

    def validate(raw: Any) -> Any:
        try:
            return check(raw)
        except ValueError as exc:
            raise PydanticCustomError("mlflow_wire", "{reason}", {"reason": str(exc)}) from None

    return validate


#: A request field that is a protobuf ``double`` (:func:`wire_double`).
WireDouble = Annotated[
    float, BeforeValidator(_pydantic(wire_double), json_schema_input_type=float | str)
]
#: A request field that is a protobuf ``int64`` (:func:`wire_int64`); bounds go in ``Field``.
WireInt64 = Annotated[int, BeforeValidator(_pydantic(wire_int64))]
#: A request field that is MLflow's ``ViewType`` (:func:`view_type`).
WireViewType = Annotated[
    ViewType | None, BeforeValidator(_pydantic(view_type), json_schema_input_type=str | int | None)
]


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


class WireRequest(BaseModel):
    """A request body of MLflow's API: fields a newer client adds are ignored, as MLflow's
    own server ignores unknown fields of its protobuf messages.

    Example:
        >>> class Get(WireRequest):
        ...     run_id: str
        >>> Get(run_id="a", extra=1).run_id
        'a'
    """

    model_config = ConfigDict(extra="ignore")


class KeyValue(WireRequest):
    """One ``{"key", "value"}`` of MLflow's tag and param lists (a missing value is "").

    Example:
        >>> KeyValue(key="team").value is None
        True
    """

    key: str
    value: str | None = None


def tag_map(items: list[KeyValue] | None) -> dict[str, str]:
    """MLflow's ``[{"key", "value"}]`` list (or None) as a mapping, a missing value as "".

    Example:
        >>> tag_map([KeyValue(key="a", value="1"), KeyValue(key="b")])
        {'a': '1', 'b': ''}
    """
    return {t.key: t.value or "" for t in items or []}


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
