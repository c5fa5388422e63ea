"""``core.bulk.insert_rows``: many rows in the caller's transaction, on every backend."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from loopline.core.bulk import insert_rows, update_rows
from loopline.core.context import Context
from loopline.core.schema import audit_events


def _rows(n: int) -> list[dict[str, object]]:
    return [
        {
            "seq": i + 1,
            "ts": 1700000000.25 + i,
            "actor": "ada",
            "action": "run.update",
            "object_type": "run",
            "object_id": f"r{i}",
            "before": None,
            "after": '{"status":"FINISHED"}',
            "reason": "naïve ünïcode" if i % 2 else None,
            "prev_hash": "0" * 64,
            "hash": f"{i:064d}",
        }
        for i in range(n)
    ]


def _stored(ctx: Context) -> list[dict[str, object]]:
    with ctx.engine.connect() as conn:
        rows = conn.execute(sa.select(audit_events).order_by(audit_events.c.seq)).mappings()
        return [dict(r) for r in rows]


def test_rows_are_stored_as_given(ctx: Context) -> None:
    rows = _rows(300)
    with ctx.engine.begin() as conn:
        insert_rows(conn, audit_events, rows)
        insert_rows(conn, audit_events, [])
    assert _stored(ctx) == rows


def test_rows_roll_back_with_the_transaction(ctx: Context) -> None:
    with pytest.raises(RuntimeError), ctx.engine.begin() as conn:
        insert_rows(conn, audit_events, _rows(3))
        raise RuntimeError("the change failed")
    assert _stored(ctx) == []


def test_a_key_that_is_no_column_is_refused_naming_it(ctx: Context) -> None:
    bad = [{**_rows(1)[0], "seq); DROP TABLE audit_events; --": 1}]
    with pytest.raises(ValueError) as err, ctx.engine.begin() as conn:
        insert_rows(conn, audit_events, bad)
    assert "DROP TABLE" in str(err.value)
    assert _stored(ctx) == []


def test_a_duplicate_key_is_sqlalchemys_integrity_error(ctx: Context) -> None:
    with pytest.raises(sa.exc.IntegrityError), ctx.engine.begin() as conn:
        insert_rows(conn, audit_events, _rows(2) + _rows(1))
    assert _stored(ctx) == []


def test_update_rows_sets_each_row_by_its_key(ctx: Context) -> None:
    rows = _rows(4)
    with ctx.engine.begin() as conn:
        insert_rows(conn, audit_events, rows)
        update_rows(
            conn,
            audit_events,
            ["seq"],
            [{"seq": 2, "actor": "bob", "reason": None}, {"seq": 4, "actor": "cy", "reason": "r"}],
        )
    rows[1].update(actor="bob", reason=None)
    rows[3].update(actor="cy", reason="r")
    assert _stored(ctx) == rows
    with pytest.raises(ValueError, match="no column 'nope'"), ctx.engine.begin() as conn:
        update_rows(conn, audit_events, ["seq"], [{"seq": 1, "nope": 1}])
