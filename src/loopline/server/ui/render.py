"""Rendering for the web UI: one autoescaping Jinja2 environment, filters, HTML responses.

Every template is autoescaped whatever its name; chart data goes into
``<script type="application/json">`` blocks through ``tojson`` (HTML-safe) after
:func:`finite` has turned NaN and infinities into ``null``. Each page is sent with a
Content-Security-Policy that allows scripts from this server only, so nothing can be
loaded from elsewhere and no inline script runs.

Example:
    >>> fmt_bytes(1536)
    '1.5 KiB'
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from loopline import __version__
from loopline.core.calendar import utc_datetime, utc_text
from loopline.core.sizes import fmt_bytes
from loopline.tracking.validation import stored_infinity

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
#: The vendored charting library: uPlot (MIT), from the npm registry's ``uplot`` package.
UPLOT_VERSION = "1.6.32"
STATIC_URL = "/_ui/static"

#: Sent with every page: scripts and styles from this server only; no frames, no plugins.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
        "form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float (nested in lists/dicts) made None.

    Example:
        >>> finite([1.0, float("nan"), {"x": float("inf")}])
        [1.0, None, {'x': None}]
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def fmt_ms(ms: int | float | None) -> Markup:
    """Milliseconds since the epoch as a ``<time>`` element, ``YYYY-MM-DD HH:MM:SS`` UTC.

    Example:
        >>> str(fmt_ms(0))
        '<time datetime="1970-01-01T00:00:00Z">1970-01-01 00:00:00</time>'
    """
    return fmt_s(None if ms is None else ms / 1000)


def fmt_s(seconds: int | float | None) -> Markup:
    """Seconds since the epoch as a ``<time>`` element (UTC); empty for None.

    The text is made from a number only, so the markup is safe.

    Example:
        >>> str(fmt_s(86400))
        '<time datetime="1970-01-02T00:00:00Z">1970-01-02 00:00:00</time>'
    """
    if seconds is None:
        return Markup("")
    when = utc_datetime(seconds)
    if when is None:  # outside the calendar: the number, which still sorts and reads
        return Markup("{}").format(utc_text(seconds))
    return Markup('<time datetime="{}">{}</time>').format(
        when.strftime("%Y-%m-%dT%H:%M:%SZ"), when.strftime("%Y-%m-%d %H:%M:%S")
    )


def fmt_duration(start_ms: int | None, end_ms: int | None) -> str:
    """A run's duration, e.g. ``1h 02m``, ``3.2s``; empty while it has no end.

    Example:
        >>> fmt_duration(0, 3_723_000)
        '1h 02m'
    """
    if start_ms is None or end_ms is None:
        return ""
    secs = max(0.0, (end_ms - start_ms) / 1000)
    if secs < 60:
        return f"{secs:.1f}s"
    minutes, sec = divmod(int(secs), 60)
    if minutes < 60:
        return f"{minutes}m {sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def fmt_num(value: Any, digits: int = 4) -> str:
    """A number with ``digits`` significant digits; NaN and infinities spelled out (a
    metric's stored infinity, +/- the largest float, too).

    Example:
        >>> fmt_num(0.123456), fmt_num(12), fmt_num(None), fmt_num(float("nan"))
        ('0.1235', '12', '', 'NaN')
        >>> fmt_num(1.7976931348623157e308)
        'inf'
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value) or stored_infinity(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.{digits}g}"
    return str(value)


def fmt_pct(share: float | None, digits: int = 1) -> str:
    """A share in [0, 1] as a percentage.

    Example:
        >>> fmt_pct(0.25)
        '25.0 %'
    """
    if share is None:
        return ""
    return f"{share * 100:.{digits}f} %"


def fmt_change(share: float | None) -> str:
    """A relative change as a signed percentage: one decimal, or two significant digits
    when it is smaller than 0.1 % (it read "-0.0 %", a change that looked like none).

    Example:
        >>> fmt_change(0.0123), fmt_change(-0.0001002), fmt_change(0.0), fmt_change(None)
        ('+1.2 %', '-0.01 %', '0.0 %', '')
    """
    if share is None:
        return ""
    percent = share * 100
    if percent == 0:
        return "0.0 %"
    if abs(percent) >= 0.1:
        return f"{percent:+.1f} %"
    return f"{percent:+.2g} %"


def query_string(base: Mapping[str, Any] | None = None, **changes: Any) -> str:
    """``?a=1&b=x`` from ``base`` updated with ``changes``; None and "" values are dropped,
    lists repeat the key.

    Example:
        >>> query_string({"filter": "a = 'x'", "page_token": "t"}, page_token=None)
        '?filter=a+%3D+%27x%27'
    """
    merged = {**(base or {}), **changes}
    pairs: list[tuple[str, str]] = []
    for key, value in merged.items():
        if value is None or value == "":
            continue
        if isinstance(value, list | tuple):
            pairs.extend((key, str(v)) for v in value)
        else:
            pairs.append((key, str(value)))
    return "?" + urlencode(pairs) if pairs else ""


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(HERE / "templates")),
        autoescape=True,  # every template, whatever its extension
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        ms=fmt_ms,
        s=fmt_s,
        num=fmt_num,
        bytes=fmt_bytes,
        pct=fmt_pct,
        change=fmt_change,
        duration=fmt_duration,
        finite=finite,
    )
    env.globals.update(
        qs=query_string,
        static=STATIC_URL,
        uplot=f"{STATIC_URL}/vendor/uplot-{UPLOT_VERSION}",
        version=__version__,
    )
    return env


ENV = _environment()


def page(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """Render ``template`` with ``context`` as an HTML response with the security headers.

    Example:
        >>> page("error.html", 404, title="Not found", message="no run 'x'", hint=None
        ...      ).status_code
        404
    """
    html = ENV.get_template(template).render(**context)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)
