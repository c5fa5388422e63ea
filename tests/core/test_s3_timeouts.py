"""Bounded waits on S3: an endpoint that stops answering gives a clear error, never a hang.

The endpoints here are real TCP servers on loopback that misbehave the way a stuck S3
server does: one takes connections and never says a word; the other answers reads as an
empty bucket would, so that a client gets as far as its first upload, and then neither
reads nor answers that upload (the hang seen in a full-suite run against rclone). The
waits are set small (1 s, 2 attempts), so each failure must arrive within seconds.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import loopline as ll
from loopline.config import Settings
from loopline.core.artifacts import LocalArtifactStore, open_artifact_store
from loopline.core.backup import _copy_artifacts, backup
from loopline.core.backup_location import FsspecSink, LocalSink
from loopline.core.backup_restore import restore
from loopline.core.db import create_engine_for
from loopline.core.doctor import run_checks
from loopline.errors import BackendUnavailable, ConfigError
from tests.conftest import s3_options

ROOT = Path(__file__).resolve().parents[2]
ATTEMPTS = 2
#: attempts x (connect + read) is 4 s, plus backoff; the rest is slack for a loaded machine.
BOUND_S = 20.0

EMPTY_LISTING = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
    b"<Name>bucket</Name><Prefix></Prefix><KeyCount>0</KeyCount><MaxKeys>1000</MaxKeys>"
    b"<IsTruncated>false</IsTruncated></ListBucketResult>"
)


class MuteEndpoint:
    """A TCP server on loopback that never answers (uploads, or everything).

    ``answer_reads``: HEAD gets 404 and GET an empty listing, as from an empty bucket;
    any other request (an upload) is neither read further nor answered.
    """

    def __init__(self, *, answer_reads: bool) -> None:
        self.answer_reads = answer_reads
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self.connections = 0
        self._conns: list[socket.socket] = []
        self._closed = threading.Event()
        self._counted = threading.Condition()
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:  # closed by close()
                return
            with self._counted:
                self.connections += 1
                self._conns.append(conn)
                self._counted.notify_all()
            if self.answer_reads:
                threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, buf = buf.split(b"\r\n\r\n", 1)
                method = head.split(b" ", 1)[0]
                if method == b"HEAD":
                    conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                elif method == b"GET":
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\n"
                        b"Content-Length: %d\r\n\r\n%s" % (len(EMPTY_LISTING), EMPTY_LISTING)
                    )
                else:  # an upload: its body stays unread, its answer never comes
                    self._closed.wait()
                    return
        except OSError:  # the connection was closed by close() or by the client
            return

    def options(self) -> dict[str, Any]:
        """Storage options pointing at this endpoint, with 1 s waits and 2 attempts."""
        return {
            "endpoint_url": self.url,
            "key": "k",
            "secret": "s",
            "config_kwargs": {
                "connect_timeout": 1,
                "read_timeout": 1,
                "retries": {"mode": "standard", "total_max_attempts": ATTEMPTS},
            },
        }

    def connections_made(self, expected: int) -> int:
        """The connections the client made, once it has given up.

        The kernel completes a client's connection before this server accepts it, so on a
        loaded machine the accepting thread may count the last attempt after the client has
        already failed: wait (up to 10 s) for ``expected`` of them, and a moment for any
        extra one, so that a count above ``expected`` is seen too.
        """
        with self._counted:
            self._counted.wait_for(lambda: self.connections >= expected, timeout=10)
            self._counted.wait_for(lambda: self.connections > expected, timeout=0.2)
            return self.connections

    def close(self) -> None:
        self._closed.set()
        # shutdown wakes the accepting thread (a bare close does not on Linux); joining it
        # before closing the connections leaves none accepted and never closed.
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)
        self._acceptor.join(timeout=10)
        self._server.close()
        with self._counted:
            for conn in self._conns:
                conn.close()


@pytest.fixture
def mute() -> Iterator[MuteEndpoint]:
    """An endpoint that takes connections and never answers."""
    endpoint = MuteEndpoint(answer_reads=False)
    yield endpoint
    endpoint.close()


@pytest.fixture
def stuck_uploads() -> Iterator[MuteEndpoint]:
    """An endpoint that answers reads as an empty bucket and never answers an upload."""
    endpoint = MuteEndpoint(answer_reads=True)
    yield endpoint
    endpoint.close()


def _assert_names_the_endpoint(err: BackendUnavailable, endpoint: MuteEndpoint) -> None:
    text = str(err)
    assert f"the S3 endpoint {endpoint.url} did not answer" in text
    assert f"{ATTEMPTS} attempt(s), connect timeout 1 s, read timeout 1 s" in text
    assert err.hint is not None and "LOOPLINE_S3_READ_TIMEOUT_S" in err.hint


def test_store_on_a_mute_endpoint_fails_within_the_bound(mute: MuteEndpoint) -> None:
    store = open_artifact_store("s3://bucket/prefix", mute.options())
    start = time.monotonic()
    with pytest.raises(BackendUnavailable, match="LOOPLINE_ARTIFACTS") as caught:
        store.put_bytes(b"never stored")
    assert time.monotonic() - start < BOUND_S
    _assert_names_the_endpoint(caught.value, mute)
    # botocore's attempts and no more: s3fs's own retry loop does not multiply them.
    assert mute.connections_made(ATTEMPTS) == ATTEMPTS


@pytest.mark.parametrize(
    "size",
    [
        pytest.param(1000, id="small-body"),
        pytest.param(
            40 * 2**20,
            id="body-larger-than-socket-buffers",
            marks=pytest.mark.skipif(
                not hasattr(socket, "TCP_USER_TIMEOUT"), reason="needs TCP_USER_TIMEOUT (Linux)"
            ),
        ),
    ],
)
def test_upload_never_answered_fails_within_the_bound(
    stuck_uploads: MuteEndpoint, tmp_path: Path, size: int
) -> None:
    store = open_artifact_store("s3://bucket/prefix", stuck_uploads.options())
    path = tmp_path / "payload.bin"
    path.write_bytes(os.urandom(1000) * (size // 1000))
    start = time.monotonic()
    with pytest.raises(BackendUnavailable, match="LOOPLINE_ARTIFACTS") as caught:
        store.put_file(path)
    assert time.monotonic() - start < BOUND_S
    _assert_names_the_endpoint(caught.value, stuck_uploads)


def test_backup_to_a_destination_that_never_answers_uploads_fails_within_the_bound(
    stuck_uploads: MuteEndpoint, tmp_path: Path
) -> None:
    ctx = ll.init(uri=f"sqlite:///{tmp_path / 'meta.db'}", artifacts=str(tmp_path / "art"))
    ctx.artifacts.put_bytes(b"one object")
    start = time.monotonic()
    with pytest.raises(BackendUnavailable, match="cannot upload") as caught:
        backup(ctx.engine, ctx.artifacts, "s3://bucket/bk", storage_options=stuck_uploads.options())
    # The failed upload, then one bulk delete of what was uploaded (given up on too).
    assert time.monotonic() - start < 2 * BOUND_S
    _assert_names_the_endpoint(caught.value, stuck_uploads)
    assert caught.value.hint is not None and "DEST" in caught.value.hint
    ctx.close()


def test_abort_removes_what_an_s3_backup_uploaded(s3_url: str) -> None:
    """On the real S3 server: the partial backup goes in one bulk delete."""
    sink = FsspecSink(s3_url, s3_options())
    for rel in ("tables/a.parquet", "artifacts/objects/ab/cdef"):
        sink.path(rel).write_bytes(b"partial")
        sink.publish(rel)
    assert len(sink.fs.find(s3_url)) == 2
    sink.abort()
    sink.fs.invalidate_cache()
    assert sink.fs.find(s3_url) == []


def test_restore_from_a_mute_source_fails_within_the_bound(
    mute: MuteEndpoint, tmp_path: Path
) -> None:
    engine = create_engine_for(f"sqlite:///{tmp_path / 'target.db'}")
    start = time.monotonic()
    with pytest.raises(BackendUnavailable, match="cannot read the backup") as caught:
        store = LocalArtifactStore(tmp_path / "art")
        restore(engine, store, "s3://bucket/bk", storage_options=mute.options())
    assert time.monotonic() - start < BOUND_S
    _assert_names_the_endpoint(caught.value, mute)
    assert caught.value.hint is not None and "SRC" in caught.value.hint
    engine.dispose()


def test_settings_set_the_waits(
    mute: MuteEndpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "LOOPLINE_S3_ENDPOINT_URL": mute.url,
        "LOOPLINE_S3_ACCESS_KEY_ID": "k",
        "LOOPLINE_S3_SECRET_ACCESS_KEY": "s",
        "LOOPLINE_S3_CONNECT_TIMEOUT_S": "1",
        "LOOPLINE_S3_READ_TIMEOUT_S": "1",
        "LOOPLINE_S3_MAX_ATTEMPTS": "3",
    }.items():
        monkeypatch.setenv(name, value)
    ctx = ll.init(uri=f"sqlite:///{tmp_path / 'meta.db'}", artifacts="s3://bucket/prefix")
    start = time.monotonic()
    with pytest.raises(BackendUnavailable, match=f"{mute.url} did not answer") as caught:
        ctx.artifacts.put_bytes(b"x")
    assert time.monotonic() - start < BOUND_S
    assert "3 attempt(s), connect timeout 1.0 s, read timeout 1.0 s" in str(caught.value)
    assert mute.connections_made(3) == 3
    ctx.close()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LOOPLINE_S3_MAX_ATTEMPTS", "0"),
        ("LOOPLINE_S3_READ_TIMEOUT_S", "-1"),
        ("LOOPLINE_S3_CONNECT_TIMEOUT_S", "soon"),
    ],
    ids=["no-attempt", "negative-timeout", "not-a-number"],
)
def test_bad_wait_settings_name_the_setting(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name.removeprefix("LOOPLINE_").lower()):
        ll.init()


def test_failed_copies_stop_the_queued_ones(tmp_path: Path) -> None:
    """After one copy fails, the queued copies are dropped, not each waited out in turn."""
    store = LocalArtifactStore(tmp_path / "art")
    digests = [store.put_bytes(f"object {i}".encode()) for i in range(64)]
    calls: list[str] = []

    class RefusingSink(LocalSink):
        """A real local sink whose every publish fails after a wait, like a dead store."""

        def publish(self, rel: str) -> None:
            calls.append(rel)
            time.sleep(0.2)
            raise BackendUnavailable("the destination does not answer", hint="test")

    sink = RefusingSink(tmp_path / "bk")
    with pytest.raises(BackendUnavailable, match="does not answer"):
        _copy_artifacts(store, sink, digests, lambda *_: None)
    sink.abort()
    assert 0 < len(calls) <= 16  # the copies running at the failure, not all 64


HUNG_TEST = """
    import threading
    from concurrent.futures import ThreadPoolExecutor

    def test_waits_on_a_hung_worker():
        never = threading.Event()
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda _: never.wait(), range(4)))
"""


def test_a_hung_test_fails_the_run_with_a_stack_dump(tmp_path: Path) -> None:
    """pytest-timeout as configured in pyproject.toml ends a test stuck on a worker thread.

    With the signal method the test failed in the main thread and then hung in the
    executor's exit, which joins the worker: the run never ended.
    """
    (tmp_path / "test_hung.py").write_text(textwrap.dedent(HUNG_TEST))
    start = time.monotonic()
    args = ["-c", str(ROOT / "pyproject.toml"), "-o", "timeout=2", "-p", "no:cacheprovider"]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *args, "--rootdir", str(tmp_path), "test_hung.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert time.monotonic() - start < 60
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "Timeout" in out and "test_waits_on_a_hung_worker" in out, out
    assert "Stack of" in out, out  # every thread's stack, the hung worker's included


def test_doctor_reports_a_mute_endpoint_within_one_wait(mute: MuteEndpoint) -> None:
    settings = Settings(
        uri="sqlite:///:memory:",
        artifacts="s3://bucket/prefix",
        s3_endpoint_url=mute.url,
        s3_access_key_id="k",
        s3_secret_access_key="s",
        s3_connect_timeout_s=1,
        s3_read_timeout_s=1,
        s3_max_attempts=5,  # what uploads may spend; the doctor makes one attempt
    )
    start = time.monotonic()
    (artifacts,) = [c for c in run_checks(settings) if c.name == "artifacts"]
    assert time.monotonic() - start < 10
    assert not artifacts.ok and f"the S3 endpoint {mute.url} did not answer" in artifacts.detail
    assert mute.connections_made(1) == 1
