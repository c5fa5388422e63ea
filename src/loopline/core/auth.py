"""API tokens and roles: who may call ``loopline server --auth`` and ``loopline serve --auth``.

A token is a random secret (``ll_`` + 43 URL-safe characters, 256 bits) shown once, when it
is made. The ``api_tokens`` table keeps its SHA-256 hash, never the token: a copy of the
database (a backup, a read replica) does not let anyone call the servers.

SHA-256 and not a slow password hash (bcrypt, argon2): a slow hash exists to make guessing a
*low-entropy* secret (a password) expensive. A 256-bit random token cannot be guessed
however fast the hash is, and a fast hash lets the servers check a token on every request
by one dictionary lookup. For the same reason no salt is needed: precomputed tables are no
use against secrets nobody can enumerate.

Roles are ordered, each including the one before it:

* ``viewer`` - read everything (runs, models, deployments, the audit log), ask for
  predictions;
* ``editor`` - also log runs, register models, deploy, send labels;
* ``admin``  - also manage tokens, delete and restore, and administrative actions.

Creation and revocation are written to the audit log with the acting user.

Example:
    >>> from loopline.core.db import create_engine_for
    >>> from loopline.core.db_migrations import upgrade
    >>> engine = create_engine_for("sqlite:///:memory:"); upgrade(engine)
    >>> made = create_token(engine, "viewer", name="grafana", actor="ada")
    >>> verify_token(engine, made.token).name
    'grafana'
    >>> _ = revoke_token(engine, "grafana", actor="ada")
    >>> verify_token(engine, made.token) is None
    True
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal, get_args

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError as SAIntegrityError

from loopline.core.db import reading
from loopline.core.schema import metadata
from loopline.errors import Conflict, InvalidInput, NotFound

log = logging.getLogger("loopline.auth")

Role = Literal["viewer", "editor", "admin"]
#: Lowest to highest; a role is allowed whatever a lower one is.
ROLES: tuple[Role, ...] = get_args(Role)
_RANK = {role: i for i, role in enumerate(ROLES)}
TOKEN_PREFIX = "ll_"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}")

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    # SHA-256 of the token, hex; unique so that a lookup by hash finds one row.
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("revoked_at", sa.Float, nullable=True),
    sa.Column("last_used", sa.Float, nullable=True),
)


@dataclass(frozen=True)
class CreatedToken:
    """A new token: the secret itself is here and nowhere else, ever again."""

    token: str
    name: str
    role: Role


@dataclass(frozen=True)
class TokenInfo:
    """What is stored about a token (never the token nor its hash)."""

    name: str
    role: Role
    created_at: float
    created_by: str
    revoked_at: float | None
    last_used: float | None

    @property
    def active(self) -> bool:
        """True unless revoked."""
        return self.revoked_at is None


@dataclass(frozen=True)
class Principal:
    """The caller a valid token stands for."""

    name: str
    role: Role

    def allows(self, needed: Role) -> bool:
        """True when this caller's role is ``needed`` or higher.

        Example:
            >>> Principal("ci", "editor").allows("viewer")
            True
        """
        return role_allows(self.role, needed)


def role_allows(have: Role, needed: Role) -> bool:
    """True when role ``have`` includes role ``needed`` (viewer < editor < admin).

    Example:
        >>> role_allows("admin", "editor"), role_allows("viewer", "editor")
        (True, False)
    """
    return _RANK[have] >= _RANK[needed]


def check_role(role: str) -> Role:
    """``role`` as a :data:`Role`, or :class:`InvalidInput` naming the valid ones.

    Example:
        >>> check_role("editor")
        'editor'
    """
    if role not in _RANK:
        raise InvalidInput(
            f"role {role!r} is not one of {', '.join(ROLES)}",
            field="role",
            hint="use --role viewer, editor or admin",
        )
    return role


def hash_token(token: str) -> str:
    """The hex SHA-256 of ``token``: what the table stores and what lookups compare.

    Example:
        >>> len(hash_token("ll_abc"))
        64
    """
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_token() -> str:
    """A fresh random token: ``ll_`` + 32 random bytes, URL-safe base64.

    Example:
        >>> new_token().startswith("ll_")
        True
    """
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def _check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise InvalidInput(
            f"token name {name!r} is not allowed",
            field="name",
            hint="use 1-100 letters, digits, '_', '.', '@' or '-', starting with a letter or digit",
        )
    return name


def _audit(conn: sa.Connection, actor: str, action: str, name: str, after: object) -> None:
    from loopline.core import audit

    audit.append(conn, actor=actor, action=action, object_type="token", object_id=name, after=after)


def create_token(engine: Engine, role: str, *, name: str | None = None, actor: str) -> CreatedToken:
    """Make a token with ``role``; store its hash; audit it as done by ``actor``.

    ``name`` defaults to ``ROLE-XXXXXX``. A name in use (also by a revoked token, whose row
    is kept for the audit trail) is a :class:`Conflict`.

    Example:
        >>> # create_token(ctx.engine, "editor", name="ci", actor="ada").token -> 'll_...'
    """
    checked = check_role(role)
    name = _check_name(name) if name is not None else f"{checked}-{secrets.token_hex(3)}"
    token = new_token()
    now = time.time()
    try:
        with engine.begin() as conn:
            conn.execute(
                api_tokens.insert().values(
                    name=name,
                    token_hash=hash_token(token),
                    role=checked,
                    created_at=now,
                    created_by=actor,
                )
            )
            _audit(conn, actor, "token.create", name, {"role": checked})
    except SAIntegrityError as exc:
        raise Conflict(
            f"a token named {name!r} exists already",
            hint="choose another --name (names of revoked tokens stay taken), or see "
            "`loopline tokens ls`",
        ) from exc
    return CreatedToken(token=token, name=name, role=checked)


def _info(row: Any) -> TokenInfo:
    m = row._mapping
    return TokenInfo(
        name=m["name"],
        role=m["role"],
        created_at=m["created_at"],
        created_by=m["created_by"],
        revoked_at=m["revoked_at"],
        last_used=m["last_used"],
    )


_INFO_COLUMNS = (
    api_tokens.c.name,
    api_tokens.c.role,
    api_tokens.c.created_at,
    api_tokens.c.created_by,
    api_tokens.c.revoked_at,
    api_tokens.c.last_used,
)


def list_tokens(engine: Engine, *, include_revoked: bool = True) -> list[TokenInfo]:
    """Every token's name, role and times, oldest first (never the token or its hash).

    Example:
        >>> # [t.name for t in list_tokens(ctx.engine)]
    """
    query = sa.select(*_INFO_COLUMNS).order_by(api_tokens.c.id)
    if not include_revoked:
        query = query.where(api_tokens.c.revoked_at.is_(None))
    with reading(engine) as conn:
        return [_info(r) for r in conn.execute(query)]


def revoke_token(engine: Engine, name: str, *, actor: str) -> TokenInfo:
    """Revoke the token ``name`` (the servers refuse it within their refresh interval).

    Revoking a revoked token is a :class:`Conflict`; an unknown name is :class:`NotFound`.

    Example:
        >>> # revoke_token(ctx.engine, "ci", actor="ada").revoked_at -> 1790000000.0
    """
    with engine.begin() as conn:
        row = conn.execute(sa.select(*_INFO_COLUMNS).where(api_tokens.c.name == name)).one_or_none()
        if row is None:
            raise NotFound(f"no token named {name!r}", hint="see `loopline tokens ls`")
        if row.revoked_at is not None:
            raise Conflict(f"token {name!r} is revoked already", hint="nothing to do")
        now = time.time()
        conn.execute(api_tokens.update().where(api_tokens.c.name == name).values(revoked_at=now))
        _audit(conn, actor, "token.revoke", name, {"role": row.role})
    return TokenInfo(
        name=row.name,
        role=row.role,
        created_at=row.created_at,
        created_by=row.created_by,
        revoked_at=now,
        last_used=row.last_used,
    )


def verify_token(engine: Engine, token: str) -> Principal | None:
    """The caller ``token`` stands for, or None if it is unknown or revoked (one query).

    Example:
        >>> # verify_token(ctx.engine, "ll_...") -> Principal(name='ci', role='editor')
    """
    with reading(engine) as conn:
        row = conn.execute(
            sa.select(api_tokens.c.name, api_tokens.c.role).where(
                api_tokens.c.token_hash == hash_token(token), api_tokens.c.revoked_at.is_(None)
            )
        ).one_or_none()
    return None if row is None else Principal(row.name, row.role)


def count_active(engine: Engine) -> int:
    """How many tokens are not revoked (a server with --auth and none refuses everyone).

    Example:
        >>> # count_active(ctx.engine) -> 2
    """
    with reading(engine) as conn:
        n = conn.execute(
            sa.select(sa.func.count()).where(api_tokens.c.revoked_at.is_(None))
        ).scalar_one()
    return int(n)


class TokenCache:
    """The active tokens by hash, in memory, refreshed from the store every ``refresh_s``.

    The servers check a token with :meth:`lookup`: a dict lookup, no query (the token's
    SHA-256 the first time it is seen after a refresh; the valid tokens seen since are kept
    in memory as they arrived - they are in this process's requests anyway).
    A revoked token is refused at the latest ``refresh_s`` seconds after the revocation
    (default 5); a token made after the last refresh is found at once, because a miss looks
    its hash up in the table (one indexed query; at most ``miss_queries_per_s`` a second,
    so a stream of bad tokens cannot load the database). Which tokens were used is kept in
    memory and written with each refresh, not on the request path: ``last_used`` is exact
    to ``refresh_s``.

    Example:
        >>> # cache = TokenCache(ctx.engine); cache.start(); cache.lookup("ll_...")
    """

    def __init__(
        self, engine: Engine, *, refresh_s: float = 5.0, miss_queries_per_s: int = 20
    ) -> None:
        self.engine = engine
        self.refresh_s = refresh_s
        self.miss_queries_per_s = miss_queries_per_s
        self._window = 0.0
        self._misses = 0
        self._by_hash: dict[str, Principal] = {}
        self._seen: dict[str, Principal] = {}
        self._used: set[str] = set()
        # Counts the reloads: a token looked up in the table is added to memory only when
        # no reload (a revocation's ``forget``) happened during the query, else the query
        # may predate the revocation and would put the revoked token back.
        self._generation = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> None:
        """Reload the active tokens and write the ``last_used`` times gathered since.

        Example:
            >>> # cache.refresh()
        """
        with self._lock:
            used, self._used = self._used, set()
            now = time.time()
            with self.engine.begin() as conn:
                for name in used:
                    conn.execute(
                        api_tokens.update().where(api_tokens.c.name == name).values(last_used=now)
                    )
                rows = conn.execute(
                    sa.select(api_tokens.c.token_hash, api_tokens.c.name, api_tokens.c.role).where(
                        api_tokens.c.revoked_at.is_(None)
                    )
                ).all()
            # One assignment: readers on other threads see the old dict or the new one.
            self._by_hash = {r.token_hash: Principal(r.name, r.role) for r in rows}
            self._seen = {}  # revoked tokens must go through the new table
            self._generation += 1

    def lookup(self, token: str) -> Principal | None:
        """The caller for ``token`` from memory, or None (no database access).

        A dict lookup by hash leaks no useful timing: the caller cannot choose the bytes of
        the hash it would have to guess.

        Example:
            >>> # cache.lookup(request_token)
        """
        # Taken before the table: a refresh in between leaves this write in the memo it
        # discards, so a token revoked by that refresh is never remembered past it.
        seen = self._seen
        found = seen.get(token)
        if found is None:
            found = self._by_hash.get(hash_token(token))
            if found is None:
                return None
            if len(seen) < 10_000:  # only valid tokens get here; bounded all the same
                seen[token] = found
        self._used.add(found.name)
        return found

    def lookup_after_miss(self, token: str) -> Principal | None:
        """After :meth:`lookup` missed: ask the table (a token made since the last refresh).

        Blocking (one query): call it from a worker thread. Past ``miss_queries_per_s``
        misses in a second, the rest are refused without a query.

        Example:
            >>> # await anyio.to_thread.run_sync(cache.lookup_after_miss, token)
        """
        found = self.lookup(token)
        if found is not None:
            return found
        for _ in range(3):
            with self._lock:
                now = time.monotonic()
                if now - self._window >= 1.0:
                    self._window, self._misses = now, 0
                self._misses += 1
                if self._misses > self.miss_queries_per_s:
                    return None
                generation = self._generation
            found = verify_token(self.engine, token)  # not under the lock: readers go on
            if found is None:
                return None
            with self._lock:
                if self._generation == generation:
                    # A new dict, not an update in place: readers see the old or the new.
                    self._by_hash = {**self._by_hash, hash_token(token): found}
                    self._used.add(found.name)
                    return found
            # A reload ran during the query, maybe for a revocation it did not see yet:
            # ask again (a token is revoked once, so the next answer is current).
        return self.lookup(token)  # reloads keep coming: trust the latest one

    def forget(self) -> None:
        """Drop what is in memory (after a revocation in this process): reload at once.

        Example:
            >>> # cache.forget()
        """
        self.refresh()

    def start(self) -> None:
        """Load now, then reload every ``refresh_s`` on a daemon thread.

        Example:
            >>> # cache.start()
        """
        self.refresh()
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="loopline-token-refresh", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.refresh_s):
            try:
                self.refresh()
            except sa.exc.SQLAlchemyError as exc:
                # Keep the last known tokens: a database blip must not lock everyone out
                # (nor let anyone in); the next refresh tries again.
                log.warning("could not refresh the API tokens: %s", exc)

    def stop(self) -> None:
        """Stop the refresh thread, writing the last ``last_used`` times.

        Example:
            >>> # cache.stop()
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        try:
            self.refresh()
        except sa.exc.SQLAlchemyError as exc:
            log.warning("could not write the tokens' last use: %s", exc)
