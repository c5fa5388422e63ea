"""MLflow's run-search grammar: a tokenizer and a recursive-descent parser (the SQL for what
they parse is :mod:`.search_sql`).

Filter grammar (keywords are case-insensitive)::

    filter      := AND* comparison ( AND+ comparison )* AND*
    comparison  := entity operator value
    entity      := prefix "." key            e.g. metrics.auc, params.`max depth`
                 | attribute                  e.g. status (same as attributes.status)
    prefix      := metrics | params | tags | attributes | datasets   (singular forms too;
                   attr and run mean attributes), bare or back-ticked (`metrics`.auc)
    key         := name | `back-ticked` | "double-quoted" | 'single-quoted'
    operator    := = | != | <> | < | <= | > | >= | LIKE | ILIKE | IN | NOT IN
                 | IS NULL | IS NOT NULL      (params and tags; no value follows)
    value       := number | 'string' | ( 'string' , ... )

* ``metrics.*`` compare the latest value with numbers (``=, !=, <, <=, >, >=``);
  a NaN value matches ``!=`` only (as in MLflow);
* ``params.*``, ``tags.*``, ``datasets.{name,version,digest,kind,context}`` and the string
  attributes ``status, run_name, run_id, user_id, artifact_uri`` take a quoted string with
  ``=, !=, LIKE`` (case-sensitive), ``ILIKE``, or a list with ``IN`` / ``NOT IN``;
  a run without the param or tag never matches, not even ``!=``; ``IS NULL`` and
  ``IS NOT NULL`` test whether a run has the param or tag;
* ``tags.mlflow.runName`` is that tag if the run has it, else the run's name (as MLflow's
  wire shows it);
* ``start_time``, ``end_time`` (milliseconds) take numbers.

``ORDER BY`` items are ``entity [ASC|DESC]``; runs without the metric, param or tag sort last
(NaN metrics just before them, as in MLflow).
An ``AND`` may lead, trail or repeat, and a prefix may be back-ticked, because MLflow's
``SearchUtils`` takes both (its statement check lets every ``AND`` keyword through, and
``_valid_entity_type`` trims back-ticks from the prefix): a filter written for MLflow keeps
working. Beyond MLflow, ``IN`` / ``NOT IN`` also take params and tags, ``<>`` means ``!=``
and a key may hold ``/``, ``:`` and ``-`` unquoted.
Every value becomes a bound parameter: no text from the filter is ever pasted into SQL.
A malformed filter raises :class:`~loopline.errors.InvalidInput` naming the position, with
the filter and a caret under the offending character.

Example:
    >>> [c.key for c in parse_filter("metrics.auc > 0.8 and params.model = 'lgbm'")]
    ['auc', 'model']
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from loopline.errors import InvalidInput
from loopline.tracking._dialect import like_pattern_too_long
from loopline.tracking.tables import run_inputs, runs, tags

_PREFIXES = {
    "metric": "metric",
    "metrics": "metric",
    "param": "param",
    "params": "param",
    "parameter": "param",
    "parameters": "param",
    "tag": "tag",
    "tags": "tag",
    "attribute": "attribute",
    "attributes": "attribute",
    "attr": "attribute",
    "run": "attribute",
    "dataset": "dataset",
    "datasets": "dataset",
}
STRING_ATTRIBUTES = {
    "status": runs.c.status,
    "run_name": runs.c.name,
    "run_id": runs.c.id,
    "user_id": runs.c.user_id,
    "artifact_uri": runs.c.artifact_uri,
}
NUMERIC_ATTRIBUTES = {
    "start_time": runs.c.start_time,
    "end_time": runs.c.end_time,
    "created": runs.c.start_time,
}
#: Other spellings MLflow's grammar takes for an attribute (``attributes.`Run name```).
ATTRIBUTE_ALIASES = {
    "Created": "created",
    "run name": "run_name",
    "Run name": "run_name",
    "Run Name": "run_name",
}
#: Tags MLflow's wire shows from a run's own column when the run has no such tag row (see
#: :func:`loopline.server.mlflow_wire.run_json`): a search sees the tag as MLflow clients
#: do, its row if there is one, else the column. A run the SDK starts has its name in the
#: runs table only, so a search of the tag rows alone missed every such run:
#: ``tags.mlflow.runName = 'x'`` found nothing, ordering by it did not order, and
#: ``IS NULL`` found every run. Parsed as the attribute ``tags.<key>`` (no attribute
#: spelled that way can be typed: see :meth:`_Parser.entity`).
SHOWN_TAGS: dict[str, ColumnElement[Any]] = {
    "tags.mlflow.runName": sa.func.coalesce(
        sa.select(tags.c.value)
        .where(tags.c.run_id == runs.c.id, tags.c.key == "mlflow.runName")
        .scalar_subquery(),
        runs.c.name,
    )
}
DATASET_FIELDS = {
    "name": run_inputs.c.name,
    "version": run_inputs.c.version,
    "digest": run_inputs.c.digest,
    "kind": run_inputs.c.kind,
    "context": run_inputs.c.context,
}
NUMERIC_OPS = ("=", "!=", "<", "<=", ">", ">=")
STRING_OPS = ("=", "!=", "LIKE", "ILIKE", "IN", "NOT IN")
#: Each comparison and order key on a metric, param or tag joins one table, and a database
#: joins at most 64 (SQLite's limit; past it the search failed as "unavailable, retry").
MAX_FILTER_TERMS = 50
MAX_ORDER_KEYS = 10
_KEYWORDS = {"AND", "OR", "LIKE", "ILIKE", "IN", "NOT", "IS", "NULL", "ASC", "DESC"}
#: MLflow's test for a param or tag being there at all; they take no value.
NULL_OPS = ("IS NULL", "IS NOT NULL")

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<number>-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w.]))
  | (?P<ident>[A-Za-z_][\w.:/-]*)
  | (?P<op><=|>=|!=|<>|=|<|>)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<comma>,)
  | (?P<quote>['"`])
  | (?P<dot>\.)
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class Token:
    """One token of a filter: its kind, its text (unquoted for strings) and its position.

    Example:
        >>> tokenize("`a b`")[0]
        Token(kind='backtick', text='a b', pos=0)
    """

    kind: str
    text: str
    pos: int


@dataclass(frozen=True)
class Comparison:
    """One ``entity operator value`` of a filter.

    Example:
        >>> parse_filter("metrics.auc > 0.8")[0]
        Comparison(kind='metric', key='auc', op='>', value=0.8, pos=0)
    """

    kind: str  # metric | param | tag | attribute | dataset
    key: str
    op: str
    value: float | str | tuple[str, ...]
    pos: int


@dataclass(frozen=True)
class OrderKey:
    """One ``ORDER BY`` item.

    Example:
        >>> parse_order_by(["start_time"])[0].ascending
        True
    """

    kind: str
    key: str
    ascending: bool


_HINTS = {
    "filter": "e.g. metrics.auc > 0.8 and params.model = 'lgbm' "
    "(quote strings; back-tick keys with spaces)",
    # An order_by item's error showed the filter's example, which is no order_by item.
    "order_by": "one item per key, e.g. ['metrics.auc DESC', 'params.model'] "
    "(back-tick keys with spaces)",
}


def _error(text: str, pos: int, message: str, what: str = "filter") -> InvalidInput:
    caret = " " * pos + "^"
    return InvalidInput(
        f"invalid {what} at position {pos}: {message}\n    {text}\n    {caret}",
        field=what,
        hint=_HINTS[what],
    )


def tokenize(text: str, what: str = "filter") -> list[Token]:
    """Split a filter into tokens; strings and back-ticked keys come back unquoted.

    Example:
        >>> [t.kind for t in tokenize("params.a = 'x'")]
        ['ident', 'op', 'string', 'eof']
    """
    nul = text.find("\x00")
    if nul >= 0:  # no key or value holds NUL, and PostgreSQL cannot even compare it
        raise _error(text, nul, "a NUL character (\\x00) is not allowed", what)
    out: list[Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise _error(text, pos, f"unexpected character {text[pos]!r}", what)
        kind = match.lastgroup or ""
        if kind == "quote":
            quote = match.group()
            end, value = _read_quoted(text, pos, quote, what)
            out.append(Token("backtick" if quote == "`" else "string", value, pos))
            pos = end
            continue
        if kind == "ident" and match.group().upper() in _KEYWORDS:
            out.append(Token("keyword", match.group().upper(), pos))
        elif kind == "op":
            out.append(Token("op", "!=" if match.group() == "<>" else match.group(), pos))
        elif kind != "ws":
            out.append(Token(kind, match.group(), pos))
        pos = match.end()
    out.append(Token("eof", "", len(text)))
    return out


def _read_quoted(text: str, start: int, quote: str, what: str) -> tuple[int, str]:
    """Read a quoted string from ``start``: a doubled quote or ``\\<quote>`` is a quote."""
    chars: list[str] = []
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] == quote:
            chars.append(quote)
            i += 2
        elif ch == quote:
            if i + 1 < len(text) and text[i + 1] == quote:
                chars.append(quote)
                i += 2
            else:
                return i + 1, "".join(chars)
        else:
            chars.append(ch)
            i += 1
    raise _error(text, start, f"unterminated {quote}-quoted string", what)


class _Parser:
    def __init__(self, text: str, what: str) -> None:
        self.text = text
        self.what = what
        self.tokens = tokenize(text, what)
        self.i = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def next(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def fail(self, message: str, tok: Token | None = None) -> InvalidInput:
        return _error(self.text, (tok or self.tok).pos, message, self.what)

    def entity(self) -> tuple[str, str, int]:
        tok = self.next()
        if tok.kind == "backtick" and self.tok.kind == "dot" and self._touching(tok):
            return self._backticked_prefix(tok)
        if tok.kind != "ident":
            raise self.fail(
                "expected an identifier such as metrics.auc, params.model or status", tok
            )
        if "." not in tok.text:
            if tok.text == "Created":
                return "attribute", "created", tok.pos
            if tok.text in STRING_ATTRIBUTES or tok.text in NUMERIC_ATTRIBUTES:
                return "attribute", tok.text, tok.pos
            raise self.fail(
                f"unknown identifier {tok.text!r}: use metrics.<key>, params.<key>, "
                "tags.<key>, datasets.<field> or an attribute "
                f"({', '.join(sorted({*STRING_ATTRIBUTES, *NUMERIC_ATTRIBUTES}))})",
                tok,
            )
        prefix, key = tok.text.split(".", 1)
        if not key:
            quoted = self.next()
            if quoted.kind not in ("backtick", "string") or not quoted.text:
                raise self.fail(f"expected a key after {tok.text!r}", quoted)
            key = quoted.text
        return self._prefixed(prefix, key, tok)

    def _touching(self, tok: Token) -> bool:
        """Whether the current token starts right where ``tok`` (a quoted one) ended."""
        return self.text[self.tok.pos - 1] == "`" and self.tok.pos > tok.pos

    def _backticked_prefix(self, tok: Token) -> tuple[str, str, int]:
        """```metrics`.auc`` or ```metrics`.`my-metric```: MLflow trims the prefix's
        back-ticks (``SearchUtils._valid_entity_type``)."""
        dot = self.next()
        key = self.next()
        if key.pos != dot.pos + 1 or key.kind not in ("ident", "backtick", "string"):
            raise self.fail(f"expected a key right after `{tok.text}`.", key)
        if not key.text:
            raise self.fail(f"expected a key after `{tok.text}`.", key)
        return self._prefixed(tok.text, key.text, tok)

    def _prefixed(self, prefix: str, key: str, tok: Token) -> tuple[str, str, int]:
        kind = _PREFIXES.get(prefix.lower())
        if kind is None:
            raise self.fail(
                f"unknown prefix {prefix!r}: use metrics., params., tags., attributes. "
                "or datasets.",
                tok,
            )
        if kind == "attribute":
            key = ATTRIBUTE_ALIASES.get(key, key)
        if kind == "attribute" and key not in STRING_ATTRIBUTES and key not in NUMERIC_ATTRIBUTES:
            raise self.fail(
                f"unknown attribute {key!r}: use one of "
                f"{', '.join(sorted({*STRING_ATTRIBUTES, *NUMERIC_ATTRIBUTES}))}",
                tok,
            )
        if kind == "dataset" and key not in DATASET_FIELDS:
            raise self.fail(
                f"unknown dataset field {key!r}: use one of {', '.join(sorted(DATASET_FIELDS))}",
                tok,
            )
        return kind, key, tok.pos

    def operator(self) -> str:
        tok = self.next()
        if tok.kind == "op":
            return tok.text
        if tok.kind == "keyword" and tok.text in ("LIKE", "ILIKE", "IN"):
            return tok.text
        if tok.kind == "keyword" and tok.text == "NOT":
            after = self.next()
            if after.kind == "keyword" and after.text == "IN":
                return "NOT IN"
            raise self.fail("expected IN after NOT", after)
        if tok.kind == "keyword" and tok.text == "IS":
            after = self.next()
            negated = after.kind == "keyword" and after.text == "NOT"
            if negated:
                after = self.next()
            if after.kind == "keyword" and after.text == "NULL":
                return "IS NOT NULL" if negated else "IS NULL"
            raise self.fail("expected NULL or NOT NULL after IS", after)
        raise self.fail(
            "expected a comparison operator (=, !=, <, <=, >, >=, LIKE, ILIKE, IN, IS NULL)",
            tok,
        )

    def comparison(self) -> Comparison:
        kind, key, pos = self.entity()
        op_tok = self.tok
        op = self.operator()
        if op in NULL_OPS:
            if kind not in ("param", "tag"):
                raise self.fail(
                    f"{op} tests a param or tag (as in MLflow), not {_describe(kind, key)}",
                    op_tok,
                )
            return Comparison(*_as_attribute(kind, key), op, "", pos)
        kind, key = _as_attribute(kind, key)
        numeric = kind == "metric" or (kind == "attribute" and key in NUMERIC_ATTRIBUTES)
        allowed = NUMERIC_OPS if numeric else STRING_OPS
        if op not in allowed:
            raise self.fail(
                f"{op} cannot compare {_describe(kind, key)}; use one of {', '.join(allowed)}",
                op_tok,
            )
        value: float | str | tuple[str, ...]
        if op in ("IN", "NOT IN"):
            value = self.string_list()
        elif numeric:
            tok = self.next()
            if tok.kind != "number":
                raise self.fail(f"expected a number to compare {_describe(kind, key)} with", tok)
            value = float(tok.text)
        else:
            tok = self.next()
            if tok.kind != "string":
                raise self.fail(
                    f"expected a quoted string to compare {_describe(kind, key)} with "
                    "(e.g. 'lgbm')",
                    tok,
                )
            value = tok.text
            too_long = like_pattern_too_long(value) if op in ("LIKE", "ILIKE") else None
            if too_long is not None:
                raise self.fail(too_long, tok)
        return Comparison(kind, key, op, value, pos)

    def string_list(self) -> tuple[str, ...]:
        tok = self.next()
        if tok.kind != "lparen":
            raise self.fail("expected '(' to start a list such as ('a', 'b')", tok)
        items: list[str] = []
        while True:
            item = self.next()
            if item.kind != "string":
                raise self.fail("expected a quoted string in the list", item)
            items.append(item.text)
            sep = self.next()
            if sep.kind == "rparen":
                return tuple(items)
            if sep.kind != "comma":
                raise self.fail("expected ',' or ')' in the list", sep)

    def _is_and(self) -> bool:
        return self.tok.kind == "keyword" and self.tok.text == "AND"

    def filter(self) -> list[Comparison]:
        # MLflow's parser lets an AND through anywhere between comparisons (leading,
        # trailing, repeated); a filter written for it must not break here.
        found: list[Comparison] = []
        while self._is_and():
            self.next()
        while self.tok.kind != "eof":
            if found:
                tok = self.tok
                if tok.kind == "keyword" and tok.text == "OR":
                    raise self.fail("OR is not supported; use IN (...) or run two searches", tok)
                if not self._is_and():
                    raise self.fail("expected AND or the end of the filter", tok)
                while self._is_and():
                    self.next()
                if self.tok.kind == "eof":
                    break
            if len(found) == MAX_FILTER_TERMS:
                raise self.fail(
                    f"a filter holds at most {MAX_FILTER_TERMS} comparisons "
                    "(MAX_FILTER_TERMS); this is one more",
                    self.tok,
                )
            found.append(self.comparison())
        return found

    def order_key(self) -> OrderKey:
        kind, key, _pos = self.entity()
        ascending = True
        if self.tok.kind == "keyword" and self.tok.text in ("ASC", "DESC"):
            ascending = self.next().text == "ASC"
        if self.tok.kind != "eof":
            raise self.fail("expected ASC, DESC or the end of the order_by item")
        if kind == "dataset":
            raise _error(self.text, 0, "runs cannot be ordered by a dataset field", self.what)
        return OrderKey(*_as_attribute(kind, key), ascending)


def _as_attribute(kind: str, key: str) -> tuple[str, str]:
    """``(kind, key)``, or the attribute that a tag of :data:`SHOWN_TAGS` is searched as."""
    if kind == "tag" and f"tags.{key}" in SHOWN_TAGS:
        return "attribute", f"tags.{key}"
    return kind, key


def _describe(kind: str, key: str) -> str:
    return f"{kind} {key!r}"


def parse_filter(text: str | None) -> list[Comparison]:
    """Parse a search filter into comparisons (all joined by AND).

    Example:
        >>> parse_filter("status = 'FINISHED'")[0].op
        '='
    """
    if text is None or not text.strip():
        return []
    return _Parser(text, "filter").filter()


def parse_order_by(items: list[str] | str | None) -> list[OrderKey]:
    """Parse ``order_by`` items such as ``"metrics.auc DESC"``.

    Example:
        >>> parse_order_by(["metrics.`val auc` DESC"])[0]
        OrderKey(kind='metric', key='val auc', ascending=False)
    """
    if isinstance(items, str):
        items = [items]
    keys = [_Parser(item, "order_by").order_key() for item in items or [] if item.strip()]
    if len(keys) > MAX_ORDER_KEYS:
        raise InvalidInput(
            f"order_by has {len(keys)} items, over the limit of {MAX_ORDER_KEYS} (MAX_ORDER_KEYS)",
            field="order_by",
            hint="order by fewer fields",
        )
    return keys
