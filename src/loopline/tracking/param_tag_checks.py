"""How the tracking store checks a run's params and tags before it writes any.

Separate from :mod:`loopline.tracking.validation` (one key, one value) because these rules
are about a whole batch and the tags that mean something to the store: a param given twice
with two values, the tags reserved for the metric batch ledger (:data:`INGEST_TAG_PREFIX`),
the tag that names the run (:data:`RUN_NAME_TAG`), and a param that changes once stored.
Run creation, run updates and :func:`loopline.tracking.run_data.log_batch` use them,
as do the SDK (before a run is written) and logged models.

Example:
    >>> check_params({"lr": 0.1}), check_tags({"team": "risk"})
    ({'lr': '0.1'}, {'team': 'risk'})
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from loopline.errors import Conflict, InvalidInput
from loopline.tracking.validation import (
    check_key,
    check_param_value,
    check_run_name,
    check_tag_value,
)

#: MLflow's tag for the run name: setting it renames the run, as in MLflow (the SDK's
#: ``run.set_tag("mlflow.runName", ...)`` left the name as it was, so ``run.name``,
#: ``loopline runs`` and the UI showed one name and MLflow clients the tag's).
RUN_NAME_TAG = "mlflow.runName"
#: Tags ``loopline.ingest.<writer>`` hold the last batch number applied from each metric
#: writer (see :func:`~loopline.tracking.run_data.log_batch`); they are written by the
#: server only.
INGEST_TAG_PREFIX = "loopline.ingest."


def _pairs(items: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> list[tuple[str, Any]]:
    return list(items.items()) if isinstance(items, Mapping) else list(items)


def check_params(params: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> dict[str, str]:
    """Params as stored (text), checked as :func:`~loopline.tracking.run_data.log_batch`
    checks them; raises on a bad one.

    Example:
        >>> check_params({"lr": 0.1})
        {'lr': '0.1'}
    """
    return _clean_params(_pairs(params))


def check_tags(tags: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> dict[str, str | None]:
    """Tags as stored, checked as :func:`~loopline.tracking.run_data.log_batch` checks
    them; raises on the first bad one.

    Example:
        >>> check_tags({"team": "risk"})
        {'team': 'risk'}
    """
    clean: dict[str, str | None] = {}
    for key, value in _pairs(tags):
        check_key(key, "tag")
        if key.startswith(INGEST_TAG_PREFIX):
            raise InvalidInput(
                f"tag {key!r} is reserved: tags starting with {INGEST_TAG_PREFIX!r} record "
                "which metric batches a run has received",
                field=f"tags.{key}",
                hint="choose another tag key",
            )
        text = clean[key] = check_tag_value(key, value)
        if key == RUN_NAME_TAG and text:  # it becomes the name: it must fit the column
            check_run_name(text)
    return clean


def tagged_name(tags: Mapping[str, str | None]) -> str | None:
    """The run name a checked :data:`RUN_NAME_TAG` sets, if any (an empty one sets none)."""
    return tags.get(RUN_NAME_TAG) or None


def _clean_params(pairs: list[tuple[str, Any]]) -> dict[str, str]:
    clean: dict[str, str] = {}
    for key, value in pairs:
        check_key(key, "param")
        text = check_param_value(key, value)
        if key in clean and clean[key] != text:
            raise Conflict(
                f"param {key!r} appears twice in one batch, as {clean[key]!r} and {text!r}",
                hint="log each param once per batch",
            )
        clean[key] = text
    return clean


def refuse_changed_params(
    stored: Iterable[Any], values: Mapping[str, str], owner: str, hint: str
) -> None:
    """Raise :class:`Conflict` for the first stored ``(key, value)`` that ``values`` gives
    another value: a param, once written, never changes (a run's, a logged model's).

    Example:
        >>> refuse_changed_params([("lr", "0.1")], {"lr": "0.1"}, "run r1", "start a new run")
    """
    for key, value in stored:
        if value != values[key]:
            raise Conflict(
                f"param {key!r} of {owner} is already {value!r}; "
                f"it cannot be changed to {values[key]!r}",
                hint=hint,
            )
