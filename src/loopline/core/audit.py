"""The tamper-evident audit log: an append-only hash chain of events.

Each event (actor, action, object, before, after, reason, time) carries a sequence number,
the hash of the event before it and its own hash over all of that (BLAKE3 of a canonical
JSON encoding). Editing a row changes its hash; deleting or inserting one breaks the
sequence or the chain; cutting the tail is caught against the head kept in ``audit_head``.
:func:`verify` walks the chain and names every row that does not fit.

Appending takes the head row for update inside the caller's transaction, so the event
commits or rolls back with the change it describes and appenders never fork the chain.

Example:
    >>> from loopline.core.db import create_engine_for
    >>> from loopline.core.db_migrations import upgrade
    >>> engine = create_engine_for("sqlite:///:memory:"); upgrade(engine)
    >>> with engine.begin() as conn:
    ...     _ = append(conn, actor="ada", action="alias.set", object_type="model",
    ...                object_id="churn", after={"champion": 3}, reason="passed gate")
    >>> verify(engine).ok
    True
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import blake3
import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from loopline.core.bulk import driver_executemany, driver_fetchone, insert_rows, placeholder
from loopline.core.db import reading
from loopline.core.schema import audit_events, audit_head
from loopline.core.text import check_no_nul
from loopline.errors import InvalidInput

GENESIS = "0" * 64


@dataclass(frozen=True)
class AuditEvent:
    """One row of the audit log."""

    seq: int
    ts: float
    actor: str
    action: str
    object_type: str
    object_id: str
    before: Any
    after: Any
    reason: str | None
    prev_hash: str
    hash: str


@dataclass
class VerifyReport:
    """What :func:`verify` found: ``ok`` when the chain is whole."""

    checked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _encode(value: Any) -> str | None:
    if value is None:
        return None
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY).decode()


def event_hash(
    seq: int,
    ts: float,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    before: str | None,
    after: str | None,
    reason: str | None,
    prev_hash: str,
) -> str:
    """The hash of one event's fields (``before``/``after`` as stored JSON text)."""
    payload = orjson.dumps(
        [
            seq,
            repr(float(ts)),
            actor,
            action,
            object_type,
            object_id,
            before,
            after,
            reason,
            prev_hash,
        ]
    )
    return blake3.blake3(payload).hexdigest()


def append(
    conn: Connection,
    *,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    before: Any = None,
    after: Any = None,
    reason: str | None = None,
) -> AuditEvent:
    """Append an event inside the caller's transaction and return it.

    Example:
        >>> # with engine.begin() as conn: append(conn, actor="ci", action="deploy", ...)
    """
    event = NewEvent(actor, action, object_type, object_id, before, after, reason)
    return append_many(conn, [event])[0]


@dataclass(frozen=True)
class NewEvent:
    """An event to append with :func:`append_many` (the arguments of :func:`append`).

    Example:
        >>> NewEvent("ada", "run.create", "run", "3f2a", after={"experiment": "churn"}).action
        'run.create'
    """

    actor: str
    action: str
    object_type: str
    object_id: str
    before: Any = None
    after: Any = None
    reason: str | None = None


# Plain SQL run on the driver: append_many runs on hot paths (every run created, a
# pipeline's step runs), where SQLAlchemy's statement handling costs more than the work.
# FOR UPDATE holds the head on PostgreSQL; SQLite's write lock is already the
# transaction's (BEGIN IMMEDIATE).
_LOCK_HEAD = {
    "sqlite": 'SELECT "seq", "hash" FROM "audit_head" WHERE "id" = 1',
    "postgresql": 'SELECT "seq", "hash" FROM "audit_head" WHERE "id" = 1 FOR UPDATE',
}
_SET_HEAD = 'UPDATE "audit_head" SET "seq" = {p}, "hash" = {p} WHERE "id" = 1'


def _check_text(e: NewEvent) -> None:
    """Refuse text the chain cannot hold, naming the field (``reason`` comes from users).

    A lone surrogate (what a shell argument that is not UTF-8 decodes to) cannot be
    hashed, and PostgreSQL cannot store a NUL: both escaped as a raw TypeError or
    DataError, and SQLite stored the NUL, so such a store could not be restored onto
    PostgreSQL.
    """
    fields = {
        "actor": e.actor,
        "action": e.action,
        "object_type": e.object_type,
        "object_id": e.object_id,
        "reason": e.reason,
    }
    for name, value in fields.items():
        if value is not None:
            check_no_nul(value, name)


def _encode_change(e: NewEvent, name: str, value: Any) -> str | None:
    try:
        return _encode(value)
    except TypeError as exc:
        raise InvalidInput(
            f"audit {name} of {e.action} {e.object_id!r} cannot be recorded: {exc}",
            field=name,
            hint="use JSON values of UTF-8 text",
        ) from exc


def append_many(conn: Connection, new: Sequence[NewEvent]) -> list[AuditEvent]:
    """Append several events in order inside the caller's transaction; return them.

    The chain is the same as from one :func:`append` per event, but the head is read and
    updated once and the rows are inserted in one statement: a batch of run records
    (a pipeline's step runs) then costs one audit round trip instead of one per event.

    Example:
        >>> from loopline.core.db import create_engine_for
        >>> from loopline.core.db_migrations import upgrade
        >>> engine = create_engine_for("sqlite:///:memory:"); upgrade(engine)
        >>> with engine.begin() as conn:
        ...     done = append_many(conn, [NewEvent("ci", "run.create", "run", "a"),
        ...                               NewEvent("ci", "run.update", "run", "a")])
        >>> [e.seq for e in done], verify(engine).ok
        ([1, 2], True)
    """
    if not new:
        return []
    for e in new:
        _check_text(e)
    head = driver_fetchone(conn, _LOCK_HEAD[conn.dialect.name], ())
    if head is None:
        raise RuntimeError("the audit log has no head row: run `loopline db upgrade`")
    seq, prev = int(head[0]), str(head[1])
    rows: list[dict[str, Any]] = []
    done: list[AuditEvent] = []
    for e in new:
        seq += 1
        ts = time.time()
        before_s = _encode_change(e, "before", e.before)
        after_s = _encode_change(e, "after", e.after)
        digest = event_hash(
            seq,
            ts,
            e.actor,
            e.action,
            e.object_type,
            e.object_id,
            before_s,
            after_s,
            e.reason,
            prev,
        )
        rows.append(
            {
                "seq": seq,
                "ts": ts,
                "actor": e.actor,
                "action": e.action,
                "object_type": e.object_type,
                "object_id": e.object_id,
                "before": before_s,
                "after": after_s,
                "reason": e.reason,
                "prev_hash": prev,
                "hash": digest,
            }
        )
        done.append(
            AuditEvent(
                seq,
                ts,
                e.actor,
                e.action,
                e.object_type,
                e.object_id,
                e.before,
                e.after,
                e.reason,
                prev,
                digest,
            )
        )
        prev = digest
    insert_rows(conn, audit_events, rows)
    driver_executemany(conn, _SET_HEAD.format(p=placeholder(conn)), [(seq, prev)])
    return done


def _decode(text: Any) -> Any:
    """A stored ``before``/``after`` as the value it encodes.

    A row edited by hand may hold text that is no JSON (or, on SQLite, a value of another
    type): it is shown as stored rather than failing the whole listing; ``verify`` names
    the row as edited.
    """
    if text is None:
        return None
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    try:
        return orjson.loads(text)
    except (orjson.JSONDecodeError, TypeError):
        return text


def _seconds(value: Any) -> float:
    """A stored time as a float; NaN for one edited into something else (``verify`` says)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def events(
    engine: Engine,
    *,
    object_type: str | None = None,
    object_id: str | None = None,
    limit: int | None = None,
) -> list[AuditEvent]:
    """Events in order, optionally only those about one object.

    Example:
        >>> # events(engine, object_type="model", object_id="churn")
    """
    query = sa.select(audit_events).order_by(audit_events.c.seq)
    if object_type is not None:
        query = query.where(audit_events.c.object_type == object_type)
    if object_id is not None:
        query = query.where(audit_events.c.object_id == object_id)
    if limit is not None:
        query = query.limit(limit)
    with reading(engine) as conn:
        return [_row_event(r) for r in conn.execute(query)]


def events_page(
    engine: Engine,
    *,
    before: int | None = None,
    limit: int = 100,
    object_type: str | None = None,
    object_id: str | None = None,
    actor: str | None = None,
) -> tuple[list[AuditEvent], int | None, int]:
    """Newest events first, older than sequence number ``before``, for paging back.

    Returns ``(events, older, newest_seq)``: ``older`` is the ``before`` of the next page
    (None on the last page) and ``newest_seq`` the sequence number of the newest event.

    Example:
        >>> # events, older, newest = events_page(engine, limit=50)
    """
    query = sa.select(audit_events).order_by(audit_events.c.seq.desc()).limit(limit + 1)
    if before is not None:
        query = query.where(audit_events.c.seq < before)
    if object_type:
        query = query.where(audit_events.c.object_type == object_type)
    if object_id:
        query = query.where(audit_events.c.object_id == object_id)
    if actor:
        query = query.where(audit_events.c.actor == actor)
    with reading(engine) as conn:
        rows = conn.execute(query).all()
        newest = conn.execute(sa.select(sa.func.max(audit_events.c.seq))).scalar()
    page = [_row_event(r) for r in rows[:limit]]
    older = page[-1].seq if len(rows) > limit else None
    return page, older, int(newest or 0)


def _row_event(r: Any) -> AuditEvent:
    # Rows are shown as stored even when edited by hand into values no appender writes
    # (SQLite keeps any type in any column): listing them must not fail, verify names them.
    def text(value: Any) -> Any:
        return value if value is None or isinstance(value, str) else str(value)

    return AuditEvent(
        r.seq,
        _seconds(r.ts),
        text(r.actor),
        text(r.action),
        text(r.object_type),
        text(r.object_id),
        _decode(r.before),
        _decode(r.after),
        text(r.reason),
        text(r.prev_hash),
        text(r.hash),
    )


def _iter_rows(conn: Connection) -> Iterator[Any]:
    result = conn.execution_options(yield_per=5000).execute(
        sa.select(audit_events).order_by(audit_events.c.seq)
    )
    yield from result


@dataclass(frozen=True)
class Anchor:
    """A row's sequence number and hash, kept where the database's writers cannot reach.

    The chain alone cannot show a rewrite of every hash from an edited row to the head;
    the hash of a row kept elsewhere can: :func:`verify` checks that row against it.

    Example:
        >>> Anchor.parse("45:" + "ab" * 32).seq
        45
    """

    seq: int
    hash: str

    def __str__(self) -> str:
        return f"{self.seq}:{self.hash}"

    @classmethod
    def parse(cls, text: str) -> Anchor:
        """``SEQ:HASH`` as :func:`head` prints it, or :class:`InvalidInput` naming ``anchor``.

        Example:
            >>> Anchor.parse("3:" + "0" * 64).hash == "0" * 64
            True
        """
        seq, _, digest = text.strip().partition(":")
        digest = digest.lower()
        if not (
            seq.isascii()
            and seq.isdigit()
            and int(seq) >= 1
            and len(digest) == 64
            and all(c in "0123456789abcdef" for c in digest)
        ):
            raise InvalidInput(
                f"anchor {text!r} is not SEQ:HASH",
                field="anchor",
                hint="use what `loopline audit head` printed, e.g. 45:9f2c... (64 hex digits)",
            )
        return cls(int(seq), digest)


def head(engine: Engine) -> Anchor | None:
    """The newest event's sequence number and hash (None for an empty log): the value to
    keep elsewhere and pass back to :func:`verify` later.

    Example:
        >>> from loopline.core.db import create_engine_for
        >>> from loopline.core.db_migrations import upgrade
        >>> engine = create_engine_for("sqlite:///:memory:"); upgrade(engine)
        >>> head(engine) is None
        True
    """
    with reading(engine) as conn:
        row = conn.execute(
            sa.select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)
        ).one_or_none()
    if row is None or not row.seq:
        return None
    return Anchor(int(row.seq), str(row.hash))


def verify(engine: Engine, anchors: Sequence[Anchor] = ()) -> VerifyReport:
    """Walk the chain; report every edited, inserted, deleted or missing row by number,
    and every row that no longer has the hash an ``anchor`` kept for it.

    Example:
        >>> # verify(engine).problems  -> ['row 7: edited (stored hash ... != computed ...)']
        >>> # verify(engine, [Anchor.parse("45:9f2c...")]).ok
    """
    report = VerifyReport()
    expected_seq, prev = 1, GENESIS
    kept = {a.seq: a.hash for a in anchors}
    with reading(engine) as conn:
        for r in _iter_rows(conn):
            report.checked += 1
            if r.seq in kept:
                found = kept.pop(r.seq)
                if r.hash != found:
                    report.problems.append(
                        f"row {r.seq}: its hash {str(r.hash)[:12]}… is not the anchor's "
                        f"{found[:12]}… (the log up to this row was rewritten)"
                    )
            if r.seq != expected_seq:
                if r.seq > expected_seq:
                    gap = (
                        f"{expected_seq}"
                        if r.seq == expected_seq + 1
                        else (f"{expected_seq}..{r.seq - 1}")
                    )
                    report.problems.append(f"row {gap}: deleted (sequence jumps to {r.seq})")
                else:
                    report.problems.append(f"row {r.seq}: inserted out of sequence")
            elif r.prev_hash != prev:
                report.problems.append(
                    f"row {r.seq}: does not follow row {r.seq - 1} (row inserted or replaced)"
                )
            try:
                computed = event_hash(
                    r.seq,
                    r.ts,
                    r.actor,
                    r.action,
                    r.object_type,
                    r.object_id,
                    r.before,
                    r.after,
                    r.reason,
                    r.prev_hash,
                )
            except (TypeError, ValueError) as exc:
                # A value no appender writes (SQLite keeps any type in any column: a time
                # that is text, a blob): the row was edited, which is the finding - not a
                # reason to stop checking the others.
                report.problems.append(f"row {r.seq}: edited (a field holds {exc})")
            else:
                if computed != r.hash:
                    report.problems.append(
                        f"row {r.seq}: edited (stored hash {str(r.hash)[:12]}… != "
                        f"computed {computed[:12]}…)"
                    )
            expected_seq, prev = r.seq + 1, r.hash
        stored = conn.execute(
            sa.select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)
        ).one_or_none()
    for seq in sorted(kept):
        report.problems.append(f"row {seq}: anchored but not in the log (deleted)")
    if stored is None:
        report.problems.append("audit head is missing")
    elif stored.seq != expected_seq - 1 or stored.hash != prev:
        if stored.seq > expected_seq - 1:
            report.problems.append(
                f"row {expected_seq}..{stored.seq}: deleted from the end of the log"
            )
        else:
            report.problems.append(f"row {stored.seq}: head does not match the last row")
    return report
