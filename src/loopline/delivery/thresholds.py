"""The thresholds a challenger must meet: a YAML file checked by pydantic.

The file names the label column of the held-out dataset, the data gate's options and, per
metric, a **value bound** (``lower``/``upper``, inclusive) and a **change bound** against
the current champion, as TFX's Evaluator does: the change is ``challenger - champion``
(``absolute``) or that divided by the champion's value (``relative``); when higher is
better the change must be ``>=`` the bound, when lower is better ``<=`` the bound. So
``auc: {change: {absolute: -0.01}}`` lets the AUC fall by at most 0.01, and
``logloss: {change: {relative: 0.05}}`` lets the log-loss grow by at most 5 %. The
direction defaults to the metric's own (``higher`` for accuracy, precision, recall, f1,
auc, r2; ``lower`` for logloss, rmse, mae).

With ``bootstrap`` the change bound is judged on the worse end of a seeded, paired
bootstrap confidence interval of the change: the challenger passes only if it is within
the bound with that confidence.

Example file::

    label: churned
    task: classification          # optional: classification | regression
    positive: churned             # optional: the positive class of a binary classifier
                                  # (precision, recall, f1, auc); default: the greater label
    data:
      validate: true              # the data gate (default: true)
      contract: churn.contract.yaml   # optional (relative to this file); default: the
                                      # model's training data contract
      serving_sample: churn-live@4    # optional: recent serving inputs to validate too
    metrics:
      accuracy: {lower: 0.8}
      auc: {lower: 0.7, change: {absolute: -0.01}}
      logloss: {upper: 0.6, change: {relative: 0.05}}
    bootstrap: {samples: 1000, confidence: 0.95, seed: 0}   # min_rows: 30

Example:
    >>> t = Thresholds.model_validate({"label": "y", "metrics": {"accuracy": {"lower": 0.8}}})
    >>> t.metrics["accuracy"].lower, t.task_for()
    (0.8, 'classification')
"""

from __future__ import annotations

import numbers
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    FiniteFloat,
    ValidationError,
    field_validator,
    model_validator,
)

from loopline.core.yaml_files import UniqueKeyLoader
from loopline.errors import InvalidInput

Direction = Literal["higher", "lower"]
Task = Literal["classification", "regression"]

CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1", "auc", "logloss")
REGRESSION_METRICS = ("rmse", "mae", "r2")
#: Every metric a threshold may name, with the direction in which it is better.
METRIC_DIRECTIONS: dict[str, Direction] = {
    "accuracy": "higher",
    "precision": "higher",
    "recall": "higher",
    "f1": "higher",
    "auc": "higher",
    "logloss": "lower",
    "rmse": "lower",
    "mae": "lower",
    "r2": "higher",
}


def _number(value: Any) -> Any:
    """A bound is a number as written: pydantic's lax mode read ``lower: yes`` as 1.0 and
    the text ``"0.8"`` as 0.8, so a typo could set a bound nobody wrote."""
    if value is None or (isinstance(value, numbers.Real) and not isinstance(value, bool)):
        return value
    raise ValueError(f"must be a number, got {_shown(value)}")


def _integer(value: Any) -> Any:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    raise ValueError(f"must be a whole number, got {_shown(value)}")


def _flag(value: Any) -> Any:
    """``validate: "no"`` (text) turned the data gate off through lax parsing; only a
    YAML boolean (true/false, yes/no unquoted) is one."""
    if isinstance(value, bool):
        return value
    raise ValueError(f"must be true or false, got {_shown(value)}")


def _class_label(value: Any) -> Any:
    """A class as the labels hold it: text, a whole number or a bool, kept as written (a
    float would never be equal to an integer label's class exactly as meant)."""
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    raise ValueError(f"must be a class label (text, a whole number or a bool), got {_shown(value)}")


def _shown(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


Bound = Annotated[FiniteFloat | None, BeforeValidator(_number)]


class ChangeBound(BaseModel):
    """A bound on the change against the champion (``absolute`` and/or ``relative``)."""

    model_config = ConfigDict(extra="forbid")

    direction: Direction | None = None
    absolute: Bound = None
    relative: Bound = None

    @model_validator(mode="after")
    def _one_bound(self) -> ChangeBound:
        if self.absolute is None and self.relative is None:
            raise ValueError("a change bound needs 'absolute' or 'relative'")
        return self


class MetricBound(BaseModel):
    """The bounds for one metric: on its value and on its change against the champion."""

    model_config = ConfigDict(extra="forbid")

    # Finite: a NaN bound compares false with every value, and blocked every model.
    lower: Bound = None
    upper: Bound = None
    change: ChangeBound | None = None

    @model_validator(mode="after")
    def _some_bound(self) -> MetricBound:
        if self.lower is None and self.upper is None and self.change is None:
            raise ValueError("give 'lower', 'upper' or 'change'")
        if self.lower is not None and self.upper is not None and self.lower > self.upper:
            raise ValueError(f"lower ({self.lower}) is above upper ({self.upper})")
        return self


class DataGate(BaseModel):
    """The data gate: which contract the held-out data (and a serving sample) must meet."""

    model_config = ConfigDict(extra="forbid")

    validate_: Annotated[bool, BeforeValidator(_flag)] = Field(True, alias="validate")
    contract: str | None = None
    serving_sample: str | None = None

    @field_validator("serving_sample")
    @classmethod
    def _a_fixed_version(cls, value: str | None) -> str | None:
        # Read when the thresholds are, not at the end of the gate (where it was an error
        # naming 'dataset', the gate's other argument); a verdict names fixed versions.
        if value is None:
            return value
        from loopline.data.dataset_refs import parse_ref

        name, number = parse_ref(value)
        if number is None:
            raise ValueError(f"{value!r} names no version: use NAME@VERSION, e.g. {name}@3")
        return value


class Bootstrap(BaseModel):
    """A seeded, paired bootstrap of the change between challenger and champion."""

    model_config = ConfigDict(extra="forbid")

    samples: Annotated[int, BeforeValidator(_integer)] = Field(1000, ge=10, le=100_000)
    confidence: Annotated[float, BeforeValidator(_number)] = Field(0.95, gt=0.5, lt=1.0)
    # NumPy's generator takes a non-negative seed (-1 raised its ValueError mid-gate), and
    # the verdict's JSON holds 64 bits (a longer one failed storing it, after the gate ran).
    seed: Annotated[int, BeforeValidator(_integer)] = Field(0, ge=0, le=2**64 - 1)
    # Fewer held-out rows fail the change check: resamples of a few rows often hold none on
    # which the models differ, so the interval is [0, 0] - a "95 %" interval passed a
    # challenger 10 points less accurate 59 % of the time on 5 rows, 33 % on 10, ~4 % on 30.
    min_rows: Annotated[int, BeforeValidator(_integer)] = Field(30, ge=2)


class Thresholds(BaseModel):
    """The whole thresholds file."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    label: str = Field(min_length=1)
    task: Task | None = None
    positive: Annotated[str | bool | int | None, BeforeValidator(_class_label)] = None
    data: DataGate = Field(default_factory=lambda: DataGate.model_validate({}))
    metrics: dict[str, MetricBound] = Field(min_length=1)
    bootstrap: Bootstrap | None = None

    @model_validator(mode="after")
    def _known_metrics(self) -> Thresholds:
        for name in self.metrics:
            if name not in METRIC_DIRECTIONS:
                raise ValueError(
                    f"unknown metric {name!r} (use one of {', '.join(METRIC_DIRECTIONS)})"
                )
        wrong = _wrong_task(self.task, list(self.metrics))
        if wrong:
            raise ValueError(f"metric {wrong!r} does not apply to task {self.task!r}")
        mixed = _mixed_tasks(list(self.metrics))
        if mixed:
            raise ValueError(mixed)
        if self.positive is not None and self.task_for() == "regression":
            raise ValueError("'positive' names a class: it applies to a classifier only")
        return self

    def task_for(self, model_task: Task | None = None, model: str = "the model") -> Task:
        """The task the model is scored as: ``model_task``, the model's own when it says
        (a classifier or a regressor), else the file's ``task``, else regression when only
        regression metrics are named. A file whose ``task`` or metrics do not fit the
        model's task is refused naming them: a classifier judged on ``rmse`` alone was
        scored as a regressor, its class labels taken for numbers.

        Example:
            >>> t = Thresholds(label="y", metrics={"rmse": {"upper": 2}})
            >>> t.task_for()
            'regression'
            >>> try:
            ...     t.task_for("classification")
            ... except InvalidInput as exc:
            ...     print(exc.field)
            metrics.rmse
        """
        if model_task is not None:
            _check_task(self, model_task, model)
            return model_task
        if self.task is not None:
            return self.task
        if all(m in REGRESSION_METRICS for m in self.metrics):
            return "regression"
        return "classification"

    def direction(self, metric: str) -> Direction:
        """The direction in which ``metric`` is better (the file's, else the metric's own).

        Example:
            >>> Thresholds(label="y", metrics={"mae": {"upper": 1}}).direction("mae")
            'lower'
        """
        bound = self.metrics.get(metric)
        if bound is not None and bound.change is not None and bound.change.direction:
            return bound.change.direction
        return METRIC_DIRECTIONS[metric]


_KIND = {"classification": "a classifier", "regression": "a regressor"}


def _check_task(spec: Thresholds, task: Task, model: str) -> None:
    """Refuse a ``task`` or a metric of ``spec`` that does not fit the model's ``task``."""
    fitting = CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS
    hint = f"metrics of the task {task}: {', '.join(fitting)}"
    if spec.task is not None and spec.task != task:
        raise InvalidInput(
            f"task: {spec.task} does not fit {model}, {_KIND[task]} (task {task})",
            field="task",
            hint=f"remove 'task' or set it to {task}; {hint}",
        )
    wrong = [m for m in spec.metrics if m not in fitting]
    if wrong:
        raise InvalidInput(
            f"metrics.{wrong[0]}: {wrong[0]} does not apply to the task {task} of {model} "
            f"({_KIND[task]})",
            field=f"metrics.{wrong[0]}",
            hint=hint,
        )


def _wrong_task(task: Any, metrics: list[str]) -> str | None:
    """The first metric that does not fit ``task`` (None when all fit or no task given)."""
    if task not in ("classification", "regression"):
        return None
    for m in metrics:
        if m in METRIC_DIRECTIONS and (task == "classification") != (m in CLASSIFICATION_METRICS):
            return m
    return None


def _mixed_tasks(metrics: list[str]) -> str | None:
    """Why ``metrics`` name both tasks' metrics, or None: a model is scored as one, so
    the other's were reported as 'missing: not computed' and blocked every model."""
    known = [m for m in metrics if m in METRIC_DIRECTIONS]
    cls = [m for m in known if m in CLASSIFICATION_METRICS]
    reg = [m for m in known if m in REGRESSION_METRICS]
    if cls and reg:
        return (
            f"classification metrics ({', '.join(cls)}) and regression metrics "
            f"({', '.join(reg)}) cannot judge one model"
        )
    return None


def parse_thresholds(data: Any, source: str = "thresholds") -> Thresholds:
    """Check plain data against the thresholds schema; InvalidInput names the bad key.

    Example:
        >>> parse_thresholds({"label": "y", "metrics": {"f1": {"lower": 0.5}}}).label
        'y'
    """
    if isinstance(data, Thresholds):
        return data
    if not isinstance(data, dict):
        raise InvalidInput(
            f"{source} must be a mapping with 'label' and 'metrics', got {type(data).__name__}",
            field="thresholds",
            hint="see loopline.delivery.thresholds for the file's keys",
        )
    metrics = data.get("metrics")
    if isinstance(metrics, dict):
        for name in metrics:
            if name not in METRIC_DIRECTIONS:
                raise InvalidInput(
                    f"{source}: metrics.{name}: unknown metric "
                    f"(use one of {', '.join(METRIC_DIRECTIONS)})",
                    field=f"metrics.{name}",
                    hint="fix the metric's name",
                )
        wrong = _wrong_task(data.get("task"), list(metrics))
        if wrong:
            raise InvalidInput(
                f"{source}: metrics.{wrong}: does not apply to task {data.get('task')!r}",
                field=f"metrics.{wrong}",
                hint=f"classification metrics: {', '.join(CLASSIFICATION_METRICS)}; "
                f"regression metrics: {', '.join(REGRESSION_METRICS)}",
            )
        mixed = _mixed_tasks(list(metrics))
        if mixed:
            raise InvalidInput(
                f"{source}: metrics: {mixed}",
                field="metrics",
                hint="name the metrics of the model's task only",
            )
    try:
        return Thresholds.model_validate(data)
    except ValidationError as exc:
        raise _structure_error(source, exc) from exc


def load_thresholds(path: str | os.PathLike[str]) -> Thresholds:
    """Read and check a thresholds YAML file.

    Example:
        >>> # t = load_thresholds("gate.yaml"); t.metrics["auc"].change.absolute
    """
    src = Path(path)
    try:
        data = yaml.load(src.read_text(encoding="utf-8"), Loader=UniqueKeyLoader)  # a SafeLoader
    except FileNotFoundError as exc:
        raise InvalidInput(
            f"there is no thresholds file at {src}",
            field="thresholds",
            hint="write one: see loopline.delivery.thresholds for an example",
        ) from exc
    except IsADirectoryError as exc:
        raise InvalidInput(
            f"--thresholds {src} is a folder, not a thresholds file",
            field="thresholds",
            hint="pass the YAML file itself, e.g. --thresholds gate.yaml",
        ) from exc
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"--thresholds {src} is not a text file ({exc.reason})",
            field="thresholds",
            hint="pass the thresholds YAML file",
        ) from exc
    except yaml.YAMLError as exc:
        raise InvalidInput(
            f"{src} is not valid YAML: {exc}", field="thresholds", hint="fix the YAML syntax"
        ) from exc
    # Absolute: the verdict keeps the thresholds, and names the contract it checked.
    folder = Path(os.path.abspath(src)).parent  # noqa: PTH100 - normalises '..', unlike absolute()
    return parse_thresholds(anchor_paths(data, folder), str(src))


def anchor_paths(data: Any, folder: str | os.PathLike[str]) -> Any:
    """``data`` (a thresholds mapping read from a file in ``folder``) with a relative
    ``data.contract`` path made relative to ``folder``: a file names other files relative
    to itself, not to wherever the process that reads it was started.

    Example:
        >>> anchor_paths({"data": {"contract": "c.yaml"}}, "/gates")["data"]["contract"]
        '/gates/c.yaml'
    """
    if not isinstance(data, dict) or not isinstance(data.get("data"), dict):
        return data
    contract = data["data"].get("contract")
    if not isinstance(contract, str) or not contract or Path(contract).is_absolute():
        return data
    return {**data, "data": {**data["data"], "contract": str(Path(folder) / contract)}}


def _structure_error(source: str, exc: ValidationError) -> InvalidInput:
    problems = []
    keys = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        key = ".".join(loc) or "(top level)"
        keys.append(key)
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        else:
            msg = str(err["msg"]).removeprefix("Value error, ")
        problems.append(f"{key}: {msg}")
    return InvalidInput(
        f"{source} is not a valid thresholds file: " + "; ".join(problems),
        field=keys[0] if keys else None,
        hint="top-level keys are label, task, positive, data, metrics, bootstrap (samples, "
        "confidence, seed, min_rows); per metric lower, upper, change (direction, absolute, "
        "relative)",
    )
