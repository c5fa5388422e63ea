"""The SQL for a parsed run search: each comparison as a clause, each order key as a sort.

:mod:`.search` turns MLflow's filter and ``order_by`` text into :class:`~.search.Comparison`
and :class:`~.search.OrderKey` values; this module turns them into SQLAlchemy for
:mod:`.query`, one joined table per metric, param or tag term. Every value is a bound
parameter (:func:`bound_value`): no text from the filter is ever pasted into SQL.

Example:
    >>> from loopline.tracking.search import parse_filter
    >>> bound_value(parse_filter("params.model LIKE 'lg%'")[0], "sqlite")
    'lg*'
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import NamedFromClause

from loopline.tracking._dialect import ilike, like_to_glob
from loopline.tracking.search import (
    DATASET_FIELDS,
    NULL_OPS,
    NUMERIC_ATTRIBUTES,
    SHOWN_TAGS,
    STRING_ATTRIBUTES,
    Comparison,
    OrderKey,
)
from loopline.tracking.tables import latest_metrics, params, run_inputs, runs, tags


def _attribute_column(key: str) -> ColumnElement[Any]:
    """The column (or expression) an attribute, or a tag of :data:`SHOWN_TAGS`, compares."""
    if key in NUMERIC_ATTRIBUTES:
        return NUMERIC_ATTRIBUTES[key]
    if key in STRING_ATTRIBUTES:
        return STRING_ATTRIBUTES[key]
    return SHOWN_TAGS[key]


def _string_clause(
    dialect: str, column: ColumnElement[Any], op: str, value: Any
) -> ColumnElement[bool]:
    # ``value`` is what is bound (see bound_value): for LIKE on SQLite, the GLOB pattern.
    if op == "=":
        return column.__eq__(value)
    if op == "!=":
        return column.__ne__(value)
    if op == "LIKE":
        if dialect == "sqlite":  # SQLite's LIKE ignores case; GLOB is the same match with case
            return column.op("GLOB", is_comparison=True)(value)
        return column.like(value, escape="\\")
    if op == "ILIKE":
        return ilike(column, value)
    if op == "IN":
        return column.in_(list(value))
    return column.not_in(list(value))


def _numeric_clause(column: ColumnElement[Any], op: str, value: Any) -> ColumnElement[bool]:
    ops: dict[str, Any] = {
        "=": column.__eq__,
        "!=": column.__ne__,
        "<": column.__lt__,
        "<=": column.__le__,
        ">": column.__gt__,
        ">=": column.__ge__,
    }
    clause: ColumnElement[bool] = ops[op](value)
    return clause


def bound_value(cmp: Comparison, dialect: str) -> float | str | tuple[str, ...]:
    """The value bound for ``cmp`` (see :func:`add_comparison`): its value, as a GLOB for
    SQLite's LIKE.

    Example:
        >>> from loopline.tracking.search import parse_filter
        >>> bound_value(parse_filter("params.m LIKE 'lg%'")[0], "sqlite")
        'lg*'
    """
    if cmp.op == "LIKE" and dialect == "sqlite":
        return like_to_glob(str(cmp.value))
    return cmp.value


def add_comparison(
    query: sa.Select[Any], cmp: Comparison, dialect: str, key: Any, value: Any, n: int
) -> sa.Select[Any]:
    """``query`` on ``runs`` narrowed to the runs ``cmp`` keeps, comparing with ``key`` and
    ``value``: bound parameters standing for the comparison's own (a statement is built
    once per filter shape, see :mod:`loopline.tracking.query`); for ``IN`` ``value`` is a
    list of them. ``n`` numbers the comparison (it names the join of a keyed one).

    A metric, param or tag comparison joins the run's row of that key: a run has at most
    one row per (run, key) in each of these tables, so the join never repeats a run, and
    the database can start from either side (as ``WHERE runs.id IN (subquery)`` SQLite
    built the whole list of matching ids first, reading every row of the key, which took
    longer than the rest of a search page). A run has many inputs: a dataset comparison
    stays a subquery.

    Example:
        >>> from loopline.tracking.search import parse_filter
        >>> cmp = parse_filter("params.model = 'lgbm'")[0]
        >>> q = add_comparison(sa.select(runs.c.id), cmp, "sqlite", cmp.key, cmp.value, 0)
        >>> "JOIN params AS filter_0" in str(q)
        True
    """
    if cmp.kind == "metric":
        metric = filter_join(cmp.kind, n)
        # A NaN is stored as 0.0 with is_nan set, as MLflow stores it. NaN compares false
        # with every number except by !=, which it always satisfies (MLflow's rule, IEEE
        # 754's too): the stored 0.0 must never match, and a NaN must match !=.
        if cmp.op == "!=":
            matches = sa.or_(metric.c.is_nan.is_(True), metric.c.value != value)
        else:
            matches = sa.and_(
                metric.c.is_nan.is_(False), _numeric_clause(metric.c.value, cmp.op, value)
            )
        on = sa.and_(metric.c.run_id == runs.c.id, metric.c.key == key, matches)
        return query.join(metric, on)
    if cmp.op in NULL_OPS and cmp.kind in ("param", "tag"):  # a row of that key at all?
        keyed = _KEYED_TABLES[cmp.kind]
        there = sa.exists().where(keyed.c.run_id == runs.c.id, keyed.c.key == key)
        return query.where(there if cmp.op == "IS NOT NULL" else ~there)
    if cmp.kind in ("param", "tag"):
        table = filter_join(cmp.kind, n)
        on = sa.and_(
            table.c.run_id == runs.c.id,
            table.c.key == key,
            _string_clause(dialect, table.c.value, cmp.op, value),
        )
        return query.join(table, on)
    if cmp.kind == "dataset":
        field = DATASET_FIELDS[cmp.key]
        sub = sa.select(run_inputs.c.run_id).where(_string_clause(dialect, field, cmp.op, value))
        return query.where(runs.c.id.in_(sub))
    if cmp.key in NUMERIC_ATTRIBUTES:
        return query.where(_numeric_clause(NUMERIC_ATTRIBUTES[cmp.key], cmp.op, value))
    column = _attribute_column(cmp.key)
    if cmp.op in NULL_OPS:  # a tag of SHOWN_TAGS: MLflow's wire shows no empty name
        unset = sa.or_(column.is_(None), column == "")
        return query.where(unset if cmp.op == "IS NULL" else ~unset)
    return query.where(_string_clause(dialect, column, cmp.op, value))


_KEYED_TABLES = {"metric": latest_metrics, "param": params, "tag": tags}


@lru_cache(maxsize=64)
def filter_join(kind: str, n: int) -> NamedFromClause[Any]:
    """The joined table of the ``n``-th comparison of a filter on a metric, param or tag.

    The same object each time, so that :func:`order_query` can order by a join that
    :func:`add_comparison` made.

    Example:
        >>> str(filter_join("param", 0).c.value)
        'filter_0.value'
    """
    return _KEYED_TABLES[kind].alias(f"filter_{n}")


def order_query(
    query: sa.Select[Any],
    keys: list[OrderKey],
    bound_keys: Sequence[Any] | None = None,
    joined: Sequence[int | None] | None = None,
) -> sa.Select[Any]:
    """Add ``ORDER BY`` for ``keys`` to a query on ``runs``, then MLflow's tie-breakers.

    Missing metrics, params and tags sort last in either direction, and NaN metrics just
    before them (as in MLflow); ties are broken by start time (newest first), then run id.
    ``bound_keys`` (one per key) are bound parameters standing for the metric, param or
    tag names. ``joined`` (one per key) names the comparison of the filter on the same
    metric, param or tag, if any, whose rows always hold a value (for a metric, not NaN:
    not a ``!=``): its join (:func:`filter_join`) holds the row the key's own join would
    find, so the query orders by it instead of joining the table once more.

    Example:
        >>> from loopline.tracking.search import parse_order_by
        >>> q = order_query(sa.select(runs.c.id), parse_order_by(["metrics.auc DESC"]))
        >>> "ORDER BY" in str(q)
        True
    """
    clauses: list[Any] = []
    for n, key in enumerate(keys):
        column: ColumnElement[Any]
        if key.kind == "attribute":
            column = _attribute_column(key.key)
        elif joined is not None and (filtered := joined[n]) is not None:
            # Every comparison is false on NULL, so the filter's row always has a value:
            # no "missing last" term, and SQLite can walk the filter's (key, value) index
            # in order instead of sorting every matching run.
            column = filter_join(key.kind, filtered).c.value
            clauses.append(column.asc() if key.ascending else column.desc())
            continue
        else:
            alias = _KEYED_TABLES[key.kind].alias(f"order_{n}")
            name = key.key if bound_keys is None else bound_keys[n]
            on = sa.and_(alias.c.run_id == runs.c.id, alias.c.key == name)
            query = query.outerjoin(alias, on)
            column = alias.c.value
            if key.kind == "metric":
                # MLflow's order in either direction: numbers, then NaN (stored as 0.0
                # with is_nan set), then runs without the metric.
                clauses.append(
                    sa.case((alias.c.is_nan.is_(True), 1), (column.is_(None), 2), else_=0)
                )
                clauses.append(column.asc() if key.ascending else column.desc())
                continue
        clauses.append(sa.case((column.is_(None), 1), else_=0))
        clauses.append(column.asc() if key.ascending else column.desc())
    clauses += [runs.c.start_time.desc(), runs.c.id.asc()]
    return query.order_by(*clauses)
