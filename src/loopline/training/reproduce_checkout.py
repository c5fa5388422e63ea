"""Stage 2 of a reproduction: the recorded code, written into a new folder.

:func:`checkout` takes ``git archive`` of the recorded commit from a repository it only
reads, then ``git apply`` of the stored diff (the uncommitted changes the run was made
with). It is separate from :mod:`loopline.training.reproduce` because it is all git: it
knows a :class:`~loopline.training.reproduce_resolve.Recorded` and nothing of the store.

Example:
    >>> # checkout(resolve("models:/churn/3"), Path("/tmp/code"))
"""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

from loopline.errors import IntegrityError, InvalidInput, LooplineError, NotFound
from loopline.training.reproduce_resolve import Recorded

_GIT = ("git", "--no-optional-locks")


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*_GIT, "-C", str(repo), *args], capture_output=True, timeout=120, check=False
    )


def checkout(rec: Recorded, dest: Path, repo: str | Path | None = None) -> Path:
    """Write the recorded code (commit + stored diff) into the new folder ``dest``.

    ``repo`` (default: the recorded repository root if it still exists, else the current
    folder) is only read: ``git archive`` of the commit, then ``git apply`` in ``dest``.

    Example:
        >>> # checkout(resolve("models:/churn/3"), Path("/tmp/code"))
    """
    where = Path(repo) if repo else None
    if where is None:
        root = Path(rec.repo_root) if rec.repo_root else None
        where = root if root is not None and root.is_dir() else Path.cwd()
    if _git(where, "rev-parse", "--git-dir").returncode != 0:
        raise InvalidInput(
            f"{where} is not a git repository",
            field="repo",
            hint="run from a clone of the repository, or pass --repo PATH",
        )
    if _git(where, "cat-file", "-e", f"{rec.commit}^{{commit}}").returncode != 0:
        raise NotFound(
            f"commit {rec.commit} (the code of pipeline run {rec.pipeline.id}) is not in the "
            f"repository at {where}",
            hint="fetch it (git fetch --all), or pass --repo with a clone that has it",
        )
    dest.mkdir(parents=True)
    with subprocess.Popen(
        [*_GIT, "-C", str(where), "archive", "--format=tar", rec.commit],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:
        assert proc.stdout is not None
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            tar.extractall(dest, filter="data")
        err = proc.stderr.read() if proc.stderr is not None else b""
        if proc.wait() != 0:
            raise LooplineError(f"git archive {rec.commit} failed: {err.decode().strip()}")
    if rec.diff:
        patch = dest.parent / "recorded.diff"
        patch.write_bytes(rec.diff)
        done = subprocess.run(
            ["git", "apply", "--binary", "--whitespace=nowarn", str(patch)],
            cwd=dest,
            capture_output=True,
            timeout=120,
            check=False,
            # Keep git from taking an enclosing repository for the one to patch.
            env={**os.environ, "GIT_CEILING_DIRECTORIES": str(dest.parent)},
        )
        if done.returncode != 0:
            raise IntegrityError(
                f"the stored diff of pipeline run {rec.pipeline.id} does not apply to commit "
                f"{rec.commit}: {done.stderr.decode().strip()[-500:]}",
                hint="the commit was rewritten since the run; reproduce from its original",
            )
    return dest
