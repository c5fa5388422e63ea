"""The filter and order strings MLflow's client sends for searches evaluated on entities.

Experiments, registered models, model versions and logged models are few (not metric
points), so their searches read every candidate and apply the filter in Python. A filter
is clauses joined by AND, each ``key op value``:

- a string attribute or a tag (``tags.key``, ``tag.`key```): ``=``, ``!=``, ``LIKE``
  (case-sensitive), ``ILIKE``, ``NOT LIKE``, ``IN ('a', 'b')``, ``NOT IN (...)``, and
  ``IS NULL`` / ``IS NOT NULL``, on a quoted value;
- a numeric attribute (``version_number``, ``creation_timestamp``...): ``=``, ``!=``,
  ``<``, ``<=``, ``>``, ``>=`` on a whole number, quoted or not;
- where the search allows them (logged models): a param (``params.key``) with the string
  operators, and a metric (``metrics.key``) with the numeric ones on any number; an entity
  matches a metric clause when one of its values for the key does.

:func:`compile_filter` checks every clause against the entity's fields once, so a bad key,
operator or value is an :class:`InvalidInput` naming it even when nothing would match.
:func:`sort` orders entities by MLflow ``order_by`` strings (``"name ASC"``).

Example:
    >>> f = compile_filter("name LIKE 'ch%' AND tag.`team` = 'growth'", {"name": "str"})
    >>> f.matches({"name": "churn"}, {"team": "growth"})
    True
    >>> compile_filter("version_number >= 2", {"version_number": "int"}).matches(
    ...     {"version_number": 3}, {})
    True
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, TypeVar

from loopline.errors import InvalidInput
from loopline.tracking._dialect import like_pattern_too_long

Kind = Literal["str", "int", "float"]
#: What a clause compares: an attribute of the entity, or one of its tags, params, metrics.
Entity = Literal["attribute", "tag", "param", "metric"]
T = TypeVar("T")

_CLAUSE = re.compile(
    r"""\s*(?P<key>(?:(?:tags?|params?|metrics?)\.)?(?:`[^`]+`|"[^"]+"|[A-Za-z_][\w.]*))\s*
        (?:
            (?P<null>IS\s+NOT\s+NULL|IS\s+NULL)
          | (?P<op>!=|=|<>|<=|>=|<|>|NOT\s+LIKE|LIKE|ILIKE|NOT\s+IN|IN)\s*
            (?P<value>'(?:[^']|'')*'|"(?:[^"]|"")*"
              | -?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?
              | \((?P<items>[^)]*)\))
        )\s*""",
    re.IGNORECASE | re.VERBOSE,
)
_ITEM = re.compile(r"""\s*('(?:[^']|'')*'|"(?:[^"]|"")*")\s*(?:,|$)""")
_AND = re.compile(r"\s+AND\s+", re.IGNORECASE)
_ATTRIBUTE_PREFIX = re.compile(r"^attributes?\.", re.IGNORECASE)
_NUMERIC_OPS = frozenset({"=", "!=", "<", "<=", ">", ">="})
_STRING_OPS = frozenset(
    {"=", "!=", "LIKE", "NOT LIKE", "ILIKE", "IN", "NOT IN", "IS NULL", "IS NOT NULL"}
)
_IS_PROMPT = "mlflow.prompt.is_prompt"
_EMPTY: Mapping[str, Any] = MappingProxyType({})
_ORDER = re.compile(
    r"""\s*(?P<key>`[^`]+`|"[^"]+"|[A-Za-z_][\w.]*)(?:\s+(?P<dir>ASC|DESC))?\s*""",
    re.IGNORECASE | re.VERBOSE,
)


_ENTITY_PREFIX = re.compile(r"^(tags?|params?|metrics?)\.", re.IGNORECASE)
_ENTITIES: dict[str, Entity] = {"tag": "tag", "param": "param", "metric": "metric"}
_INTEGER = re.compile(r"-?[0-9]+")
_NUMBER = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


@dataclass(frozen=True)
class Clause:
    """One comparison, on an attribute of the entity or on one of its tags, params, metrics.

    ``value`` is a string, a number (numeric attributes, metrics), a tuple of strings
    (``IN``) or None (``IS NULL``).
    """

    key: str
    entity: Entity
    op: str
    value: str | int | float | tuple[str, ...] | None

    @property
    def is_tag(self) -> bool:
        """Whether the clause compares a tag."""
        return self.entity == "tag"

    @property
    def name(self) -> str:
        """The key as the filter names it (``params.lr``), for messages.

        Example:
            >>> parse("params.lr = '0.1'")[0].name
            'params.lr'
        """
        return self.key if self.entity == "attribute" else f"{self.entity}s.{self.key}"


def _split_and(text: str) -> list[str]:
    parts, buf, quote = [], [], ""
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            buf.append(ch)
            if ch == quote:
                quote = ""
        elif ch in "'\"`":
            quote = ch
            buf.append(ch)
        else:
            m = _AND.match(text, i)
            if m:
                parts.append("".join(buf))
                buf = []
                i = m.end()
                continue
            buf.append(ch)
        i += 1
    parts.append("".join(buf))
    return parts


def _unquote(raw: str) -> str:
    return raw[1:-1].replace(raw[0] * 2, raw[0])


def _bad(text: str, pos: int, what: str, hint: str) -> InvalidInput:
    return InvalidInput(f"filter {text!r} at position {pos}: {what}", field="filter", hint=hint)


def _list_items(text: str, pos: int, inner: str) -> tuple[str, ...]:
    items: list[str] = []
    at = 0
    while at < len(inner):
        m = _ITEM.match(inner, at)
        if not m or m.end() == at:
            raise _bad(
                text, pos, f"cannot read the list ({inner})", "write IN ('a', 'b') with quotes"
            )
        items.append(_unquote(m.group(1)))
        at = m.end()
    if not items:
        raise _bad(text, pos, "the list is empty", "give at least one value: IN ('a')")
    return tuple(items)


def _whole(text: str, pos: int, digits: str) -> int:
    """``digits`` as an int; Python refuses to read more than 4,300 digits (a 500 before)."""
    try:
        return int(digits)
    except ValueError as exc:
        raise _bad(
            text, pos, f"a number of {len(digits)} digits", "write a number of fewer digits"
        ) from exc


def parse(text: str | None) -> list[Clause]:
    """Parse a filter into clauses; :class:`InvalidInput` pointing at the bad clause.

    Example:
        >>> parse("name = 'a'")[0].value
        'a'
        >>> parse("name IN ('a', 'b')")[0].value
        ('a', 'b')
    """
    if not text or not text.strip():
        return []
    clauses = []
    pos = 0
    for part in _split_and(text):
        m = _CLAUSE.fullmatch(part)
        if not m:
            raise _bad(
                text,
                pos,
                f"cannot read {part.strip()!r}",
                "write clauses like name = 'x', version_number > 2 or tags.`k` = 'v' joined by AND",
            )
        key = _ATTRIBUTE_PREFIX.sub("", m.group("key"))
        entity: Entity = "attribute"
        prefix = _ENTITY_PREFIX.match(key)
        if prefix:
            entity = _ENTITIES[prefix.group(1).lower().rstrip("s")]
            key = key[prefix.end() :]
        key = key.strip('`"')
        value: str | int | float | tuple[str, ...] | None
        if m.group("null"):
            op = re.sub(r"\s+", " ", m.group("null").upper())
            value = None
        else:
            op = re.sub(r"\s+", " ", m.group("op").upper()).replace("<>", "!=")
            raw = m.group("value")
            if m.group("items") is not None:
                value = _list_items(text, pos, m.group("items"))
            elif raw[0] in "'\"":
                value = _unquote(raw)
            elif _INTEGER.fullmatch(raw):
                value = _whole(text, pos, raw)
            else:
                value = float(raw)  # past the largest float: inf, as Python reads it
            if isinstance(value, tuple) != (op in ("IN", "NOT IN")):
                raise _bad(
                    text,
                    pos,
                    f"{op} takes {'a list' if op in ('IN', 'NOT IN') else 'one value'}",
                    "write IN ('a', 'b') for a list, = 'a' for one value",
                )
        clauses.append(Clause(key, entity, op, value))
        pos += len(part) + 5
    return clauses


def _like(pattern: str, value: str, ignore_case: bool) -> bool:
    """``value LIKE pattern`` (``%`` any run, ``_`` one character), in time linear in each.

    Not one regular expression with ``.*`` per ``%``: ``'%a%a%a%a%a%a%b'`` against a name of
    60 ``a`` took Python's backtracking 2 s (one more ``%a`` multiplies it again). Every
    piece between ``%`` matches a fixed number of characters, so the leftmost place for
    each middle piece is the right one: the first piece anchors at the start, the last at
    the end, the others are found in turn between them.
    """
    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    pieces = [
        re.compile("".join("." if c == "_" else re.escape(c) for c in piece), flags)
        for piece in pattern.split("%")
    ]
    if len(pieces) == 1:
        return pieces[0].fullmatch(value) is not None
    first = pieces[0].match(value)
    end = len(value) - len(pattern.rsplit("%", 1)[1])  # where the last piece must start
    if first is None or end < first.end() or pieces[-1].fullmatch(value, end) is None:
        return False
    pos = first.end()
    for piece in pieces[1:-1]:
        found = piece.search(value, pos, end)
        if found is None:
            return False
        pos = found.end()
    return True


def _not_supported(clause: Clause, fields: Mapping[str, Kind], extra: Collection[Entity]) -> Any:
    others = " or ".join(f"{e}s.<key>" for e in ("tag", *sorted(extra)))
    return InvalidInput(
        f"filter key {clause.name!r} is not supported",
        field="filter",
        hint=f"use one of {sorted(fields)} or {others}",
    )


def _check(clause: Clause, fields: Mapping[str, Kind], extra: Collection[Entity]) -> Clause:
    """``clause`` with its value typed for its field; InvalidInput when it cannot apply."""
    kind: Kind = "str"
    if clause.entity == "attribute":
        if clause.key not in fields:
            raise _not_supported(clause, fields, extra)
        kind = fields[clause.key]
    elif clause.entity != "tag" and clause.entity not in extra:
        raise _not_supported(clause, fields, extra)
    elif clause.entity == "metric":
        kind = "float"
    name = clause.name
    allowed = _STRING_OPS if kind == "str" else _NUMERIC_OPS
    if clause.op not in allowed:
        raise InvalidInput(
            f"filter operator {clause.op} does not apply to {name!r}",
            field="filter",
            hint=f"on {name!r} use one of {', '.join(sorted(allowed))}",
        )
    # MLflow's client quotes numbers or not: both name the same number.
    number = clause.value
    if kind == "int":
        if isinstance(number, str) and _INTEGER.fullmatch(number):
            number = _whole(repr(clause.value), 0, number)
        if not isinstance(number, int):
            raise InvalidInput(
                f"filter value {clause.value!r} for {name!r} is not a whole number",
                field="filter",
                hint=f"write {name} {clause.op} 2",
            )
        return Clause(clause.key, clause.entity, clause.op, number)
    if kind == "float":
        if isinstance(number, str) and _NUMBER.fullmatch(number):
            number = float(number)  # a string reads past the largest float as inf
        if isinstance(number, int):
            # An int past the largest float does not convert (OverflowError): its string does.
            number = float(str(number))
        if not isinstance(number, float):
            raise InvalidInput(
                f"filter value {clause.value!r} for {name!r} is not a number",
                field="filter",
                hint=f"write {name} {clause.op} 0.5",
            )
        return Clause(clause.key, clause.entity, clause.op, number)
    if isinstance(clause.value, int | float):
        raise InvalidInput(
            f"filter value {clause.value} for {name!r} must be quoted",
            field="filter",
            hint=f"write {name} {clause.op} '{clause.value}'",
        )
    too_long = like_pattern_too_long(str(clause.value)) if "LIKE" in clause.op else None
    if too_long is not None:
        raise InvalidInput(
            f"filter value for {name!r}: {too_long}",
            field="filter",
            hint="shorten the pattern",
        )
    return clause


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _holds(clause: Clause, actual: Any) -> bool:
    op, value = clause.op, clause.value
    if op == "IS NULL":
        return actual is None
    if op == "IS NOT NULL":
        return actual is not None
    if actual is None:  # as in MLflow: an absent tag or value matches no comparison
        return False
    if op in ("LIKE", "ILIKE"):
        return _like(str(value), str(actual), op == "ILIKE")
    if op == "NOT LIKE":
        return not _like(str(value), str(actual), False)
    if op in ("IN", "NOT IN"):
        listed = value if isinstance(value, tuple) else ()
        return (actual in listed) == (op == "IN")
    return _COMPARE[op](actual, value)


@dataclass(frozen=True)
class Filter:
    """Checked clauses of one filter string; :meth:`matches` tests one entity."""

    clauses: tuple[Clause, ...]

    def matches(
        self,
        attrs: Mapping[str, Any],
        tags: Mapping[str, str],
        params: Mapping[str, str] = _EMPTY,
        metrics: Mapping[str, Sequence[float]] = _EMPTY,
    ) -> bool:
        """Whether an entity with ``attrs``, ``tags``, ``params`` and ``metrics`` (each key's
        values) satisfies every clause.

        Example:
            >>> compile_filter("name != 'a'", {"name": "str"}).matches({"name": "b"}, {})
            True
            >>> compile_filter("metrics.acc > 0.5", {}, extra=["metric"]).matches(
            ...     {}, {}, metrics={"acc": [0.4, 0.9]})
            True
        """
        for c in self.clauses:
            if c.entity == "metric":
                # As in MLflow, any of the entity's values for the key may satisfy it; a NaN
                # satisfies no comparison (v == v is False only for NaN).
                if not any(_holds(c, v) for v in metrics.get(c.key, ()) if v == v):
                    return False
                continue
            if c.entity == "tag":
                # MLflow 3's client hides prompts with tags.`mlflow.prompt.is_prompt` != 'true';
                # a model without the tag is not a prompt (MLflow's own special case).
                actual = tags.get(c.key, "false" if c.key == _IS_PROMPT else None)
            elif c.entity == "param":
                actual = params.get(c.key)
            else:
                actual = attrs.get(c.key)
            if not _holds(c, actual):
                return False
        return True

    def uses(self, entity: Entity) -> bool:
        """Whether a clause compares an ``entity`` (``"metric"``...).

        Example:
            >>> compile_filter("params.lr = '1'", {}, extra=["param"]).uses("param")
            True
        """
        return any(c.entity == entity for c in self.clauses)

    def equals(self, key: str) -> str | None:
        """The value an attribute must equal (``key = 'x'``), to narrow the candidates.

        Example:
            >>> compile_filter("name = 'a'", {"name": "str"}).equals("name")
            'a'
        """
        for c in self.clauses:
            if (
                c.entity == "attribute"
                and c.key == key
                and c.op == "="
                and isinstance(c.value, str)
            ):
                return c.value
        return None


def compile_filter(
    text: str | None, fields: Mapping[str, Kind], extra: Collection[Entity] = ()
) -> Filter:
    """Parse ``text`` and check it against the entity's ``fields`` (name -> kind); tags are
    always allowed, params and metrics when ``extra`` names them.

    Example:
        >>> compile_filter("version_number = '2'", {"version_number": "int"}).clauses[0].value
        2
        >>> compile_filter("metrics.auc >= '0.5'", {}, extra=["metric"]).clauses[0].value
        0.5
    """
    return Filter(tuple(_check(c, fields, extra) for c in parse(text)))


def parse_order_by(order_by: Sequence[str] | None, fields: Sequence[str]) -> list[tuple[str, bool]]:
    """``(field, ascending)`` for each ``"key [ASC|DESC]"``; InvalidInput naming a bad one.

    Example:
        >>> parse_order_by(["name DESC", "creation_time"], ["name", "creation_time"])
        [('name', False), ('creation_time', True)]
    """
    out: list[tuple[str, bool]] = []
    for text in order_by or []:
        m = _ORDER.fullmatch(text or "")
        key = _ATTRIBUTE_PREFIX.sub("", m.group("key")).strip('`"') if m else ""
        if not m or key not in fields:
            raise InvalidInput(
                f"order_by {text!r} is not supported",
                field="order_by",
                hint=f"order by one of {', '.join(fields)}, then ASC or DESC",
            )
        if any(seen == key for seen, _ in out):
            raise InvalidInput(
                f"order_by names {key!r} twice", field="order_by", hint="name each field once"
            )
        out.append((key, (m.group("dir") or "ASC").upper() == "ASC"))
    return out


def sort(
    items: Sequence[T], keys: Sequence[tuple[str, bool]], value: Callable[[T, str], Any]
) -> list[T]:
    """``items`` ordered by ``keys`` (``(field, ascending)``, first is most significant);
    ``value(item, field)`` reads a field. Missing values (None) come last either way.

    Example:
        >>> sort([{"n": 2}, {"n": None}, {"n": 1}], [("n", False)], lambda d, k: d[k])
        [{'n': 2}, {'n': 1}, {'n': None}]
    """
    out = list(items)
    # Stable sorts from the least significant key up give the combined order.
    for field_name, ascending in reversed(keys):
        present = [i for i in out if value(i, field_name) is not None]
        absent = [i for i in out if value(i, field_name) is None]
        present.sort(key=lambda i: value(i, field_name), reverse=not ascending)
        out = present + absent
    return out


def tie_break(order: list[tuple[str, bool]], *last: tuple[str, bool]) -> list[tuple[str, bool]]:
    """``order`` followed by each of ``last`` whose field it does not order on yet (MLflow's
    tie-breakers, so that pages never overlap).

    Example:
        >>> tie_break([("name", False)], ("name", True), ("version_number", False))
        [('name', False), ('version_number', False)]
    """
    ordered = {key for key, _ in order}
    return [*order, *(item for item in last if item[0] not in ordered)]


def search(
    items: Sequence[T],
    *,
    attrs: Callable[[T], Mapping[str, Any]],
    tags: Callable[[T], Mapping[str, str]],
    where: Filter,
    order: Sequence[tuple[str, bool]],
    offset: int,
    limit: int,
    order_value: Callable[[T, Mapping[str, Any], str], Any] | None = None,
    params: Callable[[T], Mapping[str, str]] | None = None,
    metrics: Callable[[T], Mapping[str, Sequence[float]]] | None = None,
) -> tuple[list[T], int | None]:
    """One page of ``items`` that match ``where``, in ``order``; and the offset of the next
    page (None after the last). Each item's ``attrs`` are read once, for the filter and the
    order; ``order_value(item, attrs, field)`` orders a field another way than it filters.
    ``params`` and ``metrics`` read what ``params.*`` and ``metrics.*`` clauses compare.

    Example:
        >>> rows = [{"n": "b"}, {"n": "a"}, {"n": "c"}]
        >>> search(rows, attrs=dict, tags=lambda r: {}, where=compile_filter(None, {}),
        ...        order=[("n", True)], offset=0, limit=2)
        ([{'n': 'a'}, {'n': 'b'}], 2)
    """
    found = [(item, attrs(item)) for item in items]
    hits = [
        (item, a)
        for item, a in found
        if where.matches(
            a,
            tags(item),
            params(item) if params is not None and where.uses("param") else _EMPTY,
            metrics(item) if metrics is not None and where.uses("metric") else _EMPTY,
        )
    ]
    if order_value is None:
        hits = sort(hits, order, lambda hit, key: hit[1][key])
    else:
        value = order_value
        hits = sort(hits, order, lambda hit, key: value(hit[0], hit[1], key))
    page = [item for item, _ in hits[offset : offset + limit]]
    return page, (offset + limit if offset + limit < len(hits) else None)
