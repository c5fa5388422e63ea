"""Checks on what a run logs: keys, value lengths, metric values, artifact paths.

The limits are MLflow's, so that whatever Loopline accepts the MLflow client accepts too:

* keys (metric, param, tag) at most :data:`MAX_KEY_LENGTH` characters; ``/`` is allowed
  (``train/loss``), but not an absolute path, a ``..`` segment or a control character;
* param values at most :data:`MAX_PARAM_VALUE_LENGTH` characters;
* tag values at most :data:`MAX_TAG_VALUE_LENGTH` characters;
* a run name at most :data:`MAX_RUN_NAME_LENGTH` characters, a user id at most
  :data:`MAX_USER_ID_LENGTH`; neither holds a control character (ESC would recolour or
  rewrite the terminal that lists runs), but a run name may hold tab and newline, as
  MLflow's may.

Metric values are stored as MLflow stores them (:func:`stored_metric_value`): NaN as 0
with the ``is_nan`` flag set, +inf and -inf as +/- :data:`MAX_FLOAT`.

Example:
    >>> check_key("train/loss")
    'train/loss'
    >>> stored_metric_value(float("inf"))
    (1.7976931348623157e+308, False)
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from loopline.core.artifact_paths import unsafe_reason
from loopline.core.text import check_no_control, check_no_nul, check_utf8
from loopline.errors import InvalidInput

#: Longest metric, param or tag key (MLflow: 250).
MAX_KEY_LENGTH = 250
#: Longest param value (MLflow: 6000).
MAX_PARAM_VALUE_LENGTH = 6000
#: Longest tag value (MLflow: 8000).
MAX_TAG_VALUE_LENGTH = 8000
#: Longest experiment name.
MAX_EXPERIMENT_NAME_LENGTH = 256
#: Longest run name.
MAX_RUN_NAME_LENGTH = 250
#: Longest artifact path inside a run.
MAX_ARTIFACT_PATH_LENGTH = 1000
#: What +inf is stored as (and -inf as its negative), as in MLflow.
MAX_FLOAT = 1.7976931348623157e308

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SEPARATORS = re.compile(r"[/\\]")
_DRIVE = re.compile(r"^[A-Za-z]:[/\\]")


def check_key(key: Any, what: str = "key") -> str:
    """Return ``key`` if it may name a metric, param or tag; else raise :class:`InvalidInput`.

    Example:
        >>> check_key("eval/auc", "metric")
        'eval/auc'
    """
    if not isinstance(key, str) or not key:
        raise InvalidInput(
            f"{what} key {key!r} must be a non-empty string", field=what, hint="e.g. 'val/auc'"
        )
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidInput(
            f"{what} key {key[:40]!r}... is {len(key)} characters, over the limit of "
            f"{MAX_KEY_LENGTH}",
            field=what,
            hint=f"use a key of at most {MAX_KEY_LENGTH} characters",
        )
    _check_path_like(key, what, "key")
    check_utf8(key, what)
    return key


def check_artifact_path(path: str) -> str:
    """Return ``path`` (``/``-separated, relative) if it may name an artifact inside a run.

    Example:
        >>> check_artifact_path("plots/roc.png")
        'plots/roc.png'
    """
    if not isinstance(path, str) or not path.strip("/"):
        raise InvalidInput(
            f"artifact path {path!r} is empty", field="artifact_path", hint="e.g. 'plots/roc.png'"
        )
    if len(path) > MAX_ARTIFACT_PATH_LENGTH:
        raise InvalidInput(
            f"artifact path is {len(path)} characters, over the limit of "
            f"{MAX_ARTIFACT_PATH_LENGTH}",
            field="artifact_path",
        )
    _check_path_like(path, "artifact_path", "path")
    return path


def _check_path_like(text: str, field: str, noun: str) -> None:
    if _CONTROL.search(text):
        raise InvalidInput(
            f"{field} {noun} {text!r} contains a control character",
            field=field,
            hint="remove newlines, tabs and other control characters",
        )
    if text.startswith(("/", "\\")) or _DRIVE.match(text):
        raise InvalidInput(
            f"{field} {noun} {text!r} is an absolute path",
            field=field,
            hint="use a relative name such as 'train/loss'",
        )
    if ".." in _SEPARATORS.split(text):
        raise InvalidInput(
            f"{field} {noun} {text!r} contains a '..' segment",
            field=field,
            hint="a name may not climb out of its folder; remove the '..'",
        )
    # The same checks on the percent-decoded and NFKC readings (``%2e%2e%2f``,
    # full-width dots).
    # Plain ASCII without '%' has no other reading: the checks above were enough.
    reason = None if text.isascii() and "%" not in text else unsafe_reason(text)
    if reason is not None:
        raise InvalidInput(
            f"{field} {noun} {text!r} {reason}",
            field=field,
            hint="use a plain relative name such as 'train/loss'",
        )


def check_param_value(key: str, value: Any) -> str:
    """The param value as text, at most :data:`MAX_PARAM_VALUE_LENGTH` characters.

    Example:
        >>> check_param_value("lr", 0.1)
        '0.1'
    """
    text = value if isinstance(value, str) else str(value)
    check_no_nul(text, f"params.{key}")
    if len(text) > MAX_PARAM_VALUE_LENGTH:
        raise InvalidInput(
            f"param {key!r} has a value of {len(text)} characters, over the limit of "
            f"{MAX_PARAM_VALUE_LENGTH} (MAX_PARAM_VALUE_LENGTH)",
            field=f"params.{key}",
            hint="log a long value as an artifact (run.log_dict) and the param as its name",
        )
    return text


def check_tag_value(key: str, value: Any) -> str | None:
    """The tag value as text (None stays None), at most :data:`MAX_TAG_VALUE_LENGTH` characters.

    Example:
        >>> check_tag_value("team", "fraud")
        'fraud'
    """
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    check_no_nul(text, f"tags.{key}")
    if len(text) > MAX_TAG_VALUE_LENGTH:
        raise InvalidInput(
            f"tag {key!r} has a value of {len(text)} characters, over the limit of "
            f"{MAX_TAG_VALUE_LENGTH} (MAX_TAG_VALUE_LENGTH)",
            field=f"tags.{key}",
            hint="log a long value as an artifact (run.log_dict or run.log_artifact)",
        )
    return text


def metric_float(key: str, value: Any) -> float:
    """``value`` as a float, or :class:`InvalidInput` naming the metric.

    Text is refused even when it reads as a number (``"0.93"``, ``"nan"``), as MLflow's
    client and the REST routes refuse it: a metric logged as text is a bug upstream. So is
    a bool (Python's or numpy's), which the REST routes refuse too; it was stored as 1.0.

    Example:
        >>> metric_float("acc", 1)
        1.0
    """
    if type(value).__name__ in ("bool", "bool_"):  # Python's, numpy's (bool_ before 2.0)
        raise InvalidInput(
            f"metric {key!r} got {value!r}, which is a bool, not a number",
            field=f"metrics.{key}",
            hint="log 1.0 or 0.0 if you mean a number (float(flag)); log a flag as a tag",
        )
    if isinstance(value, str | bytes | bytearray):
        raise InvalidInput(
            f"metric {key!r} got {value!r}, which is not a number (text is refused, even "
            "when it reads as one)",
            field=f"metrics.{key}",
            hint="log numbers only (float(...) it first if it is a number as text); "
            "log text as a tag or param",
        )
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(
            f"metric {key!r} got {value!r}, which is not a number",
            field=f"metrics.{key}",
            hint="log numbers only; log text as a tag or param",
        ) from exc


def stored_metric_value(value: float) -> tuple[float, bool]:
    """How a metric value is stored: ``(value, is_nan)``, exactly as MLflow stores it.

    NaN becomes ``(0.0, True)``; +inf and -inf become ``(+/-MAX_FLOAT, False)``;
    every other float is kept as is.

    Example:
        >>> stored_metric_value(float("nan"))
        (0.0, True)
    """
    if math.isnan(value):
        return 0.0, True
    if math.isinf(value):
        return (MAX_FLOAT if value > 0 else -MAX_FLOAT), False
    return value, False


def stored_infinity(value: Any) -> bool:
    """True for a metric value that stands for +/-inf: the store keeps them as +/- the
    largest float (:data:`MAX_FLOAT`), as MLflow does.

    Example:
        >>> stored_infinity(1.7976931348623157e308), stored_infinity(1e308)
        (True, False)
    """
    return isinstance(value, float) and abs(value) >= MAX_FLOAT


def check_run_name(name: str) -> str:
    """A run name within :data:`MAX_RUN_NAME_LENGTH` characters, without a control
    character but tab and newline, returned as it is.

    Example:
        >>> check_run_name("baseline")
        'baseline'
    """
    if not isinstance(name, str):  # len() of it raised TypeError
        raise InvalidInput(
            f"run name must be text, got {name!r}", field="name", hint="e.g. 'lgbm-6'"
        )
    _bounded_text(name, "name", "run name", MAX_RUN_NAME_LENGTH)
    check_no_control(name, "name", lines=True)
    return name


#: The ``runs.user_id`` column's width.
MAX_USER_ID_LENGTH = 256


def check_user_id(user_id: Any) -> str:
    """A run's user id: text of at most :data:`MAX_USER_ID_LENGTH` characters, without a
    control character.

    Example:
        >>> check_user_id("ada")
        'ada'
    """
    if not isinstance(user_id, str):
        raise InvalidInput(
            f"user_id must be text, got {user_id!r}", field="user_id", hint="e.g. 'ada'"
        )
    _bounded_text(user_id, "user_id", "user_id", MAX_USER_ID_LENGTH)
    check_no_control(user_id, "user_id")
    return user_id


def _bounded_text(text: str, field: str, what: str, limit: int) -> str:
    """``text`` if it fits its column (``limit`` characters) and the database can store it."""
    if len(text) > limit:
        raise InvalidInput(
            f"{what} is {len(text)} characters, over the limit of {limit}", field=field
        )
    check_no_nul(text, field)
    return text


_MIN_INT64, _MAX_INT64 = -(2**63), 2**63 - 1


def check_int(value: Any, field: str) -> int:
    """``value`` as an int (a step or a timestamp), or :class:`InvalidInput` naming the field.

    Example:
        >>> check_int(3, "step")
        3
    """
    number = value
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            if isinstance(value, bool) or int(value) != value:
                raise ValueError(value)
            number = int(value)
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidInput(
                f"{field} must be an integer, got {value!r}", field=field, hint="e.g. step=10"
            ) from exc
    if not _MIN_INT64 <= number <= _MAX_INT64:  # the columns are 64-bit (BIGINT)
        raise InvalidInput(
            f"{field} {number} does not fit in 64 bits",
            field=field,
            hint=f"give {field} between -2**63 and 2**63 - 1",
        )
    return int(number)


#: The most runs or experiments one page of a search may hold (MLflow's limit).
MAX_RESULTS_LIMIT = 50_000
#: Which runs a search sees, by lifecycle stage.
VIEWS = ("active", "deleted", "all")


def check_max_results(max_results: Any) -> int:
    """A page size between 1 and :data:`MAX_RESULTS_LIMIT`; a bool is not one.

    Example:
        >>> check_max_results(100)
        100
    """
    if type(max_results) is not int or not 1 <= max_results <= MAX_RESULTS_LIMIT:
        raise InvalidInput(
            f"max_results must be between 1 and {MAX_RESULTS_LIMIT}, got {max_results!r}",
            field="max_results",
            hint="give an integer (not a bool); page through larger results with page_token",
        )
    return max_results


def check_run_search(
    *,
    experiments: Any,
    filter: Any,
    order_by: Any,
    max_results: Any,
    page_token: Any,
    view: Any,
) -> tuple[list[str] | None, list[str] | None]:
    """The experiment names and order keys of a run search, as lists, once its arguments'
    types are checked: before either backend sees them.

    The embedded backend failed on a wrong type with whatever Python raised on the way
    (``AttributeError: 'int' object has no attribute 'strip'``) and took ``max_results=True``
    as 1; the remote one raised pydantic's ``ValidationError``. Both now raise this
    :class:`InvalidInput`, naming the argument.

    Example:
        >>> check_run_search(experiments=("churn",), filter="metrics.auc > 0.8",
        ...                  order_by=["metrics.auc DESC"], max_results=10, page_token=None,
        ...                  view="active")
        (['churn'], ['metrics.auc DESC'])
    """
    names = _texts(experiments, "experiment", "an experiment name or a list of them")
    if filter is not None and not isinstance(filter, str):
        raise InvalidInput(
            f"filter must be text, got {filter!r}",
            field="filter",
            hint="e.g. filter=\"metrics.auc > 0.8 and params.model = 'lgbm'\"",
        )
    orders = _texts(order_by, "order_by", "e.g. order_by=['metrics.auc DESC']")
    check_max_results(max_results)
    if page_token is not None and not isinstance(page_token, str):
        raise InvalidInput(
            f"page_token must be text, got {page_token!r}",
            field="page_token",
            hint="pass the next_page_token of the previous page unchanged",
        )
    if not isinstance(view, str) or view not in VIEWS:
        raise InvalidInput(
            f"unknown view {view!r}", field="view", hint="use 'active', 'deleted' or 'all'"
        )
    return names, orders


def _texts(items: Any, field: str, hint: str) -> list[str] | None:
    """``items`` (None, or a collection of strings other than a mapping) as a list."""
    if items is None:
        return None
    if isinstance(items, str | bytes | Mapping) or not isinstance(items, Iterable):
        raise InvalidInput(
            f"{field} must be text or a list of text, got {items!r}", field=field, hint=hint
        )
    found = list(items)
    for n, item in enumerate(found):
        if not isinstance(item, str):
            raise InvalidInput(f"{field}[{n}] must be text, got {item!r}", field=field, hint=hint)
    return found
