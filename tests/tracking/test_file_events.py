"""The kernel's file watch says "changed" for every change to a watched file or a folder on
the way to it, not for other files, and refuses to start where it could not be trusted."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest

from loopline.tracking import file_events
from loopline.tracking.file_events import ChangeWatch

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="inotify is Linux's")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    if file_events.file_system_type(str(tmp_path)) not in file_events.LOCAL_FILE_SYSTEMS:
        pytest.skip(f"{tmp_path} is not on a local file system")
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    for name in ("top.py", "pkg/a.py", "pkg/sub/b.py"):
        (tmp_path / name).write_text("x = 1\n")
    return tmp_path


def _watch(tree: Path) -> ChangeWatch:
    files = [str(tree / n) for n in ("top.py", "pkg/a.py", "pkg/sub/b.py")]
    watch = ChangeWatch.start(files, str(tree))
    assert watch is not None
    return watch


def test_other_files_in_the_watched_folders_are_not_changes(tree: Path) -> None:
    watch = _watch(tree)
    (tree / "pkg" / "sub" / "untracked.txt").write_text("new")
    (tree / "pkg" / "sub" / "untracked.txt").unlink()
    (tree / "pkg" / "other").mkdir()
    (tree / "pkg" / "other" / "c.py").write_text("unwatched folder")
    (tree / "pkg" / "a.py").read_text()  # reading is not a change
    assert not watch.changed()
    watch.close()


@pytest.mark.parametrize(
    "change",
    ["write", "append", "chmod", "utime", "delete", "rename away", "replace", "rename folder"],
)
def test_each_change_to_a_watched_file_is_seen(tree: Path, change: str) -> None:
    watch = _watch(tree)
    target = tree / "pkg" / "sub" / "b.py"
    if change == "write":
        target.write_text("x = 2\n")
    elif change == "append":
        with target.open("a") as handle:
            handle.write("y = 1\n")
    elif change == "chmod":
        target.chmod(0o700)
    elif change == "utime":
        os.utime(target, (0, 0))
    elif change == "delete":
        target.unlink()
    elif change == "rename away":
        target.rename(tree / "pkg" / "sub" / "c.py")
    elif change == "replace":
        (tree / "new.py").write_text("x = 3\n")
        (tree / "new.py").replace(target)
    elif change == "rename folder":  # the folder above the file's own
        (tree / "pkg").rename(tree / "pkg2")
    assert watch.changed()
    assert watch.changed()  # and it stays so
    watch.close()


def test_an_overflowing_queue_counts_as_a_change(tree: Path) -> None:
    """When the kernel drops events, it cannot be known that none was a watched file's."""
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    if limit > 100_000:
        pytest.skip("the kernel's event queue is too long to fill quickly")
    watch = _watch(tree)
    noise = tree / "pkg" / "noise.txt"
    with noise.open("wb", buffering=0) as handle:
        for _ in range(limit + 10):  # one IN_MODIFY each, not coalesced: attributes differ
            handle.write(b"x")
            os.utime(noise, None)
    assert watch.changed()
    watch.close()


def test_many_threads_see_one_change(tree: Path) -> None:
    watch = _watch(tree)
    (tree / "top.py").write_text("x = 5\n")
    answers: list[bool] = []
    threads = [threading.Thread(target=lambda: answers.append(watch.changed())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [True] * 8
    watch.close()


def test_a_closed_watch_says_changed(tree: Path) -> None:
    watch = _watch(tree)
    watch.close()
    assert watch.changed()


def test_no_watch_where_it_could_not_be_trusted(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = [str(tree / "top.py"), str(tree / "pkg" / "a.py")]
    monkeypatch.setattr(file_events, "file_system_type", lambda path: "nfs4")
    assert ChangeWatch.start(files, str(tree)) is None  # others' changes are not reported
    monkeypatch.undo()
    monkeypatch.setattr(file_events, "MAX_WATCHED_FOLDERS", 1)
    assert ChangeWatch.start(files, str(tree)) is None  # two folders
    monkeypatch.undo()
    assert ChangeWatch.start([str(tree / "gone" / "x.py")], str(tree)) is None
    assert ChangeWatch.start(["relative.py"], str(tree)) is None


def test_file_system_type_of_the_proc_file_system() -> None:
    assert file_events.file_system_type("/proc") == "proc"
    assert file_events.file_system_type("/no/such/path") is None
