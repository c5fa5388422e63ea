"""Byte counts as people read them, for the CLI and the web UI alike.

Example:
    >>> fmt_bytes(512), fmt_bytes(1536), fmt_bytes(3 * 1024**4), fmt_bytes(None)
    ('512 B', '1.5 KiB', '3.0 TiB', '')
"""

from __future__ import annotations


def fmt_bytes(size: int | None) -> str:
    """A byte count in binary units ("" for None).

    Example:
        >>> fmt_bytes(10), fmt_bytes(3 * 1024**2)
        ('10 B', '3.0 MiB')
    """
    if size is None:
        return ""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
