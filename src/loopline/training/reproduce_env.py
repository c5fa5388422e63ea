"""The Python environment a reproduction runs in: the current one, checked, or a fresh venv.

``current`` reuses this interpreter after comparing its packages with the recorded
versions (each difference is reported, none is fatal: the metrics decide). ``fresh``
builds a virtual environment with ``python -m venv`` and ``pip install``\\s the recorded
versions: the distributions whose modules the run imported are installed, and every other
recorded version is a pip *constraint*, so that their dependencies come at the recorded
versions too. Loopline itself is installed from the checked-out code when the project
under test is Loopline, else from where this Loopline was installed from. Distributions
installed from a local folder (the project under test, typically) are not asked of PyPI:
the checked-out code is on ``PYTHONPATH`` instead.

Example:
    >>> compare_packages({"numpy": "2.0.0"}, {"numpy": "2.1.0"}, ["numpy"])
    [PackageMismatch(package='numpy', recorded='2.0.0', installed='2.1.0')]
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from loopline.errors import InvalidInput, LooplineError

#: Never pinned: the venv brings its own installer.
_INSTALLER = {"pip"}
_NAME_RE = re.compile(r"[-_.]+")


def normalize(name: str) -> str:
    """A distribution name as the environment document keys it (lower case, ``-``).

    Example:
        >>> normalize("Scikit_Learn")
        'scikit-learn'
    """
    return _NAME_RE.sub("-", name).lower()


@dataclass(frozen=True)
class PackageMismatch:
    """A package whose installed version differs from the recorded one (None: absent)."""

    package: str
    recorded: str | None
    installed: str | None

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``.

        Example:
            >>> PackageMismatch("numpy", "2.0.0", None).to_dict()["installed"] is None
            True
        """
        return asdict(self)


def compare_packages(
    recorded: dict[str, str], installed: dict[str, str], names: Iterable[str]
) -> list[PackageMismatch]:
    """The packages among ``names`` whose installed version is not the recorded one.

    Example:
        >>> compare_packages({"a": "1"}, {"a": "1"}, ["a"])
        []
    """
    norm_recorded = {normalize(k): v for k, v in recorded.items()}
    norm_installed = {normalize(k): v for k, v in installed.items()}
    out = []
    for name in sorted({normalize(n) for n in names}):
        want, have = norm_recorded.get(name), norm_installed.get(name)
        if want != have:
            out.append(PackageMismatch(name, want, have))
    return out


@cache
def _module_owners() -> dict[str, list[str]]:
    return {k: [normalize(d) for d in v] for k, v in metadata.packages_distributions().items()}


def distributions_of(modules: Iterable[str]) -> set[str]:
    """The installed distributions that provide the top-level ``modules``.

    Example:
        >>> "orjson" in distributions_of(["orjson"])
        True
    """
    owners = _module_owners()
    return {dist for module in modules for dist in owners.get(module, [])}


def local_source(dist: str) -> Path | None:
    """The folder an installed distribution was installed from (``pip install PATH``/``-e``).

    Example:
        >>> local_source("orjson") is None
        True
    """
    try:
        raw = metadata.distribution(dist).read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return None
    if not raw:
        return None
    info = json.loads(raw)
    url = urlparse(str(info.get("url", "")))
    if url.scheme != "file" or "dir_info" not in info:
        return None
    return Path(unquote(url.path))


def project_name(folder: Path) -> str | None:
    """The ``[project] name`` in ``folder/pyproject.toml``, normalized, or None.

    Example:
        >>> project_name(Path("/nonexistent")) is None
        True
    """
    try:
        data = tomllib.loads((folder / "pyproject.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return None
    name = data.get("project", {}).get("name")
    return normalize(name) if isinstance(name, str) else None


def loopline_requirement(checkout: Path, recorded: dict[str, str]) -> str:
    """What ``pip install`` gets Loopline from: the checkout, this install's folder, PyPI.

    Example:
        >>> # loopline_requirement(Path("/tmp/code"), {"loopline": "0.1.0"})  -> '/tmp/code'
    """
    if project_name(checkout) == "loopline":
        return str(checkout)
    source = local_source("loopline")
    if source is not None and project_name(source) == "loopline":
        return str(source)
    version = recorded.get("loopline")
    return f"loopline=={version}" if version else "loopline"


def installed_in(python: Path | str) -> dict[str, str]:
    """The distributions installed for the interpreter ``python``, by normalized name.

    Example:
        >>> "orjson" in installed_in(sys.executable)
        True
    """
    script = (
        "import json, importlib.metadata as m\n"
        "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()"
        " if d.metadata and d.metadata['Name']}))"
    )
    done = subprocess.run(
        [str(python), "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    if done.returncode != 0:
        raise LooplineError(
            f"could not list the packages of {python}: {done.stderr.strip()[-500:]}",
            hint="check that the environment's interpreter starts",
        )
    return {normalize(k): v for k, v in json.loads(done.stdout).items()}


LineFn = Callable[[str], None]


def _stream(cmd: list[str], what: str, on_line: LineFn | None, cwd: Path | None = None) -> None:
    """Run ``cmd``, passing each output line to ``on_line``; raise with the tail on failure."""
    tail: list[str] = []
    with subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            tail = [*tail[-40:], line.rstrip()]
            if on_line is not None and line.strip():
                on_line(line.strip())
        code = proc.wait()
    if code != 0:
        raise LooplineError(
            f"{what} failed (exit {code}):\n" + "\n".join(tail[-20:]),
            hint="check that PyPI is reachable and that the recorded versions exist for this "
            "Python and platform; or reuse this interpreter with --env current",
        )


def find_uv() -> str | None:
    """The ``uv`` beside this interpreter (a venv's ``bin/``) or on ``PATH``; None without.

    Example:
        >>> find_uv() is None or find_uv().endswith(("uv", "uv.exe"))
        True
    """
    here = Path(sys.executable).parent / ("uv.exe" if sys.platform == "win32" else "uv")
    if here.is_file():
        return str(here)
    return shutil.which("uv")


INSTALLERS = ("auto", "uv", "pip")


def build_venv(
    dest: Path,
    requirements: list[str],
    constraints: dict[str, str],
    *,
    on_line: LineFn | None = None,
    installer: str = "auto",
) -> Path:
    """Create a venv at ``dest``, install ``requirements`` under ``constraints``; its python.

    ``constraints`` maps distribution -> recorded version (``name==version`` lines of a
    constraints file). ``installer`` is ``"uv"``, ``"pip"`` or ``"auto"``: uv when it is
    installed (it builds the environment several times faster than pip), and pip when uv is
    missing or fails (uv reads PyPI, not pip.conf, so a private index can stop it). Returns
    the venv's interpreter.

    Example:
        >>> # build_venv(Path("/tmp/v"), ["scikit-learn==1.5.2"], {"numpy": "2.1.3"})
    """
    if installer not in INSTALLERS:
        raise InvalidInput(
            f"installer must be one of {', '.join(INSTALLERS)}, not {installer!r}",
            hint="use 'auto' (uv when installed, else pip)",
        )
    uv = None if installer == "pip" else find_uv()
    if installer == "uv" and uv is None:
        raise LooplineError(
            "installer 'uv' was asked for, but uv is not installed beside this Python or on PATH",
            hint="pip install uv, or use installer 'pip' or 'auto'",
        )
    pins = "".join(
        f"{name}=={version}\n"
        for name, version in sorted(constraints.items())
        if name not in _INSTALLER
    )
    if uv is not None:
        try:
            return _build_with_uv(uv, dest, requirements, pins, on_line)
        except LooplineError as exc:
            if installer == "uv":
                raise
            if on_line is not None:
                on_line(f"uv failed, installing with pip instead: {exc.message.splitlines()[0]}")
            shutil.rmtree(dest, ignore_errors=True)
    return _build_with_pip(dest, requirements, pins, on_line)


def _venv_python(dest: Path) -> Path:
    return dest / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def _build_with_uv(
    uv: str, dest: Path, requirements: list[str], pins: str, on_line: LineFn | None
) -> Path:
    _stream([uv, "venv", "--python", sys.executable, str(dest)], "uv venv", on_line)
    python = _venv_python(dest)
    (dest / "constraints.txt").write_text(pins)
    cmd = [uv, "pip", "install", "--python", str(python), "--no-progress"]
    cmd += ["-c", str(dest / "constraints.txt"), *requirements]
    _stream(cmd, "uv pip install of the recorded package versions", on_line)
    return python


def _build_with_pip(dest: Path, requirements: list[str], pins: str, on_line: LineFn | None) -> Path:
    _stream([sys.executable, "-m", "venv", str(dest)], "python -m venv", on_line)
    python = _venv_python(dest)
    (dest / "constraints.txt").write_text(pins)
    cmd = [
        str(python),
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        "--progress-bar",
        "off",
        # Byte-compiling every installed module costs more than the few the rerun imports.
        "--no-compile",
        "-c",
        str(dest / "constraints.txt"),
        *requirements,
    ]
    _stream(cmd, "pip install of the recorded package versions", on_line)
    return python
