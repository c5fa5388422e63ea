"""Online feature stores: the latest feature row per entity, for low-latency reads.

One small base class, :class:`OnlineStore`, and two backends chosen by the setting
``online_store`` (``LOOPLINE_ONLINE_STORE``):

- unset or ``sqlite:///path/online.db``: :class:`SQLiteOnlineStore`, the embedded default,
  a file under ``LOOPLINE_HOME`` (``.loopline/online.db``);
- ``redis://host:port/db`` (or ``rediss://``, ``unix://``): :class:`RedisOnlineStore`.

The stores know nothing about feature views: they keep, per view name, a map from an
encoded entity key (text) to a packed row (bytes, orjson of ``{feature: value}``; a row
holding inf, NaN or bytes, which JSON has no form of, is a JSON array instead) plus one packed
metadata record per view. Encoding and decoding live in
:mod:`loopline.data.online_encoding`.

Example:
    >>> import tempfile
    >>> store = open_online_store(f"sqlite:///{tempfile.mkdtemp()}/online.db")
    >>> store.write("v", [("1", b'{"x":1}')], meta=b'{"features":["x"]}', replace=True)
    1
    >>> store.read("v", ["1", "2"])
    [b'{"x":1}', None]
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

from loopline.config import REDIS_SCHEMES, display_uri
from loopline.errors import BackendUnavailable, ConfigError

SETTING = "LOOPLINE_ONLINE_STORE"
_WRITE_CHUNK = 10_000
_READ_CHUNK = 500


class OnlineStore(ABC):
    """Where materialized rows live: per view, encoded entity key -> packed row.

    A backend must:

    - :meth:`write` rows for a view atomically with its metadata record; with
      ``replace=True`` the view's previous rows vanish in the same step, so a reader sees
      the old set or the new one, never a mix; with ``replace=False`` rows are upserted;
    - :meth:`read` return one packed row or ``None`` per key, in the order of the keys,
      with ``None`` for every key of a view that was never written;
    - :meth:`read_meta` return the view's metadata record, ``None`` if never written;
    - :meth:`invalidate` drop a written view's rows and replace its metadata record in one
      step (a reader sees the old rows or none), and do nothing to a view never written;
    - keep a connection open between calls (reads are on the serving hot path) and be safe
      to call from several threads;
    - report an unreachable backend as :class:`BackendUnavailable` naming
      ``LOOPLINE_ONLINE_STORE``.

    ``tests/data/test_features_online.py`` runs one conformance suite on every backend.
    """

    #: Where the store is, as messages, results and the materialization log show it
    #: (:func:`~loopline.config.display_uri`: never a password).
    url: str

    @abstractmethod
    def write(
        self, view: str, rows: Iterable[tuple[str, bytes]], *, meta: bytes, replace: bool
    ) -> int:
        """Store ``(key, packed)`` rows and the metadata record; return the row count.

        Example:
            >>> # store.write("v", [("42", b'{"x":1}')], meta=b"{}", replace=True)  -> 1
        """

    @abstractmethod
    def read(self, view: str, keys: Sequence[str]) -> list[bytes | None]:
        """The packed row of each key (``None`` when absent), in the order of ``keys``.

        Example:
            >>> # store.read("v", ["42", "7"])  -> [b'{"x":1}', None]
        """

    @abstractmethod
    def read_meta(self, view: str) -> bytes | None:
        """The metadata record of ``view``, or ``None`` if it was never written.

        Example:
            >>> # store.read_meta("v")  -> b"{}"
        """

    @abstractmethod
    def invalidate(self, view: str, *, meta: bytes) -> bool:
        """Drop the rows of ``view`` and set its metadata record to ``meta``, if ``view``
        was ever written; return whether it was (if not, nothing is written).

        Example:
            >>> # store.invalidate("v", meta=b'{"changed": "..."}')  -> True
        """

    @abstractmethod
    def count(self, view: str) -> int:
        """How many entities ``view`` holds.

        Example:
            >>> # store.count("v")  -> 1
        """

    @abstractmethod
    def delete(self, view: str) -> bool:
        """Drop the rows and the metadata record of ``view``; return whether it had any.

        Example:
            >>> # store.delete("v")  -> True (get_online then says "not materialized")
        """

    @abstractmethod
    def snapshot(self) -> contextlib.AbstractContextManager[OnlineSnapshot]:
        """A consistent read of every view, for a backup (see :class:`OnlineSnapshot`).

        Example:
            >>> # with store.snapshot() as snap: meta, rows = snap.read_view("v")
        """

    @abstractmethod
    def close(self) -> None:
        """Release connections; the store may be used again afterwards (it reconnects).

        Example:
            >>> # store.close()
        """


class OnlineSnapshot(ABC):
    """What a backup reads of an online store: each view's metadata record and rows.

    :attr:`metas` is read once, when the snapshot is taken. On SQLite the whole snapshot
    is one read transaction: :meth:`read_view` returns the rows and record of that
    moment. Redis has no snapshot over several keys: :meth:`read_view` reads the view's
    hash and returns the record current *after* the read, which differs from
    :attr:`metas` when the view was written meanwhile.
    """

    #: view name -> metadata record, for every view written (or invalidated).
    metas: dict[str, bytes]

    @abstractmethod
    def read_view(self, view: str) -> tuple[bytes | None, list[tuple[str, bytes]]]:
        """The view's metadata record and all its ``(key, packed)`` rows, by key.

        Example:
            >>> # snap.read_view("v")  -> (b'{"features": ...}', [("1", b'{"x":1}')])
        """


def _chunks(rows: Iterable[tuple[str, bytes]], size: int) -> Iterator[list[tuple[str, bytes]]]:
    it = iter(rows)
    while chunk := list(islice(it, size)):
        yield chunk


class SQLiteOnlineStore(OnlineStore):
    """A SQLite file: one ``WITHOUT ROWID`` table per view (key TEXT -> packed BLOB).

    WAL mode lets readers run while a materialization writes. ``synchronous=NORMAL``: the
    online store is derived data that :func:`~loopline.data.features.materialize` rebuilds,
    so a power cut may lose the last write but never corrupts the file. Each thread keeps
    its own connection; Python's ``sqlite3`` statement cache keeps the read statements
    prepared.
    """

    _META = "loopline_online_views"

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 30_000) -> None:
        self.path = Path(path).expanduser().resolve()
        self.url = f"sqlite:///{self.path.as_posix()}"
        self._busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path,
                timeout=self._busy_timeout_ms / 1000,
                isolation_level=None,
                check_same_thread=False,
                cached_statements=256,
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self._META} (view TEXT PRIMARY KEY, meta BLOB) "
                "WITHOUT ROWID"
            )
        except (OSError, sqlite3.Error) as exc:
            raise BackendUnavailable(
                f"cannot open the online store {self.url}: {exc}",
                hint=f"set {SETTING} (or LOOPLINE_HOME) to a writable place",
            ) from exc
        self._local.conn = conn
        with self._lock:
            self._all.append(conn)
        return conn

    @staticmethod
    def _table(view: str) -> str:
        return '"fv_' + view.replace('"', '""') + '"'

    @contextlib.contextmanager
    def _writing(self, doing: str, hint: str) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``, rolled back on any error); a SQLite
        error is :class:`BackendUnavailable` saying what was being done."""
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise BackendUnavailable(
                f"cannot {doing} the online store {self.url}: {exc}", hint=hint
            ) from exc

    def write(
        self, view: str, rows: Iterable[tuple[str, bytes]], *, meta: bytes, replace: bool
    ) -> int:
        table = self._table(view)
        n = 0
        hint = f"check {SETTING} and the free space"
        with self._writing(f"write view {view!r} to", hint) as conn:
            if replace:
                conn.execute(f"DROP TABLE IF EXISTS {table}")
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {table} (k TEXT PRIMARY KEY, v BLOB NOT NULL) "
                "WITHOUT ROWID"
            )
            sql = f"INSERT OR REPLACE INTO {table} (k, v) VALUES (?, ?)"
            for chunk in _chunks(rows, _WRITE_CHUNK):
                conn.executemany(sql, chunk)
                n += len(chunk)
            conn.execute(
                f"INSERT OR REPLACE INTO {self._META} (view, meta) VALUES (?, ?)", (view, meta)
            )
        return n

    def read(self, view: str, keys: Sequence[str]) -> list[bytes | None]:
        conn = self._conn()
        table = self._table(view)
        try:
            if len(keys) == 1:
                row = conn.execute(f"SELECT v FROM {table} WHERE k = ?", (keys[0],)).fetchone()
                return [row[0] if row is not None else None]
            found: dict[str, bytes] = {}
            for start in range(0, len(keys), _READ_CHUNK):
                part = keys[start : start + _READ_CHUNK]
                marks = ",".join("?" * len(part))
                found.update(conn.execute(f"SELECT k, v FROM {table} WHERE k IN ({marks})", part))
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return [None] * len(keys)
            raise BackendUnavailable(
                f"cannot read the online store {self.url}: {exc}", hint=f"check {SETTING}"
            ) from exc
        return [found.get(k) for k in keys]

    def read_meta(self, view: str) -> bytes | None:
        row = (
            self._conn()
            .execute(f"SELECT meta FROM {self._META} WHERE view = ?", (view,))
            .fetchone()
        )
        return None if row is None else bytes(row[0])

    def invalidate(self, view: str, *, meta: bytes) -> bool:
        with self._writing(f"drop the rows of view {view!r} in", f"check {SETTING}") as conn:
            sql = f"UPDATE {self._META} SET meta = ? WHERE view = ?"
            written = conn.execute(sql, (meta, view)).rowcount
            if written:
                conn.execute(f"DROP TABLE IF EXISTS {self._table(view)}")
        return bool(written)

    def count(self, view: str) -> int:
        try:
            row = self._conn().execute(f"SELECT count(*) FROM {self._table(view)}").fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return 0
            raise
        return int(row[0])

    def delete(self, view: str) -> bool:
        with self._writing(f"delete view {view!r} from", f"check {SETTING}") as conn:
            had = conn.execute(f"DELETE FROM {self._META} WHERE view = ?", (view,)).rowcount
            conn.execute(f"DROP TABLE IF EXISTS {self._table(view)}")
        return bool(had)

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[OnlineSnapshot]:
        if not self.path.exists():  # never written: a backup creates no file
            yield _SQLiteSnapshot(None, {})
            return
        try:
            conn = sqlite3.connect(
                self.path, timeout=self._busy_timeout_ms / 1000, isolation_level=None
            )
        except sqlite3.Error as exc:
            raise BackendUnavailable(
                f"cannot open the online store {self.url}: {exc}", hint=f"check {SETTING}"
            ) from exc
        try:
            conn.execute("PRAGMA query_only=ON")
            # WAL: the first read fixes the snapshot; writers carry on meanwhile.
            conn.execute("BEGIN DEFERRED")
            try:
                metas = {str(v): bytes(m) for v, m in conn.execute(f"SELECT * FROM {self._META}")}
            except sqlite3.OperationalError as exc:
                if "no such table" not in str(exc):
                    raise
                metas = {}
            yield _SQLiteSnapshot(conn, metas)
        except sqlite3.Error as exc:
            raise BackendUnavailable(
                f"cannot read the online store {self.url}: {exc}", hint=f"check {SETTING}"
            ) from exc
        finally:
            conn.close()

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()
        self._local = threading.local()


class _SQLiteSnapshot(OnlineSnapshot):
    """One read transaction on the online store's file (``None``: there is no file)."""

    def __init__(self, conn: sqlite3.Connection | None, metas: dict[str, bytes]) -> None:
        self._conn = conn
        self.metas = metas

    def read_view(self, view: str) -> tuple[bytes | None, list[tuple[str, bytes]]]:
        meta = self.metas.get(view)
        if self._conn is None or meta is None:
            return meta, []
        table = SQLiteOnlineStore._table(view)
        try:
            rows = self._conn.execute(f"SELECT k, v FROM {table} ORDER BY k").fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):  # an invalidated view has no table
                raise
            rows = []
        return meta, [(str(k), bytes(v)) for k, v in rows]


class RedisOnlineStore(OnlineStore):
    """Redis: one hash per view (``loopline:fv:<view>``, field = entity key, value = row).

    A replacing write fills a staging hash through pipelines of 10,000 fields, then
    ``RENAME``s it over the live one and sets the metadata record (hash
    ``loopline:fv-meta``) in one ``MULTI``/``EXEC``, so readers switch at once. The staging
    hash expires :attr:`STAGING_TTL_S` after its last chunk, so a writer killed midway
    (SIGKILL, a lost node) leaves no copy of the view behind; the switch makes the live
    hash persistent again (``RENAME`` carries the expiry over). A read of many keys is one
    ``HMGET``. :meth:`invalidate` deletes the live hash and sets the metadata record in one
    ``MULTI``/``EXEC``, watching the metadata hash. The connection pool of redis-py is
    thread-safe.
    """

    PREFIX = "loopline:fv:"
    META_KEY = "loopline:fv-meta"
    #: Seconds a staging hash outlives its last written chunk.
    STAGING_TTL_S = 3600

    def __init__(self, url: str) -> None:
        import redis

        # The URL's password stays in the client: the url shown (in errors, in what
        # materialize returns and records in the metadata database) has none.
        self.url = display_uri(url)
        self._redis_mod = redis
        try:
            self._client: Any = redis.Redis.from_url(url)
        except ValueError as exc:
            raise ConfigError(
                f"{SETTING}={self.url!r} is not a Redis URL: {exc}",
                hint="use redis://host:port/db",
            ) from exc

    def _key(self, view: str) -> str:
        return self.PREFIX + view

    @contextlib.contextmanager
    def _translate(self) -> Iterator[None]:
        try:
            yield
        except self._redis_mod.RedisError as exc:
            raise BackendUnavailable(
                f"the online store {self.url} does not answer: {exc}",
                hint=f"check {SETTING} and that Redis is running",
            ) from exc

    def write(
        self, view: str, rows: Iterable[tuple[str, bytes]], *, meta: bytes, replace: bool
    ) -> int:
        live = self._key(view)
        target = f"{live}:staging:{uuid.uuid4().hex}" if replace else live
        n = 0
        with self._translate():
            try:
                for chunk in _chunks(rows, _WRITE_CHUNK):
                    pipe = self._client.pipeline(transaction=False)
                    pipe.hset(target, mapping=dict(chunk))
                    if replace:
                        pipe.expire(target, self.STAGING_TTL_S)
                    pipe.execute()
                    n += len(chunk)
                pipe = self._client.pipeline(transaction=True)
                if replace:
                    if n:
                        pipe.rename(target, live)
                        pipe.persist(live)
                    else:
                        pipe.delete(live)
                pipe.hset(self.META_KEY, view, meta)
                pipe.execute()
            except BaseException:
                if replace:
                    self._client.delete(target)
                raise
        return n

    def read(self, view: str, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        with self._translate():
            return list(self._client.hmget(self._key(view), list(keys)))

    def read_meta(self, view: str) -> bytes | None:
        with self._translate():
            value = self._client.hget(self.META_KEY, view)
        return None if value is None else bytes(value)

    def invalidate(self, view: str, *, meta: bytes) -> bool:
        with self._translate(), self._client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    # Watched, so that a first write of the view between the check
                    # and the switch is not taken for "never written".
                    pipe.watch(self.META_KEY)
                    if not pipe.hexists(self.META_KEY, view):
                        return False
                    pipe.multi()
                    pipe.delete(self._key(view))
                    pipe.hset(self.META_KEY, view, meta)
                    pipe.execute()
                    return True
                except self._redis_mod.WatchError:
                    continue

    def count(self, view: str) -> int:
        with self._translate():
            return int(self._client.hlen(self._key(view)))

    def delete(self, view: str) -> bool:
        with self._translate():
            pipe = self._client.pipeline(transaction=True)
            pipe.delete(self._key(view))
            pipe.hdel(self.META_KEY, view)
            return bool(pipe.execute()[1])

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[OnlineSnapshot]:
        with self._translate():
            metas = {k.decode(): bytes(v) for k, v in self._client.hgetall(self.META_KEY).items()}
        yield _RedisSnapshot(self, metas)

    def close(self) -> None:
        self._client.close()


class _RedisSnapshot(OnlineSnapshot):
    """Redis reads one view at a time (``HSCAN``); a view written during its read (its
    metadata record changed: a replacing write switches hash and record in one step) is
    read again, up to :attr:`ATTEMPTS` times."""

    ATTEMPTS = 5

    def __init__(self, store: RedisOnlineStore, metas: dict[str, bytes]) -> None:
        self._store = store
        self.metas = metas

    def read_view(self, view: str) -> tuple[bytes | None, list[tuple[str, bytes]]]:
        client, key = self._store._client, self._store._key(view)
        with self._store._translate():
            before = client.hget(self._store.META_KEY, view)
            for _ in range(self.ATTEMPTS):
                # HSCAN may return a field twice: the dict keeps one.
                rows = {k.decode(): bytes(v) for k, v in client.hscan_iter(key, count=1000)}
                after = client.hget(self._store.META_KEY, view)
                if after == before:
                    break
                before = after
        meta = None if after is None else bytes(after)
        return meta, sorted(rows.items())


def open_online_store(
    url: str | None, *, home: str | Path = ".loopline", busy_timeout_ms: int = 30_000
) -> OnlineStore:
    """Open the online store named by ``url`` (``None``: SQLite under ``home``).

    Raises :class:`ConfigError` naming ``LOOPLINE_ONLINE_STORE`` for an unknown scheme.

    Example:
        >>> import tempfile
        >>> type(open_online_store(None, home=tempfile.mkdtemp())).__name__
        'SQLiteOnlineStore'
    """
    if url is None or url == "":
        return SQLiteOnlineStore(Path(home) / "online.db", busy_timeout_ms=busy_timeout_ms)
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        if not path or path == ":memory:":
            raise ConfigError(
                f"{SETTING}={url!r} names no file",
                hint="use sqlite:///path/to/online.db (an in-memory store would be empty "
                "in every other process)",
            )
        return SQLiteOnlineStore(path, busy_timeout_ms=busy_timeout_ms)
    if url.startswith(REDIS_SCHEMES):
        return RedisOnlineStore(url)
    raise ConfigError(
        f"{SETTING} has unknown scheme in {display_uri(url)!r}",
        hint="use sqlite:///path/to/online.db or redis://host:port/db",
    )
