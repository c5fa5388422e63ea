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
import socket
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import blake3
import orjson

from loopline.tracking.validation import MAX_TAG_VALUE_LENGTH

GIT_TIMEOUT_S = 10.0
#: Where the environment document goes inside each run's artifacts.
ENVIRONMENT_ARTIFACT = "loopline/environment.json"


@dataclass(frozen=True)
class GitState:
    """The state of the git work tree a run started in.

    Example:
        >>> # git_state().commit  -> '7f7efba8...'
    """

    root: str
    commit: str
    branch: str | None
    diff_blake3: str
    dirty: bool


def _git(args: list[str], cwd: str | None) -> str | None:
    try:
        done = subprocess.run(
            ["git", "--no-optional-locks", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):  # no git, or a hung repository
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _diff_hash(cwd: str | None) -> str | None:
    """BLAKE3 of ``git diff HEAD --binary``, streamed (a diff may be large)."""
    hasher = blake3.blake3()
    try:
        proc = subprocess.Popen(
            [
                "git",
                "--no-optional-locks",
                "diff",
                "HEAD",
                "--binary",
                "--no-color",
                "--no-ext-diff",
            ],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
    except OSError:
        return None
    assert proc.stdout is not None
    with proc:
        while chunk := proc.stdout.read(1 << 20):
            hasher.update(chunk)
        try:
            code = proc.wait(timeout=GIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            return None
    return hasher.hexdigest() if code == 0 else None


def _may_be_in_git(cwd: str | None) -> bool:
    """False when no folder from ``cwd`` up holds ``.git``: git itself would find nothing.

    Saves starting a ``git`` process (milliseconds) for every run started outside a
    repository. Git's own variables that point elsewhere (``GIT_DIR``) defeat the check.
    """
    if "GIT_DIR" in os.environ or "GIT_WORK_TREE" in os.environ:  # git's settings, not ours
        return True
    folder = (Path(cwd) if cwd else Path.cwd()).resolve()
    return any((d / ".git").exists() for d in (folder, *folder.parents))


def git_state(cwd: str | None = None) -> GitState | None:
    """The git commit, branch and uncommitted-diff hash of ``cwd``, or None outside git.

    Example:
        >>> state = git_state("/")  # not a repository
        >>> state is None
        True
    """
    if not _may_be_in_git(cwd):
        return None
    out = _git(["rev-parse", "--show-toplevel", "HEAD", "--abbrev-ref", "HEAD"], cwd)
    if out is None:
        return None
    lines = out.splitlines()
    if len(lines) != 3:
        return None
    root, commit, branch = lines
    diff = _diff_hash(cwd)
    if diff is None:
        return None
    empty = blake3.blake3(b"").hexdigest()
    return GitState(
        root=root,
        commit=commit,
        branch=None if branch == "HEAD" else branch,
        diff_blake3=diff,
        dirty=diff != empty,
    )


@cache
def installed_packages() -> dict[str, str]:
    """Every installed distribution and its version, by lower-case name (read once).

    Example:
        >>> "sqlalchemy" in installed_packages()
        True
    """
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"] if dist.metadata else None
        if name:
            found.setdefault(name.lower().replace("_", "-"), dist.version)
    return dict(sorted(found.items()))


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


def _clip(text: str) -> str:
    if len(text) <= MAX_TAG_VALUE_LENGTH:
        return text
    return text[: MAX_TAG_VALUE_LENGTH - 3] + "..."


def run_tags(argv: list[str] | None = None, cwd: str | None = None) -> dict[str, str]:
    """The tags every run gets on start: code version, command, Python, host, source.

    Example:
        >>> run_tags(["train.py", "--fast"])["loopline.command"]
        'train.py --fast'
    """
    argv = list(sys.argv if argv is None else argv)
    tags = {
        "mlflow.source.type": "LOCAL",
        "mlflow.source.name": _clip(argv[0] if argv and argv[0] else "<interactive>"),
        "loopline.command": _clip(shlex.join(argv)),
        "loopline.python": platform.python_version(),
        "loopline.host": socket.gethostname(),
        "loopline.pid": str(os.getpid()),
    }
    state = git_state(cwd)
    if state is not None:
        tags["mlflow.source.git.commit"] = state.commit
        tags["mlflow.source.git.repoRoot"] = _clip(state.root)
        tags["loopline.git.diff_blake3"] = state.diff_blake3
        tags["loopline.git.dirty"] = "true" if state.dirty else "false"
        if state.branch:
            tags["mlflow.source.git.branch"] = _clip(state.branch)
    return tags
