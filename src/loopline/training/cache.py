"""The step cache: a key from code, params and inputs; a table from key to output.

A step's cache key is the BLAKE3 digest of the canonical JSON of its name, its code hash
(see :func:`loopline.training.steps.code_hash`), the module constants, same-package
helper functions, closure variables, partials' arguments and arrays its code reads (see
:mod:`loopline.training.step_globals`; left out of the JSON when there are none, so such a
step keeps the key it had before they counted) and its arguments with every upstream
output replaced by that output's digest and type. Two runs of a step with the same code,
the same constants, the same literal params and inputs with the same bytes get the same
key, whichever pipeline run produced the inputs. A key is
a hit when ``step_cache`` has it and the output artifact is still in the store.

Example:
    >>> from loopline.training.steps import step
    >>> s = step(lambda x: x)
    >>> cache_key(s, {"x": {"v": 1}}) == cache_key(s, {"x": {"v": 1}})
    True
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from loopline.core.artifacts import ArtifactStore
from loopline.core.bulk import insert_rows
from loopline.errors import InvalidInput
from loopline.training import outputs
from loopline.training.canonical_encoding import GlobalTooLarge
from loopline.training.outputs import StoredOutput
from loopline.training.pipeline_tables import step_cache
from loopline.training.step_globals import read_globals
from loopline.training.steps import Spec, Step, spec_digest

_CHUNK = 500
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CacheEntry:
    """A cached output and the run of the step that produced it."""

    output: StoredOutput
    run_id: str | None
    pipeline_run_id: str


def cache_key(step: Step[Any, Any], args: dict[str, Spec]) -> str | None:
    """The cache key of ``step`` called with resolved argument specs, or None.

    The globals the step reads are looked up now, at every call: a constant changed in
    this process since the last run (a notebook cell) changes the key too. None when one
    of them is too large to digest (:class:`~loopline.training.canonical_encoding.GlobalTooLarge`,
    logged as a warning): the step then has no key, so it is neither served from the cache
    nor reused by resume - it runs every time.

    Example:
        >>> from loopline.training.steps import step
        >>> len(cache_key(step(len), {"obj": {"v": "abc"}}))
        64
    """
    try:
        reads = read_globals(step.fn)
    except GlobalTooLarge as exc:
        _log.warning(
            "step %r reads the global %s, too large to put in its cache key (%s): it runs "
            "every time; pass the value as an argument of the step, or read it from a "
            "file or dataset inside the step",
            step.name,
            exc.name,
            exc.why,
        )
        return None
    key: dict[str, Any] = {"step": step.name, "code": step.code_hash, "args": args}
    if reads:  # absent when none: the keys of steps that read no globals do not change
        key["globals"] = reads
    return spec_digest(key)


def resolve(
    spec: Spec,
    done: dict[str, StoredOutput],
    store: ArtifactStore,
    inputs: dict[str, str],
    where: str,
) -> Spec:
    """Replace every ``ref`` in ``spec`` by the digest and type of the finished output.

    An item of a tuple/list/dict output (``handle[0]``) is resolved to that item's own
    artifact, so the step depends on that item only. Collects ``where -> digest`` pairs of
    the inputs into ``inputs`` (the step's lineage).

    Example:
        >>> resolve({"v": 1}, {}, None, {}, "x")  # type: ignore[arg-type]
        {'v': 1}
    """
    if "ref" in spec:
        out = done[spec["ref"]]
        path = list(spec["path"])
        while path:
            item = outputs.child(out, path[0], store)
            if item is None:
                break
            out = item
            path.pop(0)
        inputs[where] = out.digest
        resolved: Spec = {"a": out.digest, "t": out.type}
        if path:
            resolved["path"] = path
        return resolved
    if "list" in spec or "tuple" in spec:
        kind = "list" if "list" in spec else "tuple"
        return {
            kind: [
                resolve(s, done, store, inputs, f"{where}[{i}]") for i, s in enumerate(spec[kind])
            ]
        }
    if "dict" in spec:
        return {
            "dict": {
                k: resolve(s, done, store, inputs, f"{where}[{k!r}]")
                for k, s in spec["dict"].items()
            }
        }
    if "a" in spec:
        inputs[where] = spec["a"]
    return spec


# Built once: building the SELECT took twice as long as running it, on every step.
_LOOKUP = sa.select(
    step_cache.c.output_digest,
    step_cache.c.output_type,
    step_cache.c.run_id,
    step_cache.c.pipeline_run_id,
).where(step_cache.c.cache_key == sa.bindparam("key"))


def lookup(engine: Engine, key: str, store: ArtifactStore) -> CacheEntry | None:
    """The cached output for ``key``, if recorded and still in the artifact store.

    Example:
        >>> # lookup(ctx.engine, key, ctx.artifacts)  -> CacheEntry(...) or None
    """
    row = _read_entry(engine, key)
    if row is None or not store.exists(row[0]):
        return None
    digest, kind, run_id, pipeline_run_id = row
    return CacheEntry(StoredOutput(digest, kind), run_id, pipeline_run_id)


_COMPILED: dict[str, tuple[str, tuple[str, ...] | None]] = {}


def _read_entry(engine: Engine, key: str) -> Any:
    """The ``_LOOKUP`` row for ``key`` (a tuple) or None, read on a pooled connection.

    Not through a SQLAlchemy transaction: on SQLite each of those begins IMMEDIATE (takes
    the write lock, see :mod:`loopline.core.db`), which a read does not need and which cost
    twice the query on every step. The statement is compiled once for the engine's dialect;
    returning the connection to the pool rolls back whatever the driver opened.
    """
    compiled = _COMPILED.get(engine.dialect.name)
    if compiled is None:
        stmt = _LOOKUP.compile(dialect=engine.dialect)
        positions = getattr(stmt, "positiontup", None)
        compiled = _COMPILED[engine.dialect.name] = (
            stmt.string,
            tuple(positions) if positions else None,
        )
    sql, positions = compiled
    params: Any = (key,) * len(positions) if positions else {"key": key}
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        try:
            cur.execute(sql, params)
            return cur.fetchone()
        finally:
            cur.close()
    finally:
        raw.close()


def record(
    conn: Connection,
    *,
    key: str,
    step: Step[Any, Any],
    output: StoredOutput,
    run_id: str | None,
    pipeline_run_id: str,
) -> None:
    """Remember ``output`` under ``key`` in the caller's transaction (newest wins).

    Example:
        >>> # with engine.begin() as conn: record(conn, key=k, step=s, output=o, ...)
    """
    if not key:
        raise InvalidInput("an empty cache key", field="cache_key")
    try:
        with conn.begin_nested():
            conn.execute(step_cache.delete().where(step_cache.c.cache_key == key))
            conn.execute(
                step_cache.insert().values(
                    cache_key=key,
                    step=step.name,
                    code_hash=step.code_hash,
                    output_digest=output.digest,
                    output_type=output.type,
                    run_id=run_id,
                    pipeline_run_id=pipeline_run_id,
                    created_at=time.time(),
                )
            )
    except sa.exc.IntegrityError:
        # Another run recorded the same key at the same moment: the same code, params and
        # inputs, so its output serves as well. Only the savepoint is rolled back.
        return


@dataclass(frozen=True)
class NewEntry:
    """A cache entry to record with :func:`record_many`."""

    key: str
    step: Step[Any, Any]
    output: StoredOutput
    run_id: str | None
    pipeline_run_id: str


def record_many(conn: Connection, entries: list[NewEntry]) -> None:
    """Remember several outputs in the caller's transaction: :func:`record` for many.

    One delete and one insert for the lot (a savepoint and two statements per entry cost
    more than a no-op step). When another run recorded one of the keys at the same
    moment, the entries are recorded one by one instead (see :func:`record`).

    Example:
        >>> # with engine.begin() as conn: record_many(conn, [NewEntry(k, s, o, rid, pid)])
    """
    latest = {e.key: e for e in entries}  # a key written twice in one batch: newest wins
    if not latest:
        return
    if "" in latest:
        raise InvalidInput("an empty cache key", field="cache_key")
    now = time.time()
    rows = [
        {
            "cache_key": e.key,
            "step": e.step.name,
            "code_hash": e.step.code_hash,
            "output_digest": e.output.digest,
            "output_type": e.output.type,
            "run_id": e.run_id,
            "pipeline_run_id": e.pipeline_run_id,
            "created_at": now,
        }
        for e in latest.values()
    ]
    try:
        with conn.begin_nested():
            keys = list(latest)
            for start in range(0, len(keys), _CHUNK):  # stay under the bound-variable limit
                chunk = keys[start : start + _CHUNK]
                conn.execute(step_cache.delete().where(step_cache.c.cache_key.in_(chunk)))
            insert_rows(conn, step_cache, rows)
    except sa.exc.IntegrityError:
        for e in latest.values():
            record(
                conn,
                key=e.key,
                step=e.step,
                output=e.output,
                run_id=e.run_id,
                pipeline_run_id=e.pipeline_run_id,
            )


def clear(engine: Engine, step_name: str | None = None) -> int:
    """Forget cached outputs (of one step, or all); return how many keys were dropped.

    Example:
        >>> # clear(ctx.engine, "train")
    """
    query = step_cache.delete()
    if step_name is not None:
        query = query.where(step_cache.c.step == step_name)
    with engine.begin() as conn:
        return int(conn.execute(query).rowcount)
