"""Named artifact paths over the content-addressed store.

Some clients address artifacts by path (the MLflow artifact proxy:
``<experiment>/<run>/artifacts/model/MLmodel``). The bytes still live once, under their
digest, in the artifact store; the ``artifact_paths`` table maps each path to a digest. A
path is written only after its bytes are stored and fsynced, so a path never points at
missing bytes.

Example:
    >>> import tempfile, loopline
    >>> ctx = loopline.init(uri="sqlite:///:memory:", artifacts=tempfile.mkdtemp())
    >>> _ = put_bytes(ctx, "1/abc/artifacts/notes.txt", b"hi")
    >>> get_bytes(ctx, "1/abc/artifacts/notes.txt")
    b'hi'
"""

from __future__ import annotations

import re
import time
import unicodedata
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from loopline.core.context import Context
from loopline.core.db import like_literal, reading
from loopline.core.schema import artifact_paths
from loopline.errors import InvalidInput, NotFound

MAX_PATH = 1024
#: How many layers of percent-encoding are peeled off before a path is judged
#: (``%252e`` is ``.`` encoded twice); more layers than this are refused outright.
_DECODE_DEPTH = 3
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DRIVE = re.compile(r"^[A-Za-z]:[/\\]")


def _readings(text: str) -> tuple[list[str], bool]:
    """``text`` as each layer that decodes it could read it: raw, NFKC, percent-decoded.

    A name is stored as sent, but a proxy, a browser or a later ``unquote`` may decode it
    once more, and a filesystem may fold full-width dots; each reading must be safe. The
    flag says whether yet another layer of encoding is left after the last one peeled.
    """
    seen = [text]
    current = text
    for _ in range(_DECODE_DEPTH):
        decoded = urllib.parse.unquote(current)
        if decoded == current:
            break
        seen.append(decoded)
        current = decoded
    deeper = urllib.parse.unquote(current) != current
    return seen + [unicodedata.normalize("NFKC", t) for t in seen], deeper


def unsafe_reason(text: str) -> str | None:
    """Why ``text`` may not name something below a folder, or None when it may.

    Every reading of ``text`` (as sent, percent-decoded up to three times, and
    NFKC-normalised so that full-width dots and slash, U+FF0E U+FF0E U+FF0F, count as
    ``../``) must be free of control characters and NUL, must not be absolute (``/x``,
    ``\\x``, ``C:\\``) and must have no ``..`` segment, with ``/`` or ``\\`` as separator.

    Example:
        >>> unsafe_reason("plots/roc.png") is None
        True
        >>> unsafe_reason("%252e%252e%252fetc")
        "has a '..' segment (in the reading '../etc')"
    """
    if text.isascii() and "%" not in text:
        # The common case, on the metric-logging path: nothing to decode or normalise.
        readings, deeper = [text], False
    else:
        readings, deeper = _readings(text)
    if deeper:
        return f"is percent-encoded more than {_DECODE_DEPTH} times"
    for decoded in readings:
        where = "" if decoded == text else f" (in the reading {decoded!r})"
        if _CONTROL.search(decoded):
            return f"has a control character or NUL{where}"
        if decoded.startswith(("/", "\\")) or _DRIVE.match(decoded):
            return f"is an absolute path{where}"
        if ".." in re.split(r"[/\\]", decoded):
            return f"has a '..' segment{where}"
    return None


def clean_path(path: str, *, field: str = "path", allow_empty: bool = False) -> str:
    """Normalise a relative artifact path or reject it with :class:`InvalidInput`.

    Rejects absolute paths, ``..`` segments, backslashes, control characters and NUL,
    after Unicode normalisation (so look-alike dots cannot sneak through) and after
    percent-decoding (so ``%2e%2e%2f`` and ``%252e%252e%252f`` cannot either).

    Example:
        >>> clean_path("model//MLmodel")
        'model/MLmodel'
    """
    if not isinstance(path, str):
        raise InvalidInput(f"artifact path {path!r} must be a string", field=field)
    reason = unsafe_reason(path)
    if reason is not None:
        raise InvalidInput(
            f"artifact path {path!r} {reason}",
            field=field,
            hint="use a plain relative path inside the artifact root, like 'model/file.bin'",
        )
    text = unicodedata.normalize("NFKC", path or "")
    if any(ord(c) < 32 or ord(c) == 127 for c in text) or "\\" in text:
        raise InvalidInput(
            f"artifact path {path!r} has control characters or backslashes",
            field=field,
            hint="use a plain relative path like 'model/file.bin'",
        )
    if text.startswith("/"):
        raise InvalidInput(
            f"artifact path {path!r} is absolute",
            field=field,
            hint="use a path relative to the run's artifact root",
        )
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise InvalidInput(
            f"artifact path {path!r} leaves its folder with '..'",
            field=field,
            hint="use a path inside the run's artifact root",
        )
    cleaned = "/".join(parts)
    if not cleaned and not allow_empty:
        raise InvalidInput("artifact path is empty", field=field)
    if len(cleaned) > MAX_PATH:
        raise InvalidInput(f"artifact path is longer than {MAX_PATH} characters", field=field)
    return cleaned


@dataclass(frozen=True)
class PathEntry:
    """One entry of a listing: a file (with digest and size) or a folder."""

    path: str
    is_dir: bool
    size: int | None = None
    digest: str | None = None


def _record(ctx: Context, path: str, digest: str, size: int) -> None:
    with ctx.engine.begin() as conn:
        conn.execute(artifact_paths.delete().where(artifact_paths.c.path == path))
        conn.execute(
            artifact_paths.insert().values(path=path, digest=digest, size=size, created=time.time())
        )


def put_bytes(ctx: Context, path: str, data: bytes) -> str:
    """Store ``data`` and name it ``path``; return its digest.

    Example:
        >>> # put_bytes(ctx, "1/run/artifacts/a.txt", b"...")
    """
    path = clean_path(path)
    digest = ctx.artifacts.put_bytes(data)
    _record(ctx, path, digest, len(data))
    return digest


def put_file(ctx: Context, path: str, source: str | Path) -> str:
    """Store a local file and name it ``path``; return its digest.

    Example:
        >>> # put_file(ctx, "1/run/artifacts/model.pkl", "/tmp/model.pkl")
    """
    path = clean_path(path)
    digest = ctx.artifacts.put_file(source)
    _record(ctx, path, digest, Path(source).stat().st_size)
    return digest


def lookup(ctx: Context, path: str) -> tuple[str, int]:
    """The ``(digest, size)`` stored under ``path``; :class:`NotFound` when absent."""
    path = clean_path(path)
    with reading(ctx.engine) as conn:
        row = conn.execute(
            sa.select(artifact_paths.c.digest, artifact_paths.c.size).where(
                artifact_paths.c.path == path
            )
        ).one_or_none()
    if row is None:
        raise NotFound(f"no artifact at {path!r}")
    return str(row.digest), int(row.size)


def get_bytes(ctx: Context, path: str) -> bytes:
    """The verified bytes stored under ``path``.

    Example:
        >>> # get_bytes(ctx, "1/run/artifacts/a.txt")
    """
    digest, _ = lookup(ctx, path)
    return ctx.artifacts.get_bytes(digest)


def list_dir(ctx: Context, prefix: str) -> list[PathEntry]:
    """The files and folders directly below ``prefix`` (a folder path, may be empty).

    Example:
        >>> # list_dir(ctx, "1/run/artifacts/model")
    """
    base = clean_path(prefix, allow_empty=True)
    like = like_literal(base + "/" if base else "")
    with reading(ctx.engine) as conn:
        rows = conn.execute(
            sa.select(artifact_paths.c.path, artifact_paths.c.size, artifact_paths.c.digest)
            .where(artifact_paths.c.path.like(like + "%", escape="\\"))
            .order_by(artifact_paths.c.path)
        ).all()
    entries: dict[str, PathEntry] = {}
    cut = len(base) + 1 if base else 0
    for row in rows:
        rest = row.path[cut:]
        head, sep, _ = rest.partition("/")
        full = f"{base}/{head}" if base else head
        if sep:
            entries.setdefault(full, PathEntry(full, True))
        else:
            entries[full] = PathEntry(full, False, int(row.size), str(row.digest))
    return list(entries.values())


def delete_prefix(ctx: Context, prefix: str) -> int:
    """Forget every path at or below ``prefix`` (the bytes stay: others may share them).

    Example:
        >>> # delete_prefix(ctx, "1/run/artifacts/tmp")
    """
    base = clean_path(prefix)
    like = like_literal(base) + "/%"
    with ctx.engine.begin() as conn:
        result = conn.execute(
            artifact_paths.delete().where(
                sa.or_(artifact_paths.c.path == base, artifact_paths.c.path.like(like, escape="\\"))
            )
        )
    return int(result.rowcount or 0)
