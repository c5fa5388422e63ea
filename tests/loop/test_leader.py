"""The loop lock: one holder per store, released on stop, visible to `loop status`; its
leadership term fences the writes of a leader that lost the lock mid-pass."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
import yaml
from typer.testing import CliRunner

import loopline as ll
from loopline.cli.main import app
from loopline.core import audit
from loopline.core.context import Context
from loopline.errors import Conflict, LostLeadership
from loopline.loop import controller, records
from loopline.loop.leader import (
    FileLeader,
    Leader,
    LocalLeader,
    PostgresLeader,
    fenced,
    holder,
    leader_for,
    sqlite_lock_path,
    still_leading,
)
from loopline.loop.policy import LoopPolicy
from loopline.loop.runner import LoopRunner, as_leader
from loopline.monitoring.prediction_log import PredictionLogger
from loopline.monitoring.tables import loop_leader
from loopline.serving.deploy import get_deployment
from tests.loop import scenario
from tests.serving import helpers
from tests.serving.helpers import FEATURES


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


# -- fencing: a leadership term per lock, checked by every write of a pass -----------------

TOY = "toy"
#: Run (once) by :func:`retrain` before it trains: a takeover in the middle of a pass.
_before_retrain: list[Callable[[], None]] = []


def retrain(data: Any) -> Any:
    """The toy loop's retraining pipeline (named by :func:`toy_loop`'s policy)."""
    while _before_retrain:
        _before_retrain.pop()()
    frame = data.to_pandas()
    with ll.start_run(experiment="toy-loop") as run:
        run.log_model(helpers.good_model(frame), "model", input_example=frame[FEATURES].head(5))
    return run


def toy_loop(ceiling: float | None = 1.0) -> LoopPolicy:
    """A toy model deployed with 30 logged predictions of 5 ms: over a latency ceiling of
    1 ms the loop retrains (in milliseconds), gates and canaries it; without one it idles."""
    data = helpers.toy_data(200)
    ll.datasets.register("toy", data)
    ll.datasets.register("toy-holdout", helpers.toy_data(200, seed=1))
    ll.deploy(TOY, helpers.register(helpers.good_model(data), TOY, data))
    with PredictionLogger(start=False) as logger:
        for i, row in enumerate(data[FEATURES].head(30).to_dict("records")):
            logger.log(f"r{i}", TOY, 1, [row], [0], 5.0)
    monitor: dict[str, Any] = {"window_requests": 30, "min_rows": 10}
    if ceiling is not None:
        monitor["ceilings"] = {"latency_p99_ms": ceiling}
    return LoopPolicy.model_validate(
        {
            "model": TOY,
            "data": "toy",
            "monitor": monitor,
            "retrain": {"pipeline": "tests.loop.test_leader:retrain"},
            "gate": {
                "dataset": "toy-holdout",
                "thresholds": {"label": "label", "metrics": {"accuracy": {"lower": 0.6}}},
            },
            "rollout": {"strategy": "canary", "options": {"steps": [50, 100]}},
        }
    )


def _drop_lock(leader: Leader, ctx: Context) -> None:
    """The lock goes while its holder works: on PostgreSQL its backend is terminated (as a
    restart or a network cut would); a flock only goes with its process, so on SQLite the
    file is unlocked by hand."""
    if isinstance(leader, PostgresLeader):
        assert leader._conn is not None
        pid = leader._conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()
        with ctx.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
        assert not leader.holds()
    else:
        leader._unlock()


def _runs(ctx: Context) -> int:
    with ctx.engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT COUNT(*) FROM runs")).scalar_one())


def _kinds() -> list[str]:
    return [e["kind"] for e in records.events(TOY)]


def test_taking_the_lock_takes_the_next_term(ctx: Context) -> None:
    first, second = leader_for(ctx), leader_for(ctx)
    assert first.term is None and first.try_acquire() and first.term == 1
    first.release()
    assert first.term is None and second.try_acquire() and second.term == 2
    with ctx.engine.connect() as conn:
        row = conn.execute(sa.select(loop_leader)).one()
    assert (row.name, row.term) == ("loop", 2) and row.holder.startswith(f"{os.uname().nodename}:")
    second.release()


def test_a_deposed_leaders_writes_are_refused_whole(ctx: Context) -> None:
    old, new = leader_for(ctx), leader_for(ctx)
    assert old.try_acquire()
    with fenced(old):
        still_leading()
        records.record(ctx, TOY, "trigger", "as leader")
    _drop_lock(old, ctx)
    assert new.try_acquire() and new.term == 2
    audited = len(audit.events(ctx.engine))
    with fenced(old), pytest.raises(LostLeadership, match=r"took term 1 .* at term 2"):
        records.record(ctx, TOY, "retrain", "deposed", state={"last_trigger": 1.0})
    with fenced(old), pytest.raises(LostLeadership):
        still_leading()
    assert _kinds() == ["trigger"] and len(audit.events(ctx.engine)) == audited
    assert not records.is_paused(TOY, ctx) and records._state(ctx, TOY) is None
    with fenced(new):
        records.record(ctx, TOY, "retrain", "the new leader")
    records.record(ctx, TOY, "gate", "outside a pass nothing is fenced")
    assert _kinds() == ["trigger", "retrain", "gate"] and audit.verify(ctx.engine).ok
    new.release()


def test_a_deposed_leaders_pipeline_step_threads_are_fenced_too(ctx: Context) -> None:
    # A retrain's steps run on the local executor's threads; a pool thread started with an
    # empty context, so a deposed leader's step committed unfenced.
    from loopline.training.executors import LocalExecutor

    old, new = leader_for(ctx), leader_for(ctx)
    assert old.try_acquire()
    _drop_lock(old, ctx)
    assert new.try_acquire()
    with fenced(old), LocalExecutor(max_workers=2) as pool:
        step = pool.submit(records.record, ctx, TOY, "retrain", "from a step thread")
        with pytest.raises(LostLeadership):
            step.result()
    assert _kinds() == []
    with LocalExecutor(max_workers=1) as pool:  # outside a pass nothing is fenced
        pool.submit(records.record, ctx, TOY, "gate", "a library call").result()
    assert _kinds() == ["gate"]
    new.release()


def test_a_leader_deposed_mid_retrain_stops_and_the_next_one_starts_over(
    ctx: Context, caplog: pytest.LogCaptureFixture
) -> None:
    policy = toy_loop()
    a = LoopRunner([policy], ctx=ctx)
    b = LoopRunner([policy], ctx=ctx, leader=leader_for(ctx))
    runs = _runs(ctx)

    def takeover() -> None:
        _drop_lock(a.leader, ctx)
        assert b.leader.try_acquire()

    _before_retrain.append(takeover)
    with caplog.at_level(logging.WARNING, logger="loopline.loop"):
        assert a.step() is False  # its pass stopped at its first write after the takeover
    assert any("the loop pass stopped" in r.getMessage() for r in caplog.records)
    assert not a.leader.holds() and a.passes == 0
    assert _kinds() == ["trigger"]  # no model, run, verdict or deployment of the old leader
    assert [v.version for v in ll.registry.versions(TOY)] == [1]
    assert _runs(ctx) == runs
    assert get_deployment(TOY).revision == 1
    assert b.step() is True
    assert _kinds() == ["trigger", "interrupted", "trigger", "retrain", "gate", "deploy"]
    d = get_deployment(TOY)
    assert (d.stable_version, d.candidate_version) == (1, 2)
    assert audit.verify(ctx.engine).ok
    b.leader.release()


def test_a_deploy_whose_event_was_lost_is_recorded_by_the_next_leader(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loopline.serving import deploy as deploy_module

    policy = toy_loop()
    a = LoopRunner([policy], ctx=ctx)
    b = LoopRunner([policy], ctx=ctx, leader=leader_for(ctx))
    real = deploy_module.deploy

    def deploy_then_lose_the_lock(*args: Any, **kwargs: Any) -> Any:
        done = real(*args, **kwargs)
        _drop_lock(a.leader, ctx)
        assert b.leader.try_acquire()
        return done

    monkeypatch.setattr(deploy_module, "deploy", deploy_then_lose_the_lock)
    assert a.step() is False
    assert _kinds() == ["trigger", "retrain", "gate"]
    assert get_deployment(TOY).candidate_version == 2  # it went out before the takeover
    monkeypatch.setattr(deploy_module, "deploy", real)
    assert b.step() is True  # records it, then waits for the rollout: no second retrain
    events = records.events(TOY)
    assert [e["kind"] for e in events] == ["trigger", "retrain", "gate", "deploy"]
    assert events[-1]["deployment_revision"] == get_deployment(TOY).revision == 2
    assert events[-1]["verdict_id"] == events[-2]["verdict_id"] is not None
    assert controller.run_policy(policy).outcome == "rollout"
    b.leader.release()


def test_an_action_interrupted_twice_in_a_row_keeps_the_cooldown(ctx: Context) -> None:
    quiet = toy_loop(ceiling=None)
    records.record(ctx, TOY, "trigger", "t", state={"last_trigger": 100.0})
    assert controller.run_policy(quiet).outcome == "ok"
    assert _kinds() == ["trigger", "interrupted"]
    assert records._state(ctx, TOY).last_trigger is None  # starts over at once
    records.record(ctx, TOY, "trigger", "t", state={"last_trigger": 200.0})
    records.record(ctx, TOY, "retrain", "r", model_version=1)
    assert controller.run_policy(quiet).outcome == "ok"
    events = records.events(TOY)
    assert [e["kind"] for e in events][-1] == "interrupted" and events[-1]["model_version"] == 1
    assert "interrupted too" in events[-1]["details"]["message"]
    assert records._state(ctx, TOY).last_trigger == 200.0


def test_a_pass_by_hand_refuses_while_another_process_leads(ctx: Context, tmp_path: Path) -> None:
    (tmp_path / "policies").mkdir()
    policy = scenario.policy(model="not-deployed").model_dump(mode="json")
    (tmp_path / "policies" / "p.yaml").write_text(yaml.safe_dump(policy))
    other = leader_for(ctx)
    assert other.try_acquire()
    busy = pytest.raises(Conflict, match=rf"runs the loop on this store: .*:{os.getpid()}")
    with busy, as_leader(ctx):
        pass
    refused = CliRunner().invoke(app, ["loop", "once", "--root", str(tmp_path)])
    assert isinstance(refused.exception, Conflict)  # `loopline` exits 5 on it
    assert refused.exception.exit_code == 5 and "runs the loop" in refused.exception.message
    other.release()
    with as_leader(ctx) as leader:
        assert leader.holds() and leader.term == 2
        still_leading()
    done = CliRunner().invoke(app, ["loop", "once", "--root", str(tmp_path), "--json"])
    assert done.exit_code == 0, done.output
    assert orjson.loads(done.output)[0]["outcome"] == "idle"
    assert holder(ctx) is None
