"""``loopline tokens create/ls/revoke`` in a real subprocess, and what the servers say at start."""

from __future__ import annotations

import hashlib
import os
import subprocess
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from loopline.cli._listen import announce, configure_hosts, is_loopback
from loopline.core import audit, auth
from loopline.core.context import Context
from tests.cli_run import run_loopline


def _tokens(ctx: Context, *args: str) -> subprocess.CompletedProcess[str]:
    return run_loopline(ctx, "tokens", *args, env={"LOOPLINE_ACTOR": "ada"})


def _json(ctx: Context, *args: str) -> Any:
    done = _tokens(ctx, *args, "--json")
    assert done.returncode == 0, done.stderr
    return orjson.loads(done.stdout)


def test_create_shows_the_token_once_ls_never_and_revoke_audits(ctx: Context) -> None:
    made = _json(ctx, "create", "--role", "editor", "--name", "ci")
    assert set(made) == {"token", "role", "name"}
    assert (made["role"], made["name"]) == ("editor", "ci")
    assert made["token"].startswith("ll_")
    assert auth.verify_token(ctx.engine, made["token"]) == auth.Principal("ci", "editor")
    with ctx.engine.connect() as conn:
        stored = conn.execute(sa.select(auth.api_tokens.c.token_hash)).scalar_one()
    assert stored == hashlib.sha256(made["token"].encode()).hexdigest()

    plain = _tokens(ctx, "create", "--role", "viewer")
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.strip().startswith("ll_")
    assert "shown only this once" in plain.stderr

    for listing in (_tokens(ctx, "ls").stdout, orjson.dumps(_json(ctx, "ls")).decode()):
        assert made["token"] not in listing and stored not in listing
        assert "ci" in listing
    listed = _json(ctx, "ls")
    first = listed[0]
    assert (first["name"], first["role"], first["active"], first["created_by"]) == (
        "ci",
        "editor",
        True,
        "ada",
    )

    done = _tokens(ctx, "revoke", "ci")
    assert done.returncode == 0, done.stderr
    assert "revoked" in done.stdout
    assert auth.verify_token(ctx.engine, made["token"]) is None
    assert [t["name"] for t in _json(ctx, "ls", "--active")] == [listed[1]["name"]]
    actions = [(e.action, e.actor) for e in audit.events(ctx.engine, object_type="token")]
    assert actions[-1] == ("token.revoke", "ada")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["create", "--role", "root"], 2, "role 'root' is not one of viewer, editor, admin"),
        (["revoke", "nobody"], 4, "no token named 'nobody'"),
    ],
    ids=["bad-role", "unknown-name"],
)
def test_mistakes_exit_nonzero_with_a_clear_message(
    embedded_ctx: Context, args: list[str], code: int, message: str
) -> None:
    done = _tokens(embedded_ctx, *args)
    assert done.returncode == code
    assert message in " ".join(done.stderr.split())


def test_a_duplicate_name_is_a_conflict(embedded_ctx: Context) -> None:
    _json(embedded_ctx, "create", "--role", "viewer", "--name", "grafana")
    done = _tokens(embedded_ctx, "create", "--role", "admin", "--name", "grafana")
    assert done.returncode == 5
    assert "exists already" in done.stderr


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.1.2.3", False),
        ("example.org", False),
    ],
)
def test_loopback_detection(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_servers_warn_when_bound_to_the_network_without_auth(
    embedded_ctx: Context, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    announce("loopline server", "127.0.0.1", 5000, ctx=embedded_ctx)
    err = " ".join(capsys.readouterr().err.split())
    assert "listening on http://127.0.0.1:5000 (loopback only); auth OFF" in err
    assert "warning" not in err

    announce("loopline serve", "0.0.0.0", 8080, ctx=embedded_ctx)
    err = " ".join(capsys.readouterr().err.split())
    assert "listening on http://0.0.0.0:8080 (reachable from the network); auth OFF" in err
    assert "warning: 0.0.0.0 is not a loopback address and auth is off" in err

    monkeypatch.setattr(embedded_ctx.settings, "auth", True)
    announce("loopline server", "0.0.0.0", 5000, ctx=embedded_ctx)
    err = " ".join(capsys.readouterr().err.split())
    assert "auth ON" in err and "not a loopback" not in err
    assert "no active API token yet" in err


@pytest.mark.parametrize(
    ("bind", "option", "setting", "effective"),
    [
        ("127.0.0.1", None, None, ""),  # the loopback names only
        ("::1", None, None, ""),
        ("0.0.0.0", None, None, "*"),  # names unknown here: any Host
        ("0.0.0.0", None, "a.internal", "a.internal"),
        ("127.0.0.1", None, "a.internal", "a.internal"),
        ("0.0.0.0", "b.internal", "a.internal", "b.internal"),
        ("0.0.0.0", "", None, ""),  # loopback names only, also on the network
    ],
)
def test_the_allowed_hosts_default_by_the_address_bound(
    monkeypatch: pytest.MonkeyPatch,
    bind: str,
    option: str | None,
    setting: str | None,
    effective: str,
) -> None:
    monkeypatch.setenv("LOOPLINE_ALLOWED_HOSTS", "placeholder")  # restored after the test
    if setting is None:
        monkeypatch.delenv("LOOPLINE_ALLOWED_HOSTS")
    else:
        monkeypatch.setenv("LOOPLINE_ALLOWED_HOSTS", setting)
    assert configure_hosts(bind, option) == effective
    assert os.environ["LOOPLINE_ALLOWED_HOSTS"] == effective  # for uvicorn's workers too


def test_servers_say_which_host_names_they_answer(
    embedded_ctx: Context, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embedded_ctx.settings, "allowed_hosts", "")
    announce("loopline server", "127.0.0.1", 5000, ctx=embedded_ctx)
    err = " ".join(capsys.readouterr().err.split())
    assert "Host localhost, 127.0.0.1, [::1] only (--allowed-hosts adds names)" in err
    monkeypatch.setattr(embedded_ctx.settings, "allowed_hosts", "*")
    announce("loopline serve", "0.0.0.0", 8080, ctx=embedded_ctx)
    err = " ".join(capsys.readouterr().err.split())
    assert "any Host name (--allowed-hosts NAME,... limits it, against DNS rebinding)" in err
