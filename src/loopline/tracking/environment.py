"""What a run records about where it ran, without being asked: code, command, environment.

* code: the git commit (``mlflow.source.git.commit``), branch, and a BLAKE3 hash of
  ``git diff HEAD --binary`` (``loopline.git.diff_blake3``; ``loopline.git.dirty`` says
  whether there were uncommitted changes to tracked files). Outside a git repository, or
  without git, these tags are simply absent;
* the entry point (``mlflow.source.name``, the script) and the whole command line
  (``loopline.command``);
* the Python version, the host name;
* the installed distributions and their versions, as one JSON document (stored as the run
  artifact ``loopline/environment.json``) - enough to rebuild the environment with
  ``pip install``.

Example:
    >>> b"packages" in environment_document()
    True
"""

from __future__ import annotations

import os
import platform
import shlex
import site
import socket
import sys
from functools import cache, lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import orjson

from loopline.core.artifacts import hash_bytes
from loopline.tracking.git_state import git_state
from loopline.tracking.validation import MAX_TAG_VALUE_LENGTH

#: Where the environment document goes inside each run's artifacts.
ENVIRONMENT_ARTIFACT = "loopline/environment.json"


@cache
def installed_packages() -> dict[str, str]:
    """Every installed distribution and its version, by lower-case name (read once).

    Example:
        >>> "sqlalchemy" in installed_packages()
        True
    """
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        quick = _from_folder_name(dist)
        if quick is not None:
            found.setdefault(*quick)
            continue
        name = dist.metadata["Name"] if dist.metadata else None
        if name:
            found.setdefault(name.lower().replace("_", "-"), dist.version)
    return dict(sorted(found.items()))


def _from_folder_name(dist: metadata.Distribution) -> tuple[str, str] | None:
    """Name and version from a ``name-version.dist-info`` folder, when it says them exactly.

    Parsing every METADATA file costs a quarter of a second in a full environment, paid
    by the first run of every process. A folder name holds the same name (up to case)
    unless it had to escape ``-``, ``.`` or ``_`` as ``_``: such names are read the slow way.
    """
    folder = getattr(dist, "_path", None)
    if not isinstance(folder, Path):
        return None
    stem, _, suffix = folder.name.rpartition(".")
    name, dash, version = stem.partition("-")
    if suffix != "dist-info" or not dash or not name or "_" in name or "-" in version:
        return None
    return name.lower(), version


@cache
def environment_document() -> bytes:
    """The JSON document recorded with every run: interpreter, platform and packages.

    Example:
        >>> doc = orjson.loads(environment_document())
        >>> doc["python"] == platform.python_version()
        True
    """
    doc: dict[str, Any] = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "executable": sys.executable,
        "packages": installed_packages(),
        "requirements": [f"{name}=={ver}" for name, ver in installed_packages().items()],
    }
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2)


@cache
def environment_digest() -> str:
    """The digest of :func:`environment_document`: its address in the artifact store.

    Example:
        >>> environment_digest() == hash_bytes(environment_document())
        True
    """
    return hash_bytes(environment_document())


def _clip(text: str) -> str:
    if len(text) <= MAX_TAG_VALUE_LENGTH:
        return text
    return text[: MAX_TAG_VALUE_LENGTH - 3] + "..."


def code_folder(argv: list[str] | None = None) -> str | None:
    """The folder of the entry-point script, whose git state a run records; None: the cwd.

    ``cd /tmp && python ~/repo/train.py`` runs the code of ``~/repo``, as MLflow records
    it. The script is ``argv[0]`` when given, else ``__main__.__file__`` or ``sys.argv[0]``,
    if it is a file. A script installed in this Python (``pytest``, Jupyter's kernel
    launcher, ``python -m`` of a package in site-packages) or a Loopline module (its CLI)
    is a tool, not the user's code: then, as without a script (``python -c``, a REPL), the
    working directory is used.

    Example:
        >>> code_folder(["-c"]) is None
        True
    """
    candidates: list[str | None]
    if argv is not None:
        candidates = [*argv[:1]]
    else:
        main = getattr(sys.modules.get("__main__"), "__file__", None)
        candidates = [main, sys.argv[0] if sys.argv else None]
    for candidate in candidates:
        if candidate:
            # A relative script name means another file after a chdir.
            where = "" if Path(candidate).is_absolute() else str(Path.cwd())
            folder = _script_folder(candidate, where)
            if folder is not False:
                return folder
    return None


@lru_cache(maxsize=64)
def _script_folder(candidate: str, cwd: str) -> str | Literal[False] | None:
    """The folder of the user's script ``candidate``, None for a tool's, False: no file.

    Kept per process (resolving paths costs more than the rest of a run start)."""
    path = Path(cwd, candidate)
    if not path.is_file():
        return False
    script = path.resolve()
    return None if _installed(script) else str(script.parent)


def _installed(script: Path) -> bool:
    """Whether ``script`` is a tool's: in this Python's installation (its prefix or
    site-packages) or Loopline's own (``python -m loopline.cli.main pipeline run`` from an
    editable install runs the user's pipeline, not Loopline's repository)."""
    return any(script.is_relative_to(folder) for folder in _tool_folders())


@cache
def _tool_folders() -> tuple[Path, ...]:
    package = str(Path(__file__).resolve().parents[1])
    roots = {sys.prefix, sys.exec_prefix, sys.base_prefix, *site.getsitepackages(), package}
    folders = (Path(root).resolve() for root in roots)
    return tuple(f for f in folders if f.parent != f)  # never "/" itself


def run_tags(argv: list[str] | None = None, cwd: str | None = None) -> dict[str, str]:
    """The tags every run gets on start: code version, command, Python, host, source.

    The git tags describe the repository of the entry-point script (:func:`code_folder`),
    or of ``cwd`` when given.

    Example:
        >>> run_tags(["train.py", "--fast"])["loopline.command"]
        'train.py --fast'
    """
    argv_given = argv is not None
    argv = list(sys.argv if argv is None else argv)
    tags = {
        "mlflow.source.type": "LOCAL",
        "mlflow.source.name": _clip(argv[0] if argv and argv[0] else "<interactive>"),
        "loopline.command": _clip(shlex.join(argv)),
        "loopline.python": platform.python_version(),
        "loopline.host": socket.gethostname(),
        "loopline.pid": str(os.getpid()),
    }
    state = git_state(cwd if cwd is not None else code_folder(argv if argv_given else None))
    if state is not None:
        tags["mlflow.source.git.commit"] = state.commit
        tags["mlflow.source.git.repoRoot"] = _clip(state.root)
        tags["loopline.git.diff_blake3"] = state.diff_blake3
        tags["loopline.git.dirty"] = "true" if state.dirty else "false"
        if state.branch:
            tags["mlflow.source.git.branch"] = _clip(state.branch)
    return tags
