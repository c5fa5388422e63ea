"""The git state a run records is reused between runs of one process only while nothing it
depends on changed: every test runs twice, with the kernel's file watch and with ``lstat``
comparisons (its fallback), and both must see every change."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

import loopline as ll
from loopline.core.context import Context
from loopline.tracking import file_events
from loopline.tracking import git_state as gs
from tests.git_repo import git


def _make_repo(folder: Path) -> Path:
    """A committed repository whose files are old."""
    (folder / "src").mkdir(parents=True)
    git(folder, "init", "-q", "-b", "main")
    (folder / "train.py").write_text("print('v1')\n")
    (folder / "data.csv").write_text("a,b\n")
    (folder / "src" / "model.py").write_text("K = 1\n")
    git(folder, "add", ".")
    git(folder, "commit", "-q", "-m", "v1")
    old = time.time() - 3600
    for name in ("train.py", "data.csv", "src/model.py"):
        os.utime(folder / name, (old, old))
    git(folder, "status", "--short")  # git refreshes its index once after such a change
    return folder


def _kernel_watches(folder: Path) -> bool:
    return sys.platform == "linux" and (
        file_events.file_system_type(str(folder)) in file_events.LOCAL_FILE_SYSTEMS
    )


@pytest.fixture(params=["file events", "lstat"])
def events(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Whether the kernel's watch is used (else ``lstat`` comparisons)."""
    monkeypatch.setattr(gs, "USE_FILE_EVENTS", request.param == "file events")
    monkeypatch.setattr(gs, "RACY_S", 0.0)  # ctime is recent in a fresh folder
    for watch in gs._WATCHES.values():
        watch.stop_events()
    gs._WATCHES.clear()
    return bool(request.param == "file events")


@pytest.fixture
def repo(tmp_path: Path, events: bool) -> Path:
    return _make_repo(tmp_path / "repo")


def _count_diffs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    real = gs._diff_hash

    def counting(cwd: str | None) -> str | None:
        calls[0] += 1
        return real(cwd)

    monkeypatch.setattr(gs, "_diff_hash", counting)
    return calls


def test_git_state_is_reused_until_a_tracked_file_changes(
    repo: Path, events: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    diffs = _count_diffs(monkeypatch)
    first = gs.git_state(str(repo))
    assert first is not None and not first.dirty
    if events and _kernel_watches(repo):
        assert gs._WATCHES[str(repo)].events is not None
    assert gs.git_state(str(repo)) == first
    assert diffs[0] == 1  # the second answer came from the cache
    (repo / "train.py").write_text("print('v2')\n")  # same size, new content
    edited = gs.git_state(str(repo))
    assert edited is not None and edited.dirty and edited.diff_blake3 != first.diff_blake3
    assert diffs[0] == 2
    git(repo, "commit", "-q", "-am", "v2")
    committed = gs.git_state(str(repo))
    assert committed is not None and committed.commit != first.commit and not committed.dirty
    calls = diffs[0]
    (repo / "new.py").write_text("x = 1\n")
    (repo / "src" / "notes.txt").write_text("untracked\n")
    assert gs.git_state(str(repo)) == committed  # untracked: not in the diff
    assert diffs[0] == calls  # and not a reason to ask git again
    git(repo, "add", "new.py")  # staged: in the diff
    staged = gs.git_state(str(repo))
    assert staged is not None and staged.dirty
    (repo / "data.csv").unlink()
    assert gs.git_state(str(repo)) != staged


def test_an_edit_between_two_runs_of_one_process_is_recorded(
    ctx: Context, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(repo)
    with ll.start_run() as clean:
        pass
    (repo / "train.py").write_text("print('v3')\n")
    with ll.start_run() as dirty:
        pass
    assert clean.tags["loopline.git.dirty"] == "false"
    assert dirty.tags["loopline.git.dirty"] == "true"


@pytest.mark.parametrize(
    "change",
    ["chmod", "rename a folder", "rename the file over", "checkout", "truncate", "touch"],
)
def test_every_kind_of_change_is_seen(
    repo: Path, change: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = gs.git_state(str(repo))
    assert before is not None and gs.git_state(str(repo)) == before
    model = repo / "src" / "model.py"
    if change == "chmod":
        model.chmod(0o755)
    elif change == "rename a folder":
        (repo / "src").rename(repo / "lib")
    elif change == "rename the file over":  # as editors save: a new file renamed in place
        (repo / "src" / "model.py.tmp").write_text("K = 2\n")
        (repo / "src" / "model.py.tmp").replace(model)
    elif change == "checkout":  # HEAD names another branch
        git(repo, "checkout", "-q", "-b", "other")
    elif change == "truncate":
        with model.open("r+") as handle:
            handle.truncate(0)
    elif change == "touch":  # new times, same bytes: git diff is the same, asked again
        calls = _count_diffs(monkeypatch)
        os.utime(model, None)
        assert gs.git_state(str(repo)) == before
        assert calls == [1]
        return
    after = gs.git_state(str(repo))
    assert after is not None and after != before
    assert gs.git_state(str(repo)) == after  # and reused again from then on


def test_an_edit_through_another_hard_link_is_seen(repo: Path, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere.py"
    os.link(repo / "src" / "model.py", other)
    before = gs.git_state(str(repo))
    with other.open("w") as handle:  # in place: the repository's folder sees no event
        handle.write("K = 9\n")
    after = gs.git_state(str(repo))
    assert before is not None and after is not None and after.dirty and not before.dirty


def test_two_repositories_asked_in_turn_keep_correct_answers(
    tmp_path: Path, events: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the last folder asked keeps the kernel's watch; the other falls back to lstat."""
    first, second = _make_repo(tmp_path / "a"), _make_repo(tmp_path / "b")
    diffs = _count_diffs(monkeypatch)
    a, b = gs.git_state(str(first)), gs.git_state(str(second))
    assert a is not None and b is not None and a.root != b.root
    assert (gs.git_state(str(first)), gs.git_state(str(second))) == (a, b)
    assert diffs[0] == 2
    if events and _kernel_watches(first):
        owners = [w.events is not None for w in gs._WATCHES.values()]
        assert owners.count(True) == 1  # one inotify descriptor per process
    (first / "train.py").write_text("print('a2')\n")
    (second / "train.py").write_text("print('b2')\n")
    a2, b2 = gs.git_state(str(first)), gs.git_state(str(second))
    assert a2 is not None and a2.dirty and b2 is not None and b2.dirty


def test_lstat_comparison_does_not_reuse_a_state_with_recently_changed_files(
    repo: Path, events: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Within the clock tick, times may not move: only the kernel's watch can tell."""
    monkeypatch.setattr(gs, "RACY_S", 2.0)
    (repo / "train.py").write_text("print('v4')\n")
    diffs = _count_diffs(monkeypatch)
    first = gs.git_state(str(repo))
    gs.git_state(str(repo))
    kernel = events and _kernel_watches(repo)
    assert diffs[0] == (1 if kernel else 2)
    (repo / "train.py").write_text("print('v5')\n")  # same size, same tick
    second = gs.git_state(str(repo))
    assert first is not None and second is not None and first != second


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX")
def test_a_forked_child_does_not_take_the_parents_events(repo: Path) -> None:
    before = gs.git_state(str(repo))
    (repo / "train.py").write_text("print('v6')\n")  # queued for the parent
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        code = 1
        try:
            state = gs.git_state(str(repo))
            code = 0 if state is not None and state.dirty else 2
        finally:
            os.write(write, bytes([code]))
            os._exit(0)
    os.close(write)
    status = os.read(read, 1)
    os.close(read)
    os.waitpid(pid, 0)
    assert status == b"\x00"  # the child saw the edit itself
    after = gs.git_state(str(repo))
    assert before is not None and after is not None and after.dirty and not before.dirty


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX")
def test_a_child_forked_while_another_thread_asks_git_does_not_wait_for_ever(
    repo: Path,
) -> None:
    before = gs.git_state(str(repo))
    read, write = os.pipe()
    lock = gs._LOCK
    lock.acquire()  # as a thread of this process asking git at the moment of the fork holds it
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through the pipe
            code = 1
            try:
                state = gs.git_state(str(repo))
                code = 0 if state == before else 2
            finally:
                os.write(write, bytes([code]))
                os._exit(0)
    finally:
        lock.release()
    os.close(write)
    deadline = time.monotonic() + 60
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child waited for a lock its parent's thread held")
        time.sleep(0.01)
    status = os.read(read, 1)
    os.close(read)
    assert status == b"\x00"


def test_the_kernel_watch_is_closed_at_exit(repo: Path, events: bool) -> None:
    """Left to the collector at exit, the inotify descriptor was reported unclosed
    (ResourceWarning in each test worker)."""
    gs.git_state(str(repo))
    watch = gs._WATCHES[str(repo)]
    held = watch.events
    gs._stop_watching()  # registered with atexit
    assert watch.events is None
    if held is not None:
        assert held.changed()  # closed: says so rather than reading a dead descriptor
