from __future__ import annotations

import math
import threading

import pytest
import sqlalchemy as sa

from loopline.core import audit
from loopline.core.context import Context
from loopline.core.schema import audit_events, audit_head
from loopline.errors import InvalidInput


def _log(ctx: Context, n: int) -> None:
    for i in range(n):
        with ctx.engine.begin() as conn:
            ctx.audit(
                conn,
                action="alias.set",
                object_type="model",
                object_id=f"m{i}",
                before={"champion": i},
                after={"champion": i + 1},
                reason=f"step {i}",
            )


def test_intact_chain_verifies(ctx: Context) -> None:
    _log(ctx, 5)
    report = audit.verify(ctx.engine)
    assert report.ok, report.problems
    assert report.checked == 5
    events = audit.events(ctx.engine, object_type="model", object_id="m3")
    assert [e.after for e in events] == [{"champion": 4}]
    assert events[0].reason == "step 3"


def test_event_rolls_back_with_its_transaction(ctx: Context) -> None:
    try:
        with ctx.engine.begin() as conn:
            ctx.audit(conn, action="deploy", object_type="model", object_id="x")
            raise RuntimeError("deploy failed")
    except RuntimeError:
        pass
    assert audit.verify(ctx.engine).checked == 0


def test_edited_row_is_named(ctx: Context) -> None:
    _log(ctx, 5)
    with ctx.engine.begin() as conn:
        conn.execute(
            audit_events.update().where(audit_events.c.seq == 3).values(reason="nothing to see")
        )
    problems = audit.verify(ctx.engine).problems
    assert problems == [problems[0]] and problems[0].startswith("row 3: edited")


def test_deleted_row_is_named(ctx: Context) -> None:
    _log(ctx, 5)
    with ctx.engine.begin() as conn:
        conn.execute(audit_events.delete().where(audit_events.c.seq == 2))
    problems = audit.verify(ctx.engine).problems
    assert any(p.startswith("row 2: deleted") for p in problems), problems


def test_deleted_tail_is_named(ctx: Context) -> None:
    _log(ctx, 5)
    with ctx.engine.begin() as conn:
        conn.execute(audit_events.delete().where(audit_events.c.seq >= 4))
    problems = audit.verify(ctx.engine).problems
    assert problems == ["row 4..5: deleted from the end of the log"]


def test_inserted_row_is_named(ctx: Context) -> None:
    _log(ctx, 3)
    with ctx.engine.connect() as conn:
        row = conn.execute(sa.select(audit_events).where(audit_events.c.seq == 2)).one()
    forged = dict(row._mapping)
    # Shift rows up to make room, as a forger would, and slip a row in at 2.
    with ctx.engine.begin() as conn:
        for seq in (3, 2):
            conn.execute(audit_events.update().where(audit_events.c.seq == seq).values(seq=seq + 1))
        forged.update(seq=2, reason="forged approval")
        forged["hash"] = audit.event_hash(
            2,
            forged["ts"],
            forged["actor"],
            forged["action"],
            forged["object_type"],
            forged["object_id"],
            forged["before"],
            forged["after"],
            forged["reason"],
            forged["prev_hash"],
        )
        conn.execute(audit_events.insert().values(**forged))
        conn.execute(audit_head.update().values(seq=4))
    problems = audit.verify(ctx.engine).problems
    assert any(p.startswith("row 3:") for p in problems), problems


def test_concurrent_appenders_never_fork_the_chain(ctx: Context) -> None:
    def worker() -> None:
        _log(ctx, 10)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report = audit.verify(ctx.engine)
    assert report.ok, report.problems
    assert report.checked == 40


def test_rows_edited_into_values_no_appender_writes_are_named_and_listed(ctx: Context) -> None:
    """verify raised ValueError on a time edited into text (SQLite keeps it) and stopped;
    events/events_page (audit ls, the UI) raised JSONDecodeError on a before/after edited
    into text that is no JSON, so the log could not be read at all."""
    _log(ctx, 6)
    sqlite = ctx.engine.dialect.name == "sqlite"
    with ctx.engine.begin() as conn:
        conn.execute(audit_events.update().where(audit_events.c.seq == 2).values(after="{bad"))
        if sqlite:  # PostgreSQL's columns refuse these
            conn.exec_driver_sql("UPDATE audit_events SET ts = 'abc' WHERE seq = 4")
            conn.exec_driver_sql("UPDATE audit_events SET before = x'00ff' WHERE seq = 5")
    problems = audit.verify(ctx.engine).problems
    assert problems[0].startswith("row 2: edited")
    if sqlite:
        assert (
            problems[1] == "row 4: edited (a field holds could not convert string to float: 'abc')"
        )
        assert problems[2].startswith("row 5: edited (a field holds Type is not JSON")
    assert len(problems) == (3 if sqlite else 1)
    listed = audit.events(ctx.engine)
    assert [e.seq for e in listed] == [1, 2, 3, 4, 5, 6] and listed[1].after == "{bad"
    page, _, newest = audit.events_page(ctx.engine)
    assert newest == 6 and [e.seq for e in page] == [6, 5, 4, 3, 2, 1]
    if sqlite:
        assert math.isnan(listed[3].ts) and listed[4].before == "\x00\ufffd"


def test_text_the_chain_cannot_hold_is_refused_naming_the_field(ctx: Context) -> None:
    """A reason that is no UTF-8 (a shell argument in Latin-1: 'caf\\udce9') escaped as
    'TypeError: str is not valid UTF-8' (exit 1); a NUL was a raw DataError on PostgreSQL
    and stored on SQLite (so the store could not be restored onto PostgreSQL)."""
    _log(ctx, 1)
    cases = [
        ({"reason": "caf\udce9"}, "reason", "not valid text"),
        ({"reason": "a\x00b"}, "reason", "NUL"),
        ({"actor": "ad\x00a"}, "actor", "NUL"),
        ({"after": {"k": "\ud800"}}, "after", "cannot be recorded"),
    ]
    for extra, field, words in cases:
        args: dict[str, object] = {
            "actor": "ada",
            "action": "alias.set",
            "object_type": "model",
            "object_id": "m",
            **extra,
        }
        with pytest.raises(InvalidInput, match=words) as refused, ctx.engine.begin() as conn:
            audit.append(conn, **args)  # type: ignore[arg-type]
        assert refused.value.field == field
    report = audit.verify(ctx.engine)
    assert report.ok and report.checked == 1


def _rewrite_from(ctx: Context, seq: int, reason: str) -> None:
    """Edit row ``seq`` and recompute every later hash and the head, as a forger with write
    access to the database (and this module) can."""
    with ctx.engine.begin() as conn:
        rows = conn.execute(
            sa.select(audit_events).where(audit_events.c.seq >= seq).order_by(audit_events.c.seq)
        ).all()
        prev = rows[0].prev_hash
        for r in rows:
            fields = dict(r._mapping)
            if r.seq == seq:
                fields["reason"] = reason
            fields["prev_hash"] = prev
            fields["hash"] = audit.event_hash(
                *(fields[k] for k in ("seq", "ts", "actor", "action", "object_type")),
                *(fields[k] for k in ("object_id", "before", "after", "reason", "prev_hash")),
            )
            conn.execute(audit_events.update().where(audit_events.c.seq == r.seq).values(**fields))
            prev = fields["hash"]
        conn.execute(audit_head.update().where(audit_head.c.id == 1).values(hash=prev))


def test_a_rewritten_chain_is_caught_by_an_anchor_kept_elsewhere(ctx: Context) -> None:
    assert audit.head(ctx.engine) is None
    _log(ctx, 3)
    kept = audit.head(ctx.engine)
    assert kept is not None and kept.seq == 3 and audit.Anchor.parse(str(kept)) == kept
    _log(ctx, 2)
    assert audit.verify(ctx.engine, [kept]).ok
    _rewrite_from(ctx, 2, "nothing to see")
    # The chain alone cannot tell (its hashes were all recomputed); the anchor can.
    assert audit.verify(ctx.engine).ok
    problems = audit.verify(ctx.engine, [kept]).problems
    assert len(problems) == 1 and problems[0].startswith("row 3: its hash"), problems
    assert "rewritten" in problems[0]


def test_an_anchor_past_the_end_names_the_deleted_rows(ctx: Context) -> None:
    _log(ctx, 4)
    kept = audit.head(ctx.engine)
    assert kept is not None
    with ctx.engine.begin() as conn:
        conn.execute(audit_events.delete().where(audit_events.c.seq == 4))
        last = conn.execute(sa.select(audit_events).where(audit_events.c.seq == 3)).one()
        conn.execute(audit_head.update().values(seq=3, hash=last.hash))
    assert audit.verify(ctx.engine).ok  # a cut tail with its head moved back
    assert audit.verify(ctx.engine, [kept]).problems == [
        "row 4: anchored but not in the log (deleted)"
    ]


@pytest.mark.parametrize(
    "text", ["", "3", "0:" + "a" * 64, "x:" + "a" * 64, "3:abc", "3:" + "g" * 64]
)
def test_a_malformed_anchor_is_refused_naming_it(text: str) -> None:
    with pytest.raises(InvalidInput, match="is not SEQ:HASH") as info:
        audit.Anchor.parse(text)
    assert info.value.field == "anchor"
