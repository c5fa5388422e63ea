"""``audit.append_many``: several events chained with one head update, same hash format."""

from __future__ import annotations

import itertools

import pytest

from loopline.core import audit
from loopline.core.context import Context


def _event(i: int) -> audit.NewEvent:
    return audit.NewEvent(
        "ada", "run.update", "run", f"r{i}", before={"status": "RUNNING"}, after={"n": i}
    )


def test_a_batch_continues_the_chain_as_single_appends_do(ctx: Context) -> None:
    with ctx.engine.begin() as conn:
        first = ctx.audit(conn, action="alias.set", object_type="model", object_id="m")
    with ctx.engine.begin() as conn:
        batch = audit.append_many(conn, [_event(i) for i in range(5)])
    with ctx.engine.begin() as conn:
        last = ctx.audit(conn, action="alias.set", object_type="model", object_id="m")
    assert [e.seq for e in batch] == [2, 3, 4, 5, 6]
    assert batch[0].prev_hash == first.hash
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(batch))
    assert last.seq == 7 and last.prev_hash == batch[-1].hash
    report = audit.verify(ctx.engine)
    assert report.ok, report.problems
    assert report.checked == 7
    stored = audit.events(ctx.engine, object_type="run", object_id="r3")
    assert [(e.action, e.before, e.after) for e in stored] == [
        ("run.update", {"status": "RUNNING"}, {"n": 3})
    ]
    # The stored hash is the one event_hash gives for the stored fields (format unchanged).
    e = stored[0]
    assert e.hash == audit.event_hash(
        e.seq, e.ts, e.actor, e.action, e.object_type, e.object_id,
        '{"status":"RUNNING"}', '{"n":3}', None, e.prev_hash,
    )  # fmt: skip


def test_an_empty_batch_writes_nothing(ctx: Context) -> None:
    with ctx.engine.begin() as conn:
        assert audit.append_many(conn, []) == []
    assert audit.verify(ctx.engine).checked == 0


def test_a_batch_rolls_back_with_its_transaction(ctx: Context) -> None:
    with pytest.raises(RuntimeError), ctx.engine.begin() as conn:
        audit.append_many(conn, [_event(1), _event(2)])
        raise RuntimeError("the change failed")
    with ctx.engine.begin() as conn:
        again = audit.append_many(conn, [_event(3)])
    assert again[0].seq == 1
    assert audit.verify(ctx.engine).ok
