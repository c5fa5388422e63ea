"""API tokens: stored hashed, roles ordered, revocation, the in-memory cache, the access table."""

from __future__ import annotations

import hashlib
import time

import pytest
import sqlalchemy as sa

from loopline.core import audit, auth
from loopline.core.access import DENY, PUBLIC, AccessTable, bearer_token
from loopline.core.context import Context
from loopline.core.db import create_engine_for
from loopline.core.db_migrations import upgrade
from loopline.errors import Conflict, InvalidInput, NotFound
from tests.schema_diff import schema_diffs


def test_the_migration_creates_exactly_the_tokens_table_and_downgrades(db_uri: str) -> None:
    from alembic import command

    from loopline.core.db_migrations import alembic_config

    engine = create_engine_for(db_uri)
    upgrade(engine)
    assert "api_tokens" in sa.inspect(engine).get_table_names()
    assert schema_diffs(engine, {"api_tokens"}) == []
    command.downgrade(alembic_config(engine), "0008_monitoring")
    assert "api_tokens" not in sa.inspect(engine).get_table_names()
    upgrade(engine)
    assert "api_tokens" in sa.inspect(engine).get_table_names()
    engine.dispose()


def test_tokens_are_stored_only_as_their_sha256(ctx: Context) -> None:
    made = auth.create_token(ctx.engine, "editor", name="ci", actor="ada")
    assert made.token.startswith("ll_") and len(made.token) >= 40
    with ctx.engine.connect() as conn:
        rows = conn.execute(sa.select(auth.api_tokens)).mappings().all()
    assert len(rows) == 1
    stored = " ".join(str(v) for v in rows[0].values())
    assert made.token not in stored and made.token[3:] not in stored
    assert rows[0]["token_hash"] == hashlib.sha256(made.token.encode()).hexdigest()
    assert (rows[0]["name"], rows[0]["role"], rows[0]["created_by"]) == ("ci", "editor", "ada")


def test_create_list_verify_revoke_and_the_audit_trail(ctx: Context) -> None:
    viewer = auth.create_token(ctx.engine, "viewer", actor="ada")
    admin = auth.create_token(ctx.engine, "admin", name="root", actor="ada")
    assert viewer.name.startswith("viewer-")
    assert auth.verify_token(ctx.engine, viewer.token) == auth.Principal(viewer.name, "viewer")
    assert auth.verify_token(ctx.engine, admin.token) == auth.Principal("root", "admin")
    assert auth.verify_token(ctx.engine, "ll_not-a-token") is None
    listed = auth.list_tokens(ctx.engine)
    assert [(t.name, t.role, t.active) for t in listed] == [
        (viewer.name, "viewer", True),
        ("root", "admin", True),
    ]
    assert not any(hasattr(t, "token") or hasattr(t, "token_hash") for t in listed)

    revoked = auth.revoke_token(ctx.engine, "root", actor="bob")
    assert revoked.revoked_at is not None
    assert auth.verify_token(ctx.engine, admin.token) is None
    assert [t.name for t in auth.list_tokens(ctx.engine, include_revoked=False)] == [viewer.name]
    assert auth.count_active(ctx.engine) == 1

    events = audit.events(ctx.engine, object_type="token")
    assert [(e.action, e.object_id, e.actor) for e in events] == [
        ("token.create", viewer.name, "ada"),
        ("token.create", "root", "ada"),
        ("token.revoke", "root", "bob"),
    ]
    assert all(admin.token not in str(e.after) for e in events)
    assert audit.verify(ctx.engine).ok


def test_bad_requests_name_what_is_wrong(embedded_ctx: Context) -> None:
    engine = embedded_ctx.engine
    with pytest.raises(InvalidInput, match="role 'owner' is not one of viewer, editor, admin"):
        auth.create_token(engine, "owner", actor="ada")
    with pytest.raises(InvalidInput, match=r"token name '\.\./x' is not allowed") as bad:
        auth.create_token(engine, "viewer", name="../x", actor="ada")
    assert bad.value.field == "name"
    auth.create_token(engine, "viewer", name="grafana", actor="ada")
    with pytest.raises(Conflict, match="a token named 'grafana' exists already"):
        auth.create_token(engine, "admin", name="grafana", actor="ada")
    auth.revoke_token(engine, "grafana", actor="ada")
    with pytest.raises(Conflict, match="revoked already"):
        auth.revoke_token(engine, "grafana", actor="ada")
    with pytest.raises(NotFound, match="no token named 'nobody'"):
        auth.revoke_token(engine, "nobody", actor="ada")


def test_roles_are_ordered() -> None:
    allowed = {(h, n) for h in auth.ROLES for n in auth.ROLES if auth.role_allows(h, n)}
    assert allowed == {
        ("viewer", "viewer"),
        ("editor", "viewer"),
        ("editor", "editor"),
        ("admin", "viewer"),
        ("admin", "editor"),
        ("admin", "admin"),
    }


def test_the_cache_sees_new_tokens_at_once_and_revocations_after_a_refresh(
    embedded_ctx: Context,
) -> None:
    engine = embedded_ctx.engine
    cache = auth.TokenCache(engine, refresh_s=0.2)
    cache.start()
    try:
        made = auth.create_token(engine, "editor", name="ci", actor="ada")
        assert cache.lookup(made.token) is None  # not loaded yet ...
        assert cache.lookup_after_miss(made.token) == auth.Principal("ci", "editor")  # ... now
        auth.revoke_token(engine, "ci", actor="ada")
        deadline = time.monotonic() + 5
        while cache.lookup(made.token) is not None:
            assert time.monotonic() < deadline, "revoked token still accepted after 5 s"
            time.sleep(0.05)
    finally:
        cache.stop()
    (info,) = auth.list_tokens(engine)
    assert info.last_used is not None  # written by a refresh, not on the request path


def test_a_token_revoked_through_the_api_during_a_miss_stays_refused(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A miss queried the table, the API revoked the token and reloaded the cache (forget)
    # before the miss's answer was stored: the stored answer put the revoked token back
    # in memory until the next refresh, though the API's revocation is meant to be at once.
    engine = ctx.engine
    cache = auth.TokenCache(engine, refresh_s=300)
    cache.refresh()
    made = auth.create_token(engine, "editor", name="ci", actor="ada")
    real_verify = auth.verify_token
    revoked = False

    def verify_then_revoke(engine_: sa.Engine, token: str) -> auth.Principal | None:
        nonlocal revoked
        answer = real_verify(engine_, token)
        if not revoked:  # the DELETE /api/v1/tokens/ci request, between query and store
            revoked = True
            auth.revoke_token(engine, "ci", actor="ada")
            cache.forget()
        return answer

    monkeypatch.setattr(auth, "verify_token", verify_then_revoke)
    assert cache.lookup_after_miss(made.token) is None
    assert cache.lookup(made.token) is None


def test_a_new_token_is_found_when_a_reload_runs_during_its_lookup(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = ctx.engine
    cache = auth.TokenCache(engine, refresh_s=300)
    cache.refresh()
    made = auth.create_token(engine, "viewer", name="grafana", actor="ada")
    real_verify = auth.verify_token
    reloads = 0

    def verify_during_a_reload(engine_: sa.Engine, token: str) -> auth.Principal | None:
        nonlocal reloads
        answer = real_verify(engine_, token)
        if reloads == 0:  # the periodic refresh, run between query and store
            reloads += 1
            cache.refresh()
        return answer

    monkeypatch.setattr(auth, "verify_token", verify_during_a_reload)
    assert cache.lookup_after_miss(made.token) == auth.Principal("grafana", "viewer")
    assert cache.lookup(made.token) == auth.Principal("grafana", "viewer")


def test_a_stream_of_bad_tokens_costs_a_bounded_number_of_queries(
    embedded_ctx: Context,
) -> None:
    cache = auth.TokenCache(embedded_ctx.engine, miss_queries_per_s=5)
    cache.refresh()
    queries = 0

    @sa.event.listens_for(embedded_ctx.engine, "before_cursor_execute")
    def count(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        nonlocal queries
        queries += statement.lstrip().upper().startswith("SELECT")

    start = time.monotonic()
    for i in range(200):
        assert cache.lookup_after_miss(f"ll_guess{i}") is None
    seconds = time.monotonic() - start
    assert queries <= 5 * (int(seconds) + 1)


def test_the_access_table_matches_routes_and_denies_the_rest() -> None:
    table = AccessTable(
        [
            ("GET", "/health", PUBLIC),
            ("GET", "/runs/{run_id}", "viewer"),
            ("POST", "/runs/search", "viewer"),
            ("DELETE", "/runs/{run_id}", "admin"),
            ("GET", "/files/{path:path}", "viewer"),
        ]
    )
    assert table.lookup("HEAD", "/health") == PUBLIC
    assert table.lookup("GET", "/runs/abc") == "viewer"
    assert table.lookup("GET", "/runs/abc/extra") == DENY
    assert table.lookup("DELETE", "/runs/abc") == "admin"
    assert table.lookup("PUT", "/runs/abc") == DENY
    assert table.lookup("GET", "/files/a/b/c.txt") == "viewer"
    assert table.lookup("GET", "/elsewhere") == DENY
    assert table.knows_path("/runs/abc") and not table.knows_path("/elsewhere")
    with pytest.raises(ValueError, match="twice"):
        AccessTable([("GET", "/a", "viewer"), ("GET", "/a", "admin")])
    with pytest.raises(ValueError, match="unknown role"):
        AccessTable([("GET", "/a", "owner")])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer ll_abc", "ll_abc"),
        ("bearer   ll_abc ", "ll_abc"),
        ("Basic dXNlcjpwdw==", None),
        ("Bearer", None),
        ("", None),
        (None, None),
    ],
    ids=["bearer", "lowercase-spaces", "basic", "no-token", "empty", "absent"],
)
def test_bearer_header_parsing(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token
