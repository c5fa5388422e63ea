"""Times as calendar dates, for people: UTC text, or the raw number when no date holds it.

A run's start or end and a metric's timestamp are any 64-bit number of milliseconds, as in
MLflow; Python's calendar ends at the year 9999. A time outside it must still print (the
runs page and ``loopline runs ls`` failed for every user on one such run), so it prints as
the number it is.

Example:
    >>> utc_text(86400), utc_text(None)
    ('1970-01-02 00:00:00', '')
    >>> utc_text(1e16)
    '1e+16 s (outside the calendar)'
"""

from __future__ import annotations

import datetime as dt


def utc_datetime(seconds: float) -> dt.datetime | None:
    """``seconds`` since 1970 as an aware UTC datetime, or None outside the calendar.

    Example:
        >>> utc_datetime(0).year, utc_datetime(-1e18)
        (1970, None)
    """
    try:
        return dt.datetime.fromtimestamp(float(seconds), tz=dt.UTC)
    except (OverflowError, OSError, ValueError):
        return None


def utc_text(seconds: float | None) -> str:
    """``YYYY-MM-DD HH:MM:SS`` in UTC; empty for None; the number outside the calendar.

    Example:
        >>> utc_text(0.5)
        '1970-01-01 00:00:00'
    """
    if seconds is None:
        return ""
    when = utc_datetime(seconds)
    if when is None:
        return f"{seconds:g} s (outside the calendar)"
    return when.strftime("%Y-%m-%d %H:%M:%S")


def utc_text_ms(ms: int | None) -> str:
    """:func:`utc_text` of a time in milliseconds (runs, metrics and models keep those).

    Example:
        >>> utc_text_ms(86_400_000)
        '1970-01-02 00:00:00'
    """
    return utc_text(None if ms is None else ms / 1000)
