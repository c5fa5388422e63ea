"""The loop lock: one holder per store, released on stop, visible to `loop status`."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from loopline.core.context import Context
from loopline.loop.leader import FileLeader, LocalLeader, holder, leader_for, sqlite_lock_path
from loopline.loop.runner import LoopRunner
from tests.loop import scenario


def test_one_holder_at_a_time_on_each_store(ctx: Context) -> None:
    first, second = leader_for(ctx), leader_for(ctx)
    assert holder(ctx) is None
    assert first.try_acquire() and first.holds()
    assert not second.try_acquire() and not second.holds()
    assert first.try_acquire()  # taking it again is a no-op
    seen = holder(ctx)
    assert seen is not None and seen["holder"].endswith(f":{os.getpid()}")
    assert seen["since"] is not None
    first.release()
    assert not first.holds() and holder(ctx) is None
    assert second.try_acquire()
    second.release()


def test_the_sqlite_lock_is_a_file_next_to_the_database(embedded_ctx: Context) -> None:
    leader = leader_for(embedded_ctx)
    assert isinstance(leader, FileLeader)
    path = sqlite_lock_path(embedded_ctx.engine)
    assert path is not None and path.name == "meta.db.loop.lock"
    assert path.parent == Path(str(embedded_ctx.engine.url.database)).resolve().parent
    assert leader.try_acquire() and path.exists()
    seen = holder(embedded_ctx)
    assert seen is not None and seen["lock"] == str(path)
    assert seen["holder"] == f"{os.uname().nodename}:{os.getpid()}"
    leader.release()
    assert path.exists() and holder(embedded_ctx) is None  # the file stays, unlocked


def test_an_in_memory_store_has_a_process_lock() -> None:
    a, b = LocalLeader(), LocalLeader()
    assert a.try_acquire() and not b.try_acquire()
    a.release()
    assert b.try_acquire()
    b.release()


def test_the_runner_passes_only_while_it_leads(ctx: Context) -> None:
    policies = [scenario.policy(model="not-deployed")]
    other = leader_for(ctx)
    assert other.try_acquire()
    runner = LoopRunner(policies, interval=0.01, ctx=ctx)
    assert runner.step() is False and runner.passes == 0
    other.release()
    assert runner.step() is True and runner.passes == 1
    assert runner.leader.holds()
    runner.start()
    assert runner.stop(timeout=10)
    assert not runner.leader.holds() and holder(ctx) is None


def test_a_failing_pass_is_logged_and_retried(
    embedded_ctx: Context, caplog: pytest.LogCaptureFixture
) -> None:
    with embedded_ctx.engine.begin() as conn:  # every pass now fails in the database
        conn.execute(sa.text("DROP TABLE loop_state"))
    runner = LoopRunner([scenario.policy(model="m")], interval=0.05, ctx=embedded_ctx)
    with caplog.at_level(logging.ERROR, logger="loopline.loop"):
        runner.start()
        time.sleep(0.5)
        assert runner.stop(timeout=10)
    failures = [r for r in caplog.records if "a loop pass failed" in r.getMessage()]
    assert len(failures) >= 2 and runner.passes == 0
    assert holder(embedded_ctx) is None
