"""Text every store can hold: no NUL character, and a UTF-8 form.

PostgreSQL text cannot hold a NUL (a raw ``DataError`` there) and no database or JSON
encoder takes a lone surrogate (what ``errors="surrogateescape"`` decoding, or a shell
argument in another encoding, leaves in a Python string). Both are refused the same way on
every backend, naming the field, before anything is written: SQLite would store a NUL,
and a backup holding it could never be restored onto PostgreSQL.

Example:
    >>> check_no_nul("churn model", "description")
    >>> try:
    ...     check_no_nul("a\\x00b", "description")
    ... except InvalidInput as e:
    ...     print(e.field, "-", e.message)
    description - description contains a NUL character
"""

from __future__ import annotations

from loopline.errors import InvalidInput


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
