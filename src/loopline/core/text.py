"""Text every store can hold: no NUL character, and a UTF-8 form; names without controls.

PostgreSQL text cannot hold a NUL (a raw ``DataError`` there) and no database or JSON
encoder takes a lone surrogate (what ``errors="surrogateescape"`` decoding, or a shell
argument in another encoding, leaves in a Python string). Both are refused the same way on
every backend, naming the field, before anything is written: SQLite would store a NUL,
and a backup holding it could never be restored onto PostgreSQL.

A name shown in a terminal or a table (a run's name, a user id, a dataset's name, an
event's) has no control character either (:func:`check_no_control`): ESC starts a
sequence that recolours or rewrites what ``loopline runs ls`` prints after it.

Example:
    >>> check_no_nul("churn model", "description")
    >>> try:
    ...     check_no_nul("a\\x00b", "description")
    ... except InvalidInput as e:
    ...     print(e.field, "-", e.message)
    description - description contains a NUL character
"""

from __future__ import annotations

import re

from loopline.errors import InvalidInput

#: C0 controls, DEL and C1 controls (U+0080-U+009F, among them the one-character CSI).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: The same but tab and newline, which a multi-line text may hold.
_CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def check_no_nul(text: str, field: str) -> None:
    """Refuse text with a NUL character, or with no UTF-8 form, naming ``field``.

    Example:
        >>> check_no_nul("hotfix INC-42", "reason")
    """
    if "\x00" in text:
        raise InvalidInput(
            f"{field} contains a NUL character",
            field=field,
            hint="remove the NUL (\\x00); store binary data as an artifact",
        )
    check_utf8(text, field)


def check_utf8(text: str, field: str) -> None:
    """Refuse text that has no UTF-8 form (a lone surrogate such as ``"\\ud800"``).

    Example:
        >>> check_utf8("naïve", "tags.note")
        >>> try:
        ...     check_utf8("caf\\udce9", "reason")
        ... except InvalidInput as e:
        ...     print(e.message)
        reason is not valid text: '\\udce9' at position 3 is a lone surrogate that has no UTF-8 form
    """
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(
            f"{field} is not valid text: {text[exc.start : exc.end]!r} at position "
            f"{exc.start} is a lone surrogate that has no UTF-8 form",
            field=field,
            hint="pass UTF-8 text: decode it with errors='replace', or remove the character "
            "(a shell argument in another encoding arrives like this: set a UTF-8 locale)",
        ) from exc


def check_no_control(text: str, field: str, *, lines: bool = False) -> None:
    """Refuse text with a control character (NUL, ESC, a carriage return, DEL, a C1
    control), naming ``field`` and the character; ``lines=True`` lets tab and newline in.

    Example:
        >>> check_no_control("baseline lr=0.1", "run_name")
        >>> try:
        ...     check_no_control("ada\\x1b[31m", "user_id")
        ... except InvalidInput as e:
        ...     print(e.message)
        user_id contains the control character '\\x1b' at position 3
    """
    found = (_CONTROL_BUT_LINES if lines else _CONTROL).search(text)
    if found is not None:
        allowed = " (tab and newline are allowed)" if lines else ""
        raise InvalidInput(
            f"{field} contains the control character {found.group()!r} at position {found.start()}",
            field=field,
            hint=f"remove control characters such as NUL, ESC and carriage returns{allowed}",
        )


def some_names(names: set[str] | list[str], shown: int = 10) -> str:
    """The first ``shown`` of ``names`` in order, comma separated, and how many more.

    For messages naming what a request got wrong: a body of 500,000 unknown keys must not
    come back as a 4 MB error message.

    Example:
        >>> some_names({"b", "a"}), some_names([str(i) for i in range(12)], shown=2)
        ('a, b', '0, 1 (and 10 more)')
    """
    ordered = sorted(names)
    more = len(ordered) - shown
    listed = ", ".join(ordered[:shown])
    return f"{listed} (and {more} more)" if more > 0 else listed
