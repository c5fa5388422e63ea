"""Searching runs and experiments, one page at a time.

Page tokens are opaque to callers: URL-safe base64 of a small JSON document holding the
offset of the next page. A token that does not decode is :class:`InvalidInput`.

Example:
    >>> from loopline.core.db import create_engine_for, upgrade
    >>> engine = create_engine_for("sqlite:///:memory:"); upgrade(engine)
    >>> search_runs(engine, filter="metrics.auc > 0.8").runs
    []
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from loopline.errors import InvalidInput, NotFound
from loopline.tracking.entities import ExperimentSearchResult, RunSearchResult, ViewType
from loopline.tracking.experiments import experiment_from_row
from loopline.tracking.search import order_query, parse_filter, parse_order_by, to_sql
from loopline.tracking.store import get_runs
from loopline.tracking.tables import experiments, runs

#: The most runs or experiments one page may hold (MLflow's limit).
MAX_RESULTS_LIMIT = 50_000


def encode_page_token(offset: int) -> str:
    """An opaque page token for ``offset``.

    Example:
        >>> decode_page_token(encode_page_token(100))
        100
    """
    return base64.urlsafe_b64encode(orjson.dumps({"offset": offset})).decode()


def decode_page_token(token: str | None) -> int:
    """The offset in a page token (0 for None); :class:`InvalidInput` for a bad token.

    Example:
        >>> decode_page_token(None)
        0
    """
    if not token:
        return 0
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token.encode()))
        offset = data["offset"]
        if not isinstance(offset, int) or offset < 0:
            raise ValueError(offset)
    except (binascii.Error, orjson.JSONDecodeError, ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(
            f"page token {token!r} is not valid",
            field="page_token",
            hint="pass the next_page_token of the previous page unchanged",
        ) from exc
    return offset


def _check_max_results(max_results: int) -> None:
    if not isinstance(max_results, int) or not 1 <= max_results <= MAX_RESULTS_LIMIT:
        raise InvalidInput(
            f"max_results must be between 1 and {MAX_RESULTS_LIMIT}, got {max_results!r}",
            field="max_results",
            hint="page through larger results with page_token",
        )


def _lifecycle(column: Any, view: ViewType) -> Any:
    if view == "active":
        return column == "active"
    if view == "deleted":
        return column == "deleted"
    if view == "all":
        return sa.true()
    raise InvalidInput(
        f"unknown view {view!r}", field="view", hint="use 'active', 'deleted' or 'all'"
    )


def search_runs(
    engine: Engine,
    *,
    experiment_ids: Sequence[int] | None = None,
    filter: str | None = None,
    order_by: Sequence[str] | None = None,
    max_results: int = 1000,
    page_token: str | None = None,
    view: ViewType = "active",
) -> RunSearchResult:
    """Runs matching an MLflow filter, ordered, one page at a time.

    ``experiment_ids=None`` searches every experiment. See :mod:`loopline.tracking.search`
    for the filter and ``order_by`` grammar.

    Example:
        >>> # search_runs(engine, experiment_ids=[1], filter="metrics.auc > 0.8",
        >>> #             order_by=["metrics.auc DESC"], max_results=10).runs
    """
    _check_max_results(max_results)
    comparisons = parse_filter(filter)
    keys = parse_order_by(list(order_by) if order_by else None)
    offset = decode_page_token(page_token)
    dialect = engine.dialect.name
    query = sa.select(runs.c.id).select_from(runs).where(_lifecycle(runs.c.lifecycle_stage, view))
    if experiment_ids is not None:
        query = query.where(runs.c.experiment_id.in_([int(i) for i in experiment_ids]))
    for cmp in comparisons:
        query = query.where(to_sql(cmp, dialect))
    query = order_query(query, keys).limit(max_results + 1).offset(offset)
    with engine.connect() as conn:
        ids = [row[0] for row in conn.execute(query)]
    more = len(ids) > max_results
    ids = ids[:max_results]
    token = encode_page_token(offset + max_results) if more else None
    return RunSearchResult(get_runs(engine, ids), token)


def experiment_ids_by_name(engine: Engine, names: Sequence[str]) -> list[int]:
    """The ids of the experiments named ``names`` (deleted ones too), in that order.

    :class:`NotFound` names every name that has no experiment.

    Example:
        >>> # experiment_ids_by_name(engine, ["Default"])  -> [0]
    """
    wanted = list(dict.fromkeys(names))
    by_name: dict[str, int] = {}
    with engine.connect() as conn:
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            query = sa.select(experiments.c.name, experiments.c.id).where(
                experiments.c.name.in_(chunk)
            )
            by_name.update({name: int(i) for name, i in conn.execute(query)})
    missing = [n for n in wanted if n not in by_name]
    if missing:
        raise NotFound(
            f"no experiment named {', '.join(repr(m) for m in sorted(missing))}",
            hint="list experiments with `loopline runs ls` or check the spelling",
        )
    return [by_name[n] for n in names]


def search_experiments(
    engine: Engine,
    *,
    names: Sequence[str] | None = None,
    name_like: str | None = None,
    view: ViewType = "active",
    max_results: int = 1000,
    page_token: str | None = None,
) -> ExperimentSearchResult:
    """Experiments by exact names and/or a case-insensitive LIKE pattern, by id.

    Example:
        >>> # search_experiments(engine, name_like="churn%").experiments
    """
    _check_max_results(max_results)
    offset = decode_page_token(page_token)
    query = sa.select(experiments).where(_lifecycle(experiments.c.lifecycle_stage, view))
    if names is not None:
        query = query.where(experiments.c.name.in_(list(names)))
    if name_like:
        query = query.where(experiments.c.name.ilike(name_like, escape="\\"))
    query = query.order_by(experiments.c.id).limit(max_results + 1).offset(offset)
    with engine.connect() as conn:
        rows = list(conn.execute(query))
        found = [experiment_from_row(conn, row) for row in rows[:max_results]]
    token = encode_page_token(offset + max_results) if len(rows) > max_results else None
    return ExperimentSearchResult(found, token)
