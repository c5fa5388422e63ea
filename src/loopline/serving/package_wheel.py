"""A wheel of the running Loopline, for the image ``loopline package`` writes.

The image installed ``loopline==VERSION`` from PyPI: that works only once the version is
published, and it need not be the code that logged and serves the model (a fix on a
branch, an editable install). So the build context gets a wheel of the Loopline that runs
``loopline package``, and the Dockerfile installs it.

The wheel is written from the installed package itself - its files as they are on disk,
and the metadata of its installed distribution (name, version, dependencies, entry
points) - following the binary distribution format (PEP 427): no build backend and no
network. ``pip wheel .`` needs setuptools in an isolated build environment, which it
downloads; from an editable install ``pip wheel --no-build-isolation`` needs
``setuptools>=77`` and ``wheel`` in the running environment, which is not given. Writing
the ~270 files takes well under a second; pip's wheel of the same tree holds the same
files.

Example:
    >>> # build_wheel(Path("deploy/churn/wheels"))  -> .../loopline-0.1.0-py3-none-any.whl
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import zipfile
from pathlib import Path

import loopline

DIST = "loopline"
#: Pure Python, any Python 3 the metadata's Requires-Python allows.
TAG = "py3-none-any"
#: Fixed entry times: the same code gives the same wheel bytes.
_EPOCH = (1980, 1, 1, 0, 0, 0)
_METADATA_FILES = ("METADATA", "entry_points.txt", "top_level.txt")


def wheel_name(version: str) -> str:
    """The wheel's file name for ``version``.

    Example:
        >>> wheel_name("0.1.0")
        'loopline-0.1.0-py3-none-any.whl'
    """
    return f"{DIST}-{version}-{TAG}.whl"


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def _package_files(root: Path) -> list[tuple[str, bytes]]:
    """Every file of the package folder but compiled bytecode, by its path in the wheel."""
    files = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            files.append((f"{DIST}/{path.relative_to(root).as_posix()}", path.read_bytes()))
    return files


def build_wheel(folder: Path) -> Path:
    """Write a wheel of the running Loopline into ``folder``; return its path. Older
    Loopline wheels there are removed, so the folder holds the one the image installs.

    Example:
        >>> # build_wheel(Path("deploy/churn/wheels")).name  -> 'loopline-0.1.0-py3-none-any.whl'
    """
    dist = importlib.metadata.distribution(DIST)
    version = dist.version
    info = f"{DIST}-{version}.dist-info"
    entries = _package_files(Path(loopline.__file__).parent)
    for meta in _METADATA_FILES:
        text = dist.read_text(meta)
        if text is not None:
            entries.append((f"{info}/{meta}", text.encode("utf-8")))
    generator = f"Generator: loopline package ({version})"
    wheel = f"Wheel-Version: 1.0\n{generator}\nRoot-Is-Purelib: true\nTag: {TAG}\n"
    entries.append((f"{info}/WHEEL", wheel.encode()))
    record = [_record_line(name, data) for name, data in entries] + [f"{info}/RECORD,,"]
    entries.append((f"{info}/RECORD", ("\n".join(record) + "\n").encode()))
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob(f"{DIST}-*.whl"):
        old.unlink()
    out = folder / wheel_name(version)
    part = folder / f".{out.name}.part"
    with zipfile.ZipFile(part, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            entry = zipfile.ZipInfo(name, date_time=_EPOCH)
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(entry, data)
    part.replace(out)
    return out
