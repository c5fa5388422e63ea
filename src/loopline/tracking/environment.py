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
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import blake3
import orjson

from loopline.core.artifacts import hash_bytes
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


_PARENTS: dict[str, tuple[str, ...]] = {}


def _may_be_in_git(cwd: str | None) -> bool:
    """False when no folder from ``cwd`` up holds ``.git``: git itself would find nothing.

    Saves starting a ``git`` process (milliseconds) for every run started outside a
    repository. Git's own variables that point elsewhere (``GIT_DIR``) defeat the check.
    """
    if "GIT_DIR" in os.environ or "GIT_WORK_TREE" in os.environ:  # git's settings, not ours
        return True
    start = cwd or str(Path.cwd())
    folders = _PARENTS.get(start)
    if folders is None:  # resolving the path costs more than the checks; it does not change
        folder = Path(start).resolve()
        folders = _PARENTS[start] = tuple(str(d / ".git") for d in (folder, *folder.parents))
    return any(_stat_key(d) is not None for d in folders)


def _stat_key(path: str) -> tuple[int, int, int, int] | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)


@dataclass(frozen=True)
class _Watch:
    """What :func:`git_state`'s answer for one folder depends on, and that answer.

    ``meta`` are git's own files (HEAD, the index, the refs) and ``files`` every tracked
    file of the work tree: ``git diff HEAD`` can change only when one of them does (a
    commit, a checkout, ``git add``, an edit, a ``chmod``). Untracked files are not in the
    diff.
    """

    paths: tuple[str, ...]
    key: tuple[tuple[int, int, int, int] | None, ...]
    state: GitState

    def still_valid(self) -> bool:
        return self.key == tuple(_stat_key(p) for p in self.paths)


#: The last git state per folder, reused while nothing it depends on changed.
_WATCHES: dict[str, _Watch] = {}
#: A git state is not reused while any file it depends on changed less than this ago (s).
RACY_S = 2.0
#: Above this many tracked files, stat-ing them all is not worth it: ask git each time.
_MAX_WATCHED_FILES = 50_000


def git_state(cwd: str | None = None) -> GitState | None:
    """The git commit, branch and uncommitted-diff hash of ``cwd``, or None outside git.

    Asking git costs milliseconds (two processes, and hashing the diff); the answer is kept
    per folder and reused while git's files (HEAD, index, refs) and every tracked file keep
    their size, times and inode - so an edit between two runs of one process is seen.

    Example:
        >>> state = git_state("/")  # not a repository
        >>> state is None
        True
    """
    if not _may_be_in_git(cwd):
        return None
    folder = cwd or str(Path.cwd())
    watch = _WATCHES.get(folder)
    if watch is not None and watch.still_valid():
        return watch.state
    _WATCHES.pop(folder, None)
    out = _git(
        [
            "rev-parse",
            "--path-format=absolute",
            "--git-dir",
            "--git-common-dir",
            "--show-toplevel",
            "HEAD",
            "--abbrev-ref",
            "HEAD",
        ],
        cwd,
    )
    if out is None:
        return None
    lines = out.splitlines()
    if len(lines) != 5:
        return None
    git_dir, common_dir, root, commit, branch = lines
    # Stat-ed before git is asked, so that a change while it answers is seen next time.
    # Plain strings (git prints "/"-separated paths): they are stat-ed at every run start.
    meta = (
        f"{git_dir}/HEAD",
        f"{git_dir}/index",
        f"{common_dir}/packed-refs",
        *([f"{common_dir}/refs/heads/{branch}"] if branch != "HEAD" else []),
    )
    meta_key = tuple(_stat_key(p) for p in meta)
    files = _tracked_files(root)
    files_key = tuple(_stat_key(p) for p in files or ())
    diff = _diff_hash(cwd)
    if diff is None:
        return None
    empty = blake3.blake3(b"").hexdigest()
    state = GitState(
        root=root,
        commit=commit,
        branch=None if branch == "HEAD" else branch,
        diff_blake3=diff,
        dirty=diff != empty,
    )
    key = meta_key + files_key
    # "Racy git": a file changed within the file system's clock tick after it was stat-ed
    # keeps its times. Only an answer whose files all changed a while ago is kept.
    racy = time.time_ns() - int(RACY_S * 1e9)
    settled = all(k is None or max(k[0], k[1]) < racy for k in key)
    # git may rewrite its index while answering (refreshing file times): then the next
    # call asks again, and keeps that answer.
    if files is not None and settled and meta_key == tuple(_stat_key(p) for p in meta):
        _WATCHES[folder] = _Watch((*meta, *files), key, state)
    return state


def _tracked_files(root: str) -> tuple[str, ...] | None:
    """Absolute paths of every file git tracks (None: too many, or git failed)."""
    try:
        done = subprocess.run(
            ["git", "--no-optional-locks", "ls-files", "-z", "--full-name"],
            cwd=root,
            capture_output=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    names = [n for n in done.stdout.decode("utf-8", "surrogateescape").split("\0") if n]
    if len(names) > _MAX_WATCHED_FILES:
        return None
    return tuple(f"{root}/{n}" for n in names)


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
        if candidate and Path(candidate).is_file():
            script = Path(candidate).resolve()
            return None if _installed(script) else str(script.parent)
    return None


def _installed(script: Path) -> bool:
    """Whether ``script`` is a tool's: in this Python's installation (its prefix or
    site-packages) or Loopline's own (``python -m loopline.cli.main pipeline run`` from an
    editable install runs the user's pipeline, not Loopline's repository)."""
    package = str(Path(__file__).resolve().parents[1])
    roots = {sys.prefix, sys.exec_prefix, sys.base_prefix, *site.getsitepackages(), package}
    for root in roots:
        folder = Path(root).resolve()
        if folder.parent != folder and script.is_relative_to(folder):  # never "/" itself
            return True
    return False


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
