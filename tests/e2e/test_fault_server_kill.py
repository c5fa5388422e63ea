"""Fault: ``loopline server`` killed with SIGKILL while 8 writer processes log through it,
then started again on the same port.

Six writers use Loopline's remote SDK (``LOOPLINE_URI=http://...``: metric batches are
numbered per writer and retried for ``LOOPLINE_HTTP_RETRY_S``, so the server applies each
at most once), two the unmodified MLflow client (``log_batch``, retried by the client's own
HTTP retries). Each writer records the steps acknowledged to it. Afterwards every
acknowledged point is in the store - and for the SDK writers every point exactly once -
and every writer got through after the restart.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

import loopline as ll
from loopline.core.context import Context
from loopline.tracking import run_data
from tests.e2e.faults import KillableServer, WriterGroup
from tests.server.conftest import free_port


@pytest.fixture
def server(tmp_path: Path) -> Iterator[KillableServer]:
    env = {
        "LOOPLINE_URI": f"sqlite:///{tmp_path / 'server.db'}",
        "LOOPLINE_ARTIFACTS": str(tmp_path / "server-artifacts"),
    }
    srv = KillableServer(free_port(), env, tmp_path / "server.log")
    srv.start()
    yield srv
    srv.stop()


@pytest.mark.slow
def test_every_acknowledged_point_survives_a_sigkill_of_the_server(
    server: KillableServer, tmp_path: Path
) -> None:
    group = WriterGroup(
        tmp_path / "writers",
        {
            "LOOPLINE_URI": server.url,
            "LOOPLINE_HTTP_RETRY_S": "90",
            "MLFLOW_TRACKING_URI": server.url,
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",  # retries after 1, 2, 4, 8 ... s
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "8",
        },
    )
    try:
        group.start("sdk", 6)
        group.start("mlflow", 2)
        group.wait_acked_beyond([-1] * 8, 120, "every writer acknowledged once")
        time.sleep(1.0)  # under load
        before_kill = group.marks()
        server.kill()
        time.sleep(1.5)  # writers meet a closed port meanwhile
        server.start()
        restarted = group.marks()
        group.wait_acked_beyond(restarted, 120, "every writer got through after the restart")
        group.stop()
    finally:
        group.kill_all()

    # Read the store the server wrote, directly (the server is still running).
    ctx: Context = ll.init(uri=server.env["LOOPLINE_URI"], artifacts=str(tmp_path / "unused"))
    try:
        for w in group.writers:
            acked = w.last_acked()
            steps = Counter(
                p.step for p in run_data.get_metric_history(ctx.engine, w.run_id(), "m")
            )
            missing = [s for s in range(acked + 1) if s not in steps]
            assert not missing, f"{w.mode} writer lost acknowledged steps {missing[:10]}"
            if w.mode == "sdk":
                assert max(steps.values()) == 1, "a retried batch was applied twice"
                assert sorted(steps) == list(range(w.done() + 1))  # type: ignore[operator]
        # Writers acknowledged points while the server was down only after it came back:
        assert all(a > b for a, b in zip(group.marks(), before_kill, strict=True))
    finally:
        ctx.close()
