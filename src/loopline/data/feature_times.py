"""Timestamps in the feature store: every time as UTC, at microsecond precision.

The rule the whole feature store compares times by (see :mod:`loopline.data.pit_join`): a
tz-aware timestamp keeps its instant whatever its zone, a naive one is taken to be UTC,
sub-microsecond digits are dropped. A column of a frame goes through :func:`_utc_column`
(a view's source, an entity frame); one value a caller passes (``end``, ``start`` of a
materialization) through :func:`_to_utc`. Kept apart from the views, training sets and
online store that all read times through it, so that there is one copy of the rule.

Example:
    >>> _to_utc("2024-01-01T02:00:00+02:00", "end").isoformat()
    '2024-01-01T00:00:00+00:00'
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import numpy as np
import pandas as pd

from loopline.errors import InvalidInput

# In microseconds: a nanosecond epoch made every time before 1677 or after 2262 (an `end`
# of 3000-01-01: all rows, none expired) overflow when subtracted from it.
_EPOCH = pd.Timestamp(0, tz="UTC").as_unit("us")
_FIRST = pd.Timestamp(dt.datetime.min.replace(tzinfo=dt.UTC))
_LAST = pd.Timestamp(dt.datetime.max.replace(tzinfo=dt.UTC))


def _utc_column(col: pd.Series, what: str) -> pd.Series:
    """``col`` as UTC timestamps at microsecond precision (naive values are UTC)."""
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        out = col if isinstance(col.dtype, pd.DatetimeTZDtype) else col.dt.tz_localize("UTC")
        out = out.dt.tz_convert("UTC")
    elif pd.api.types.is_numeric_dtype(col.dtype) or pd.api.types.is_bool_dtype(col.dtype):
        raise InvalidInput(
            f"{what} holds {col.dtype} values, not timestamps",
            field=str(col.name),
            hint="convert it with pd.to_datetime (tz-aware, or naive meaning UTC)",
        )
    else:
        try:
            out = pd.to_datetime(col, utc=True, format="ISO8601")
        except (ValueError, TypeError) as exc:
            raise InvalidInput(
                f"{what} holds values that are not timestamps, e.g. {_first_bad(col)!r}",
                field=str(col.name),
                hint="give ISO 8601 times, or convert the column with pd.to_datetime "
                "(tz-aware, or naive meaning UTC)",
            ) from exc
    return out.dt.floor("us").astype("datetime64[us, UTC]")


def _first_bad(col: pd.Series) -> object:
    """The first value of ``col`` that does not parse as an ISO 8601 time (for messages)."""
    try:
        parsed = pd.to_datetime(col, utc=True, format="ISO8601", errors="coerce")
        bad = col[col.notna().to_numpy() & parsed.isna().to_numpy()]
        if len(bad):
            return bad.iloc[0]
    except (ValueError, TypeError):  # values of several types: try them one by one
        pass
    for value in col:
        try:
            pd.to_datetime(pd.Series([value]), utc=True, format="ISO8601")
        except (ValueError, TypeError):
            return value
    return None


def _to_utc(value: dt.datetime | pd.Timestamp | str, param: str) -> pd.Timestamp:
    if isinstance(value, bool | int | float | Decimal | np.number):
        # pandas reads a number as nanoseconds since 1970: 1717200000 (seconds) is
        # 1970-01-01T00:00:01.7172.
        raise InvalidInput(
            f"{param}={value!r} is a number, not a timestamp",
            field=param,
            hint="pass a datetime or ISO 8601 text; for seconds since 1970 pass "
            "pd.Timestamp(seconds, unit='s', tz='UTC')",
        )
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(
            f"{param}={value!r} is not a timestamp", field=param, hint="use ISO 8601"
        ) from exc
    if pd.isna(ts):
        raise InvalidInput(f"{param} must be a timestamp, not NaT", field=param)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    if ts.unit == "ns":  # times count in microseconds (to_pydatetime warned and dropped them)
        ts = ts.floor("us")
    if not _FIRST <= ts <= _LAST:  # a Materialization's datetime could not hold it
        raise InvalidInput(
            f"{param} is in the year {ts.year}, outside the years 1 to 9999",
            field=param,
            hint="use ISO 8601",
        )
    return ts


def _epoch_us(ts: pd.Timestamp) -> int:
    return int((ts - _EPOCH) // dt.timedelta(microseconds=1))
