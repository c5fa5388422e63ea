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
    data:
      validate: true              # the data gate (default: true)
      contract: churn.contract.yaml   # optional; default: the model's training data contract
      serving_sample: churn-live@4    # optional: recent serving inputs to validate too
    metrics:
      accuracy: {lower: 0.8}
      auc: {lower: 0.7, change: {absolute: -0.01}}
      logloss: {upper: 0.6, change: {relative: 0.05}}
    bootstrap: {samples: 1000, confidence: 0.95, seed: 0}

Example:
    >>> t = Thresholds.model_validate({"label": "y", "metrics": {"accuracy": {"lower": 0.8}}})
    >>> t.metrics["accuracy"].lower, t.task_for()
    (0.8, 'classification')
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, ValidationError, model_validator

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


class ChangeBound(BaseModel):
    """A bound on the change against the champion (``absolute`` and/or ``relative``)."""

    model_config = ConfigDict(extra="forbid")

    direction: Direction | None = None
    absolute: FiniteFloat | None = None
    relative: FiniteFloat | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> ChangeBound:
        if self.absolute is None and self.relative is None:
            raise ValueError("a change bound needs 'absolute' or 'relative'")
        return self


class MetricBound(BaseModel):
    """The bounds for one metric: on its value and on its change against the champion."""

    model_config = ConfigDict(extra="forbid")

    # Finite: a NaN bound compares false with every value, and blocked every model.
    lower: FiniteFloat | None = None
    upper: FiniteFloat | None = None
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

    validate_: bool = Field(True, alias="validate")
    contract: str | None = None
    serving_sample: str | None = None


class Bootstrap(BaseModel):
    """A seeded, paired bootstrap of the change between challenger and champion."""

    model_config = ConfigDict(extra="forbid")

    samples: int = Field(1000, ge=10, le=100_000)
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    seed: int = 0


class Thresholds(BaseModel):
    """The whole thresholds file."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    label: str = Field(min_length=1)
    task: Task | None = None
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
        return self

    def task_for(self) -> Task:
        """The task: as given, else regression when only regression metrics are named.

        Example:
            >>> Thresholds(label="y", metrics={"rmse": {"upper": 2}}).task_for()
            'regression'
        """
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


def _wrong_task(task: Any, metrics: list[str]) -> str | None:
    """The first metric that does not fit ``task`` (None when all fit or no task given)."""
    if task not in ("classification", "regression"):
        return None
    for m in metrics:
        if m in METRIC_DIRECTIONS and (task == "classification") != (m in CLASSIFICATION_METRICS):
            return m
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
        data = yaml.safe_load(src.read_text(encoding="utf-8"))
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
    return parse_thresholds(data, str(src))


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
        hint="top-level keys are label, task, data, metrics, bootstrap; per metric lower, "
        "upper, change (direction, absolute, relative)",
    )
