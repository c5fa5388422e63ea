"""``loopline backup`` / ``loopline restore`` as a user runs them: real processes, real stores."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

import loopline as ll
from loopline.core.artifacts import open_artifact_store
from loopline.core.db import create_engine_for
from tests.cli_run import run_cli
from tests.conftest import s3_options
from tests.core.test_backup import _kind, _s3_prefix, assert_same_store, build_store, new_db

__all__ = ["new_db"]  # the fixture, re-used from the core tests


def _loopline(*args: str, uri: str, artifacts: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LOOPLINE_URI": uri, "LOOPLINE_ARTIFACTS": artifacts}
    return run_cli(args, env=env, timeout=300)


_SLOW = pytest.mark.slow  # several `loopline` processes each: over 20 s on a shared machine


@pytest.mark.parametrize(
    ("db", "artifacts"),
    [
        ("sqlite", "local"),
        pytest.param("postgresql", "local", marks=_SLOW),
        pytest.param("sqlite", "s3", marks=_SLOW),
        pytest.param("postgresql", "s3", marks=_SLOW),
    ],
    ids=["sqlite-local", "postgresql-local", "sqlite-s3", "postgresql-s3"],
)
def test_backup_then_restore_into_an_empty_store_then_refuse_then_force(
    db: str,
    artifacts: str,
    new_db: Callable[[str], str],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    s3 = artifacts == "s3"
    if s3:
        request.getfixturevalue("s3_env")  # the processes read LOOPLINE_S3_* from it
    artifacts_url = _s3_prefix() if s3 else str(tmp_path / "art")
    db_uri = new_db(db)
    ctx = ll.init(uri=db_uri, artifacts=artifacts_url)
    build_store(ctx, model=False)
    dest = _s3_prefix() if s3 else str(tmp_path / "bk")

    made = _loopline("backup", dest, "--json", uri=db_uri, artifacts=artifacts_url)
    assert made.returncode == 0, made.stderr
    backed = orjson.loads(made.stdout)
    assert backed["rows"] > 0 and backed["artifact_count"] > 0 and backed["tables"] > 30

    target_uri = new_db(_kind(db_uri))
    target_art = _s3_prefix() if s3 else str(tmp_path / "restored-art")
    done = _loopline("restore", dest, "--json", uri=target_uri, artifacts=target_art)
    assert done.returncode == 0, done.stderr
    restored = orjson.loads(done.stdout)
    assert (restored["rows"], restored["artifact_count"]) == (
        backed["rows"],
        backed["artifact_count"],
    )
    assert restored["audit_problems"] == [] and restored["audit_checked"] > 0
    verify = _loopline("audit", "verify", "--json", uri=target_uri, artifacts=target_art)
    assert verify.returncode == 0 and orjson.loads(verify.stdout)["ok"] is True

    engine = create_engine_for(target_uri)
    store = open_artifact_store(target_art, s3_options() if s3 else None)
    assert_same_store(ctx.engine, ctx.artifacts, engine, store)

    again = _loopline("restore", dest, uri=target_uri, artifacts=target_art)
    assert again.returncode == 5, again.stderr
    assert "already holds data" in again.stderr and "--force" in again.stderr
    assert "Traceback" not in again.stderr

    forced = _loopline("restore", dest, "--force", uri=target_uri, artifacts=target_art)
    assert forced.returncode == 0, forced.stderr
    assert "--force: replacing every row" in forced.stderr and "runs (" in forced.stderr
    assert "restore complete" in forced.stdout and "audit log intact" in forced.stdout
    assert_same_store(ctx.engine, ctx.artifacts, engine, store)
    engine.dispose()
    ctx.close()


def test_restore_of_a_corrupted_backup_exits_6_naming_the_file(tmp_path: Path) -> None:
    uri, art = f"sqlite:///{tmp_path / 'src.db'}", str(tmp_path / "art")
    ctx = ll.init(uri=uri, artifacts=art)
    build_store(ctx, model=False)
    ctx.close()
    made = _loopline("backup", str(tmp_path / "bk"), uri=uri, artifacts=art)
    assert made.returncode == 0, made.stderr
    assert "backup complete" in made.stdout
    path = tmp_path / "bk" / "tables" / "experiments.parquet"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    target = f"sqlite:///{tmp_path / 'dst.db'}"
    bad = _loopline("restore", str(tmp_path / "bk"), uri=target, artifacts=str(tmp_path / "dst"))
    assert bad.returncode == 6
    assert "tables/experiments.parquet" in bad.stderr and "corrupted" in bad.stderr
    assert not (tmp_path / "dst.db").exists() or "Traceback" not in bad.stderr


@pytest.mark.parametrize("command", ["backup", "restore"])
def test_a_server_url_is_refused_with_the_setting_named(command: str, tmp_path: Path) -> None:
    result = _loopline(
        command,
        str(tmp_path / f"x-{uuid.uuid4().hex[:6]}"),
        uri="http://127.0.0.1:1",
        artifacts="a",
    )
    assert result.returncode == 2
    assert "LOOPLINE_URI is a server URL" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "manifest", [b"[]", b'"x"', b"5", b"null"], ids=["list", "text", "number", "null"]
)
def test_a_manifest_that_is_json_but_not_an_object_exits_6(tmp_path: Path, manifest: bytes) -> None:
    (tmp_path / "bk").mkdir()
    (tmp_path / "bk" / "manifest.json").write_bytes(manifest)
    target = f"sqlite:///{tmp_path / 'dst.db'}"
    bad = _loopline("restore", str(tmp_path / "bk"), uri=target, artifacts=str(tmp_path / "dst"))
    assert bad.returncode == 6, bad.stderr
    assert "not a valid Loopline backup manifest" in bad.stderr and "not an object" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_online_rows_move_with_the_backup_and_an_old_backup_names_the_views(
    tmp_path: Path,
) -> None:
    from tests.core.test_backup_online import USERS, _features

    src_online = f"sqlite:///{tmp_path / 'src-online.db'}"
    uri, art = f"sqlite:///{tmp_path / 'src.db'}", str(tmp_path / "art")
    ctx = ll.init(uri=uri, artifacts=art, online_store=src_online)
    before = _features(ctx)
    ctx.close()

    def run(*args: str, uri: str, online: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "LOOPLINE_URI": uri, "LOOPLINE_ARTIFACTS": art}
        return run_cli(args, env={**env, "LOOPLINE_ONLINE_STORE": online}, timeout=300)

    made = run("backup", str(tmp_path / "bk"), uri=uri, online=src_online)
    assert made.returncode == 0, made.stderr
    assert "3 online feature views" in made.stdout and "warning" not in made.stderr

    dst, dst_online = f"sqlite:///{tmp_path / 'dst.db'}", f"sqlite:///{tmp_path / 'dst-on.db'}"
    done = run("restore", str(tmp_path / "bk"), uri=dst, online=dst_online)
    assert done.returncode == 0, done.stderr
    assert "3 online feature views" in done.stdout and "warning" not in done.stderr
    ll.init(uri=dst, artifacts=art, online_store=dst_online)
    for view, rows in before.items():
        assert ll.features.get_online(view, USERS) == rows, view

    # A backup as Loopline wrote them before online rows were backed up (format 1).
    manifest = orjson.loads((tmp_path / "bk" / "manifest.json").read_bytes())
    manifest["format_version"], manifest["online"] = 1, None
    (tmp_path / "bk" / "manifest.json").write_bytes(orjson.dumps(manifest))
    old = run(
        "restore",
        str(tmp_path / "bk"),
        uri=f"sqlite:///{tmp_path / 'old.db'}",
        online=f"sqlite:///{tmp_path / 'old-on.db'}",
    )
    assert old.returncode == 0, old.stderr
    assert "holds no online rows" in old.stderr
    for view in ("u", "w", "changed"):
        assert f"loopline features materialize {view}`" in old.stderr
    assert "materialize never" not in old.stderr
