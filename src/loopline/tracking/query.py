"""Searching runs and experiments, one page at a time.

Page tokens are opaque to callers: URL-safe base64 of a small JSON document holding the
offset of the next page. A token that does not decode is :class:`InvalidInput`.

A run search is built and compiled by SQLAlchemy once per *shape* (which comparisons,
operators, list lengths and order keys; never the keys or values, which are all bound
parameters) and then run on the driver's cursor: building and compiling cost more than
the query itself. Nothing about results is cached.

Example:
    >>> from loopline.core.db import create_engine_for
    >>> from loopline.core.db_migrations import upgrade
    >>> engine = create_engine_for("sqlite:///:memory:"); upgrade(engine)
    >>> search_runs(engine, filter="metrics.auc > 0.8").runs
    []
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Dialect, Engine

from loopline.core.bulk import driver_fetchall
from loopline.core.columns import MAX_INTEGER
from loopline.core.db import reading
from loopline.errors import InvalidInput, NotFound
from loopline.tracking._dialect import like_pattern_too_long
from loopline.tracking.entities import ExperimentSearchResult, RunSearchResult, ViewType
from loopline.tracking.experiments import experiments_from_rows
from loopline.tracking.run_records import ID_LIST, get_runs, list_value
from loopline.tracking.search import NULL_OPS, Comparison, OrderKey, parse_filter, parse_order_by
from loopline.tracking.search_sql import add_comparison, bound_value, order_query
from loopline.tracking.tables import experiments, runs
from loopline.tracking.validation import MAX_RESULTS_LIMIT as MAX_RESULTS_LIMIT
from loopline.tracking.validation import check_max_results

#: The largest offset a page token may hold (PostgreSQL's and SQLite's OFFSET are 64-bit).
MAX_OFFSET = 2**62


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
        # A bool is an int to Python; past MAX_OFFSET the database cannot bind it (SQLite
        # raised OverflowError, a 500) and no result is that long anyway.
        if type(offset) is not int or not 0 <= offset <= MAX_OFFSET:
            raise ValueError(offset)
    except (binascii.Error, orjson.JSONDecodeError, ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(
            f"page token {token!r} is not valid",
            field="page_token",
            hint="pass the next_page_token of the previous page unchanged",
        ) from exc
    return offset


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
    check_max_results(max_results)
    comparisons = parse_filter(filter)
    keys = parse_order_by(list(order_by) if order_by else None)
    offset = decode_page_token(page_token)
    if view not in ("active", "deleted", "all"):
        _lifecycle(runs.c.lifecycle_stage, view)  # raises, naming the field
    exp_ids = None if experiment_ids is None else [int(i) for i in experiment_ids]
    if exp_ids is not None:
        # An id past the column's range names no experiment (and would not bind).
        exp_ids = [i for i in exp_ids if 0 <= i <= MAX_INTEGER]
        if not exp_ids and experiment_ids:
            return RunSearchResult([], None)
    dialect = engine.dialect.name
    order_shape = tuple(_order_shape(k, comparisons) for k in keys)
    statement = _page_statement(
        engine.dialect,
        view,
        None if exp_ids is None else len(exp_ids),
        tuple(_comparison_shape(c) for c in comparisons),
        order_shape,
    )
    values: dict[str, Any] = {"lim": max_results + 1, "off": offset}
    for j, exp_id in enumerate(exp_ids or ()):
        values[f"e{j}"] = exp_id
    for n, cmp in enumerate(comparisons):
        if cmp.kind in _KEYED:
            values[f"k{n}"] = cmp.key
        if cmp.op in NULL_OPS:  # no value to compare with
            continue
        value = bound_value(cmp, dialect)
        if isinstance(value, tuple):
            values.update({f"v{n}_{j}": item for j, item in enumerate(value)})
        else:
            values[f"v{n}"] = value
    for n, (key, shape) in enumerate(zip(keys, order_shape, strict=True)):
        if key.kind in _KEYED and shape[3] is None:  # else ordered by a filter's join
            values[f"o{n}"] = key.key
    ids = [row[0] for row in _fetch(engine, statement.sql, _bind(statement, values))]
    more = len(ids) > max_results
    ids = ids[:max_results]
    token = encode_page_token(offset + max_results) if more else None
    return RunSearchResult(get_runs(engine, ids), token)


#: Comparison and order kinds whose key (a metric, param or tag name) is a bound value.
_KEYED = ("metric", "param", "tag")


@dataclass(frozen=True)
class _Statement:
    """A page query compiled for one filter shape: its SQL, and how to bind its values."""

    sql: str
    #: The order of the driver's positional placeholders (None: it takes names).
    positions: tuple[str, ...] | None
    #: Values SQLAlchemy bound by itself (the 1 and 0 of the CASE of an order key).
    constants: dict[str, Any]


def _comparison_shape(cmp: Comparison) -> tuple[str, str, str, int | None]:
    """What of a comparison the SQL depends on; keys and values are bound, not part of it."""
    size = len(cmp.value) if isinstance(cmp.value, tuple) else None
    return cmp.kind, cmp.op, "" if cmp.kind in _KEYED else cmp.key, size


def _order_shape(
    key: OrderKey, comparisons: Sequence[Comparison]
) -> tuple[str, str, bool, int | None]:
    """What of an order key the SQL depends on, with the comparison whose join it reuses."""
    if key.kind not in _KEYED:
        return key.kind, key.key, key.ascending, None
    # A metric's != keeps NaN values, which need their own place in the order.
    same = (
        n
        for n, c in enumerate(comparisons)
        if (c.kind, c.key) == (key.kind, key.key)
        and (c.kind, c.op) != ("metric", "!=")
        and c.op not in NULL_OPS  # a test in WHERE, no join to order by
    )
    return key.kind, "", key.ascending, next(same, None)


@lru_cache(maxsize=256)
def _page_statement(
    dialect: Dialect,
    view: ViewType,
    experiments: int | None,
    filter_shape: tuple[tuple[str, str, str, int | None], ...],
    order_shape: tuple[tuple[str, str, bool, int | None], ...],
) -> _Statement:
    """The page query for one shape of search, built and compiled once.

    Building and compiling the query through SQLAlchemy cost more than running it; every
    key and value is a named bound parameter (``k0``, ``v0``, ``v0_1``, ``o0``, ``e0``,
    ``lim``, ``off``), so one compiled statement serves every search of the same shape.
    """
    query = sa.select(runs.c.id).select_from(runs).where(_lifecycle(runs.c.lifecycle_stage, view))
    if experiments == 0:  # SQLAlchemy renders an empty IN at execution time only
        query = query.where(sa.false())
    elif experiments is not None:
        query = query.where(
            runs.c.experiment_id.in_([sa.bindparam(f"e{j}") for j in range(experiments)])
        )
    for n, (kind, op, key, size) in enumerate(filter_shape):
        value: Any
        if size is None:
            value = sa.bindparam(f"v{n}")
        else:
            value = [sa.bindparam(f"v{n}_{j}") for j in range(size)]
        cmp = Comparison(kind, key, op, "", 0)
        query = add_comparison(query, cmp, dialect.name, sa.bindparam(f"k{n}"), value, n)
    keys = [OrderKey(kind, key, ascending) for kind, key, ascending, _ in order_shape]
    bound: list[Any] = [sa.bindparam(f"o{n}") for n in range(len(keys))]
    joined = [filtered for *_, filtered in order_shape]
    query = order_query(query, keys, bound, joined)
    query = query.limit(sa.bindparam("lim")).offset(sa.bindparam("off"))
    compiled = query.compile(dialect=dialect)
    positions = tuple(compiled.positiontup or ()) if compiled.positional else None
    constants = {
        name: bind.value for bind, name in compiled.bind_names.items() if bind.value is not None
    }
    return _Statement(str(compiled), positions, constants)


def _bind(statement: _Statement, values: dict[str, Any]) -> Any:
    """The driver's parameters for a compiled page query: a tuple, or names for PostgreSQL."""
    bound = {**statement.constants, **values}
    if statement.positions is None:
        return bound
    return tuple(bound[name] for name in statement.positions)


def _fetch(engine: Engine, sql: str, args: Any) -> list[Any]:
    """The rows of ``sql`` run on the driver's cursor (errors raised as SQLAlchemy's)."""
    with reading(engine) as conn:
        return driver_fetchall(conn, sql, args)


def experiment_ids_by_name(engine: Engine, names: Sequence[str]) -> list[int]:
    """The ids of the experiments named ``names`` (deleted ones too), in that order.

    :class:`NotFound` names every name that has no experiment.

    Example:
        >>> # experiment_ids_by_name(engine, ["Default"])  -> [0]
    """
    wanted = list(dict.fromkeys(names))
    dialect = engine.dialect.name
    sql = f'SELECT "name", "id" FROM "experiments" WHERE "name" {ID_LIST[dialect]}'
    by_name: dict[str, int] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        rows = _fetch(engine, sql, (list_value(dialect, chunk),))
        by_name.update({name: int(i) for name, i in rows})
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
    check_max_results(max_results)
    too_long = like_pattern_too_long(name_like) if name_like else None
    if too_long is not None:
        raise InvalidInput(too_long, field="name_like", hint="shorten the pattern")
    offset = decode_page_token(page_token)
    query = sa.select(experiments).where(_lifecycle(experiments.c.lifecycle_stage, view))
    if names is not None:
        query = query.where(experiments.c.name.in_(list(names)))
    if name_like:
        query = query.where(experiments.c.name.ilike(name_like, escape="\\"))
    query = query.order_by(experiments.c.id).limit(max_results + 1).offset(offset)
    with reading(engine) as conn:
        rows = list(conn.execute(query))
        found = experiments_from_rows(conn, rows[:max_results])
    token = encode_page_token(offset + max_results) if len(rows) > max_results else None
    return ExperimentSearchResult(found, token)
