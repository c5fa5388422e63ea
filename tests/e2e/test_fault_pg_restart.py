"""Fault: PostgreSQL restarted (``pg_ctl restart -m fast``) while 8 writers log metrics.

The cluster is the test's own (``initdb`` in a temporary folder, on a free port), never the
shared test cluster. Four writers use the SDK straight on PostgreSQL
(``LOOPLINE_URI=postgresql://...``): a batch cut off by the restart is retried for
``LOOPLINE_DB_RETRY_S`` and, when its COMMIT was cut off, looked up by transaction id
first (:func:`loopline.core.db_retry.run_transaction`). Four use the remote SDK through a
``loopline server`` on the same cluster: the server answers 503 while the database is
away and the client retries the numbered batch. Afterwards every acknowledged point is in
the store exactly once.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

import loopline as ll
from loopline.tracking import run_data
from tests.e2e.faults import PG_BIN, KillableServer, PrivateCluster, WriterGroup
from tests.server.conftest import free_port


@pytest.fixture
def cluster() -> Iterator[PrivateCluster]:
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"no PostgreSQL binaries in {PG_BIN} (set LOOPLINE_TEST_PG_BIN)")
    # Under /tmp itself: pytest's folders are private to root, and the cluster's owner
    # ('postgres' when the tests run as root) must reach its folder.
    folder = Path(tempfile.mkdtemp(prefix="loopline-faults-pg-"))
    pg = PrivateCluster(folder, free_port())
    try:
        pg.start()
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_nothing_acknowledged_is_lost_when_postgresql_restarts(
    cluster: PrivateCluster, tmp_path: Path
) -> None:
    ll.init(uri=cluster.uri, artifacts=str(tmp_path / "artifacts")).close()  # migrate once
    server = KillableServer(
        free_port(),
        {"LOOPLINE_URI": cluster.uri, "LOOPLINE_ARTIFACTS": str(tmp_path / "artifacts")},
        tmp_path / "server.log",
    )
    server.start()
    direct = WriterGroup(tmp_path / "direct", {"LOOPLINE_URI": cluster.uri,
                                               "LOOPLINE_DB_RETRY_S": "60"})  # fmt: skip
    remote = WriterGroup(tmp_path / "remote", {"LOOPLINE_URI": server.url,
                                               "LOOPLINE_HTTP_RETRY_S": "60"})  # fmt: skip
    try:
        direct.start("sdk", 4)
        remote.start("sdk", 4)
        for group in (direct, remote):
            group.wait_acked_beyond([-1] * 4, 120, "every writer acknowledged once")
        time.sleep(1.0)  # under load
        started = time.monotonic()
        cluster.restart()
        restart_s = time.monotonic() - started
        for group in (direct, remote):
            group.wait_acked_beyond(group.marks(), 120, "every writer got through again")
            group.stop()
    finally:
        direct.kill_all()
        remote.kill_all()
        server.stop()

    ctx = ll.init(uri=cluster.uri, artifacts=str(tmp_path / "artifacts"))
    try:
        for w in direct.writers + remote.writers:
            history = run_data.get_metric_history(ctx.engine, w.run_id(), "m")
            steps = Counter(p.step for p in history)
            acked = w.last_acked()
            missing = [s for s in range(acked + 1) if s not in steps]
            assert not missing, f"lost acknowledged steps {missing[:10]} ({w.out})"
            twice = [s for s, n in steps.items() if n > 1]
            assert not twice, f"steps written twice {twice[:10]} ({w.out})"
            assert sorted(steps) == list(range(w.done() + 1))  # type: ignore[operator]
    finally:
        ctx.close()
    assert restart_s < 60
