"""The filter strings MLflow's client sends for registry searches, evaluated on entities.

Registry listings are small (models and versions, not metric points), so a filter is
parsed into clauses and applied in Python: ``name = 'x'``, ``name LIKE 'churn%'``,
``run_id = '...'``, ``source_run_id = '...'``, ``tags.`key` != 'value'`` joined by AND.

Example:
    >>> clauses = parse("name LIKE 'ch%' AND tag.`team` = 'growth'")
    >>> matches(clauses, {"name": "churn"}, {"team": "growth"})
    True
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from loopline.errors import InvalidInput

_CLAUSE = re.compile(
    r"""\s*(?P<key>(?:tags?\.)?(?:`[^`]+`|"[^"]+"|[A-Za-z_][\w.]*))\s*
        (?P<op>!=|=|<>|NOT\s+LIKE|LIKE|ILIKE)\s*
        (?P<value>'(?:[^']|'')*'|"(?:[^"]|"")*")\s*""",
    re.IGNORECASE | re.VERBOSE,
)
_AND = re.compile(r"\s+AND\s+", re.IGNORECASE)


@dataclass(frozen=True)
class Clause:
    """One comparison: on a tag when ``is_tag``, else on an attribute."""

    key: str
    is_tag: bool
    op: str
    value: str


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


def parse(text: str | None) -> list[Clause]:
    """Parse a registry filter; :class:`InvalidInput` pointing at the bad clause.

    Example:
        >>> parse("name = 'a'")[0].value
        'a'
    """
    if not text or not text.strip():
        return []
    clauses = []
    pos = 0
    for part in _split_and(text):
        m = _CLAUSE.fullmatch(part)
        if not m:
            raise InvalidInput(
                f"filter {text!r} at position {pos}: cannot read {part.strip()!r}",
                field="filter",
                hint="write clauses like name = 'x' or tags.`k` = 'v' joined by AND",
            )
        pos += len(part) + 5
        key = m.group("key")
        is_tag = bool(re.match(r"tags?\.", key, re.IGNORECASE))
        if is_tag:
            key = key.split(".", 1)[1]
        key = key.strip('`"')
        raw = m.group("value")
        value = raw[1:-1].replace(raw[0] * 2, raw[0])
        op = re.sub(r"\s+", " ", m.group("op").upper()).replace("<>", "!=")
        clauses.append(Clause(key, is_tag, op, value))
    return clauses


def _like(pattern: str, value: str, ignore_case: bool) -> bool:
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE if ignore_case else 0) is not None


def matches(clauses: list[Clause], attrs: dict[str, str | None], tags: dict[str, str]) -> bool:
    """Whether an entity with ``attrs`` and ``tags`` satisfies every clause.

    Example:
        >>> matches(parse("name != 'a'"), {"name": "b"}, {})
        True
    """
    for c in clauses:
        if c.is_tag:
            actual = tags.get(c.key)
        else:
            if c.key not in attrs:
                raise InvalidInput(
                    f"filter key {c.key!r} is not supported",
                    field="filter",
                    hint=f"use one of {sorted(attrs)} or tags.<key>",
                )
            actual = attrs[c.key]
        if c.op == "=":
            ok = actual == c.value
        elif c.op == "!=":
            ok = actual != c.value
        elif c.op in ("LIKE", "ILIKE"):
            ok = actual is not None and _like(c.value, actual, c.op == "ILIKE")
        else:  # NOT LIKE
            ok = actual is None or not _like(c.value, actual, False)
        if not ok:
            return False
    return True
