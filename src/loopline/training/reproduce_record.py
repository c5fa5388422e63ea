"""What a pipeline run records so that ``loopline reproduce`` can run it again.

The run's tags already hold the git commit, the repository root and whether the work tree
was dirty (:mod:`loopline.tracking.environment`), its ``loopline/environment.json`` the
package versions, and ``pipeline_runs`` the target (``MODULE:PIPELINE``) and params. This
module adds, on the pipeline's run:

* ``loopline/git.diff`` - when the tree was dirty, the ``git diff HEAD --binary`` text
  itself (the hash alone cannot be re-applied). Artifacts are content-addressed, so a
  diff that does not change between runs is stored once;
* tags saying where to import the pipeline from (``loopline.pipeline.import_root``: the
  folder on ``sys.path`` that holds its module), the working folder
  (``loopline.pipeline.workdir``), both given to ``start_run`` with the other tags, and
  the top-level modules imported by the end of the run (``loopline.pipeline.modules``:
  which packages a fresh environment needs; mapped to distributions only when
  reproducing, since that mapping costs ~150 ms), set with the run's final status. So a
  clean work tree costs no extra write at all.

Example:
    >>> relative_to("/repo/src", "/repo")
    'src'
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import blake3

from loopline.tracking.validation import MAX_TAG_VALUE_LENGTH

if TYPE_CHECKING:
    from loopline.tracking.run_handle import Run

DIFF_ARTIFACT = "loopline/git.diff"
IMPORT_ROOT_TAG = "loopline.pipeline.import_root"
WORKDIR_TAG = "loopline.pipeline.workdir"
MODULES_TAG = "loopline.pipeline.modules"
#: Tags of the run that say which code it ran (written by loopline.tracking.environment).
COMMIT_TAG = "mlflow.source.git.commit"
ROOT_TAG = "mlflow.source.git.repoRoot"
DIRTY_TAG = "loopline.git.dirty"
DIFF_HASH_TAG = "loopline.git.diff_blake3"
#: Tags linking a reproduction and its original (the original gets ``REPRODUCED_BY_TAG``).
REPRODUCTION_OF_TAG = "loopline.reproduction.of"
REPRODUCED_BY_TAG = "loopline.reproduction.latest"
_GIT_TIMEOUT_S = 30.0
_GIT = ("git", "--no-optional-locks")


def relative_to(path: str | None, root: str | None) -> str | None:
    """``path`` relative to ``root`` (``.`` for the root), or None when outside it.

    Example:
        >>> relative_to("/repo", "/repo"), relative_to("/elsewhere", "/repo")
        ('.', None)
    """
    if not path or not root:
        return None
    try:
        rel = Path(path).resolve().relative_to(Path(root).resolve())
    except ValueError:
        return None
    return rel.as_posix() or "."


def import_root(module_name: str) -> str | None:
    """The ``sys.path`` folder from which ``module_name`` was imported, or None.

    Example:
        >>> import json
        >>> import_root("json") == str(Path(json.__file__).parent.parent)
        True
    """
    module = sys.modules.get(module_name)
    file = getattr(module, "__file__", None)
    if not file:
        return None
    folder = Path(file).resolve().parent
    # A package's __init__ sits one folder deeper than a module of the same dotted name.
    depth = module_name.count(".") + (1 if Path(file).name == "__init__.py" else 0)
    for _ in range(depth):
        folder = folder.parent
    return str(folder)


def imported_modules() -> list[str]:
    """The top-level names of the non-standard-library modules imported so far.

    Example:
        >>> "orjson" in imported_modules(), "os" in imported_modules()
        (True, False)
    """
    stdlib = sys.stdlib_module_names
    tops = {name.partition(".")[0] for name in list(sys.modules)}
    return sorted(t for t in tops if t not in stdlib and not t.startswith("_"))


def git_diff(root: str) -> bytes | None:
    """``git diff HEAD --binary`` of the repository at ``root`` (None when git fails).

    Example:
        >>> git_diff("/") is None
        True
    """
    try:
        done = subprocess.run(
            [*_GIT, "diff", "HEAD", "--binary", "--no-color", "--no-ext-diff"],
            cwd=root,
            capture_output=True,
            timeout=_GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def record_code(run: Run) -> str | None:
    """Store the uncommitted diff of a dirty work tree on ``run``; return the git root.

    Called right after the pipeline's run started, so the diff is the code it runs.

    Example:
        >>> # with start_run(...) as run: record_code(run)
    """
    tags = run.tags
    root = tags.get(ROOT_TAG)
    # A reproduction runs from a checkout: its diff is the original's, copied afterwards.
    if tags.get(DIRTY_TAG) != "true" or not root or REPRODUCTION_OF_TAG in tags:
        return root
    diff = git_diff(root)
    if diff is None:
        return root
    if blake3.blake3(diff).hexdigest() != tags.get(DIFF_HASH_TAG):
        # The tree changed since the run started a moment ago: keep the hash true to the diff.
        run.set_tag(DIFF_HASH_TAG, blake3.blake3(diff).hexdigest())
    # Raw bytes: a binary diff is not text, and the public log_* take files or dicts.
    run._log_bytes(diff, DIFF_ARTIFACT)
    return root


def entry_tags(target: str) -> dict[str, str]:
    """Tags for the pipeline's run at its start: where its module imports from, the cwd.

    Absolute paths; :func:`relative_to` the recorded git root when reproducing. Given to
    ``start_run`` with the other tags, so they cost no write of their own.

    Example:
        >>> entry_tags("json:loads")[IMPORT_ROOT_TAG] == import_root("json")
        True
    """
    tags = {WORKDIR_TAG: str(Path.cwd())}
    root = import_root(target.partition(":")[0])
    if root is not None:
        tags[IMPORT_ROOT_TAG] = root
    return tags


def modules_tags() -> dict[str, str]:
    """Tags for the pipeline's run at its end: the top-level modules imported by then.

    Set with the run's status in one write. A list too long for a tag is left out (the
    reproduction then pins every recorded package).

    Example:
        >>> "orjson" in modules_tags()[MODULES_TAG].split(",")
        True
    """
    text = ",".join(imported_modules())
    return {MODULES_TAG: text} if len(text) <= MAX_TAG_VALUE_LENGTH else {}
