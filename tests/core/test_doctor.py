"""``loopline doctor``'s checks: an online store that cannot be used is a failed check."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from loopline.config import Settings
from loopline.core.doctor import run_checks


def _online(tmp_path: Path, url: str) -> tuple[bool, str]:
    settings = Settings(
        uri=f"sqlite:///{tmp_path / 'meta.db'}",
        artifacts=str(tmp_path / "artifacts"),
        online_store=url,
    )
    [check] = [c for c in run_checks(settings) if c.name == "online store"]
    return check.ok, check.detail


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("foo://x", "unknown scheme"),
        ("rediss://nohost.invalid:6379/0", "does not answer"),
        ("unix:///nonexistent/loopline.sock", "does not answer"),
        ("redis://127.0.0.1:1/0", "does not answer"),
        ("sqlite:///:memory:", "names no file"),
    ],
    ids=[
        "unknown-scheme",
        "rediss-no-host",
        "unix-no-socket",
        "redis-closed-port",
        "sqlite-memory",
    ],
)
def test_an_unusable_online_store_fails_naming_the_setting(
    tmp_path: Path, url: str, words: str
) -> None:
    ok, detail = _online(tmp_path, url)
    assert not ok
    assert "LOOPLINE_ONLINE_STORE" in detail and words in detail


def test_the_embedded_and_a_sqlite_online_store_pass(tmp_path: Path) -> None:
    assert _online(tmp_path, "") == (True, "sqlite (embedded)")
    ok, detail = _online(tmp_path, f"sqlite:///{tmp_path / 'online.db'}")
    assert ok and "sqlite" in detail


def test_a_redis_that_answers_passes(tmp_path: Path) -> None:
    url = os.environ.get("LOOPLINE_TEST_REDIS_URL")
    if not url:
        pytest.skip("needs the Redis service (make test)")
    assert _online(tmp_path, url) == (True, "redis answers")


def _with_password(uri: str, password: str) -> str:
    """``uri`` (``scheme://user@host...`` or ``scheme://host...``) with ``password`` added."""
    scheme, rest = uri.split("://", 1)
    user, at, host = rest.partition("@")
    return f"{scheme}://{user}:{password}@{host}" if at else f"{scheme}://:{password}@{rest}"


@pytest.mark.parametrize(
    "backend",
    ["postgresql", "postgresql-unreachable", "server-unreachable", "redis", "redis-unreachable"],
)
def test_no_password_in_the_report(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    password = "hunter2-do-not-show"
    uri = f"sqlite:///{tmp_path / 'meta.db'}"
    online = None
    if backend == "postgresql":  # the test server trusts loopback: the password goes unused
        uri = _with_password(str(request.getfixturevalue("pg_uri")), password)
    elif backend == "postgresql-unreachable":
        uri = f"postgresql://loopline:{password}@127.0.0.1:1/loopline"
    elif backend == "server-unreachable":
        uri = f"http://loopline:{password}@127.0.0.1:1"
    elif backend == "redis":  # a password the test Redis does not ask for: it answers
        online = _with_password(str(request.getfixturevalue("redis_url")), password)
    else:
        online = f"redis://:{password}@127.0.0.1:1/0"
    settings = Settings(uri=uri, artifacts=str(tmp_path / "artifacts"), online_store=online)
    checks = run_checks(settings)
    shown = [text for c in checks for text in (c.target, c.detail)]
    assert not any(password in text for text in shown), shown
    checked = checks[0] if online is None else checks[-1]
    assert "***" in checked.target
    assert checked.ok == (backend in ("postgresql", "redis")), checked.detail


def test_a_local_artifact_folder_next_to_a_shared_database_is_pointed_out(
    db_uri: str, tmp_path: Path
) -> None:
    settings = Settings(uri=db_uri, artifacts=str(tmp_path / "artifacts"))
    [check] = [c for c in run_checks(settings) if c.name == "artifacts"]
    assert check.ok, check.detail
    if db_uri.startswith("postgresql"):
        assert "other machines will find the rows this one records, not their files" in (
            check.detail
        )
        assert str(tmp_path / "artifacts") in check.detail and "LOOPLINE_ARTIFACTS" in check.detail
    else:  # one machine's SQLite file: its own folder is the right place
        assert check.detail == "writable"
