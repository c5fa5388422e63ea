"""Health checks of the configured backends, for ``loopline doctor``.

Example:
    >>> import tempfile
    >>> from loopline.config import REDIS_SCHEMES, Settings
    >>> checks = run_checks(Settings(uri="sqlite:///:memory:", artifacts=tempfile.mkdtemp()))
    >>> all(c.ok for c in checks)
    True
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa

from loopline.config import REDIS_SCHEMES, Settings, display_uri
from loopline.core.artifacts import S3ArtifactStore, open_artifact_store
from loopline.core.db import create_engine_for, reading
from loopline.core.db_migrations import check_known_revision, current_revision, head_revision
from loopline.core.scratch import Sweep, sweep
from loopline.errors import ConfigError, LooplineError


@dataclass(frozen=True)
class Check:
    """The outcome of one check: which backend, where, and whether it answered."""

    name: str
    target: str
    ok: bool
    detail: str
    seconds: float


def _timed(name: str, target: str, fn: Callable[[], str]) -> Check:
    start = time.perf_counter()
    try:
        detail = fn()
        ok = True
    except LooplineError as exc:
        detail, ok = str(exc), False
    except Exception as exc:  # a doctor reports every failure instead of dying on it
        detail, ok = f"{type(exc).__name__}: {exc}", False
    return Check(name, target, ok, detail, time.perf_counter() - start)


def _check_metadata(settings: Settings) -> str:
    uri = settings.metadata_uri
    if uri.startswith(("http://", "https://")):
        import httpx

        shown = display_uri(uri)
        try:
            resp = httpx.get(uri.rstrip("/") + "/health", timeout=5)
        except httpx.HTTPError as exc:
            raise LooplineError(f"server {shown} does not answer: {exc}") from exc
        if resp.status_code != 200:
            raise LooplineError(f"server {shown} answered /health with {resp.status_code}")
        return "server healthy"
    engine = create_engine_for(uri, busy_timeout_ms=settings.sqlite_busy_timeout_ms)
    try:
        rev = current_revision(engine)
        with reading(engine) as conn:
            conn.execute(sa.text("SELECT 1"))
        head = head_revision()
        check_known_revision(engine, rev)  # a newer Loopline's database fails the check
        if rev is None:
            return f"{engine.dialect.name} answers; empty (migrates to {head} on first use)"
        if rev != head:
            return f"{engine.dialect.name} at {rev}, newest is {head}: run `loopline db upgrade`"
        return f"{engine.dialect.name} answers, schema at {rev}"
    finally:
        engine.dispose()


#: A doctor answers within seconds: on S3 one attempt, each wait at most this long, not the
#: retries (about 105 s with the defaults) a real upload may spend on a slow endpoint.
DOCTOR_S3_WAIT_S = 10.0


def _quick(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "s3_max_attempts": 1,
            "s3_connect_timeout_s": min(settings.s3_connect_timeout_s, DOCTOR_S3_WAIT_S),
            "s3_read_timeout_s": min(settings.s3_read_timeout_s, DOCTOR_S3_WAIT_S),
        }
    )


def _check_artifacts(settings: Settings) -> str:
    store = open_artifact_store(settings.artifacts_uri, _quick(settings).s3_storage_options())
    store.check()
    if settings.metadata_uri.startswith("postgresql") and not isinstance(store, S3ArtifactStore):
        # The usual slip of a laptop joining the team: LOOPLINE_URI set, LOOPLINE_ARTIFACTS
        # forgotten. Its datasets and models are recorded in the shared database while
        # their files stay on the laptop, where no other machine can read them.
        return (
            f"writable; but a folder of this machine ({_local_folder(settings)}) while the "
            "metadata database is PostgreSQL: other machines will find the rows this one "
            "records, not their files - unless every machine mounts this folder at the same "
            "path, set LOOPLINE_ARTIFACTS to the team's s3://bucket/prefix"
        )
    return "writable"


def _local_folder(settings: Settings) -> str:
    from pathlib import Path

    return str(Path(settings.artifacts_uri.removeprefix("file://")).expanduser().resolve())


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def _describe(found: Sweep) -> str:
    parts = [f"{found.folder}: nothing left by killed writers"]
    if found.removed:
        parts[0] = (
            f"{found.folder}: removed {found.removed} left by killed writers "
            f"({_mib(found.removed_bytes)})"
        )
    if found.live:
        parts.append(f"{found.live} in use by running writers")
    if found.unknown:
        shown = ", ".join(found.unknown[:3]) + (", ..." if len(found.unknown) > 3 else "")
        parts.append(
            f"{len(found.unknown)} of unknown origin kept ({_mib(found.unknown_bytes)}: "
            f"{shown}; an earlier version's? remove them by hand while nothing runs)"
        )
    return "; ".join(parts)


def _check_temp_files(settings: Settings, store_answers: bool) -> str:
    """Remove what killed writers left in LOOPLINE_HOME/tmp and the store's tmp/; report.

    When the artifact check failed, the store is not asked again: a mute endpoint would
    cost the doctor a second wait to learn what the first already said.
    """
    from loopline.data.dataset_own_files import HOME_TMP_IN_USE

    home = settings.home.expanduser().resolve()
    lines = [_describe(sweep(home / "tmp", keep=HOME_TMP_IN_USE))]
    if not store_answers:
        lines.append(f"{settings.artifacts_uri}: not checked (the artifact store did not answer)")
        return "\n".join(lines)
    store = open_artifact_store(settings.artifacts_uri, _quick(settings).s3_storage_options())
    in_store = store.sweep_tmp()
    if in_store is not None:
        lines.append(_describe(in_store))
    if isinstance(store, S3ArtifactStore):
        uploads = store.unfinished_uploads()
        if uploads:
            oldest = min(started for _, started in uploads)
            lines.append(
                f"{store.url}: {len(uploads)} unfinished multipart upload(s), oldest begun "
                f"{oldest} (a killed upload's parts stay stored until aborted: a bucket "
                "lifecycle rule AbortIncompleteMultipartUpload removes them)"
            )
    return "\n".join(lines)


def _check_online(settings: Settings) -> str:
    uri = settings.online_store or ""
    if not uri:
        return "sqlite (embedded)"
    shown = display_uri(uri)
    if uri.startswith(REDIS_SCHEMES):
        import redis

        try:
            client = redis.Redis.from_url(uri, socket_timeout=3, socket_connect_timeout=3)
        except ValueError as exc:
            raise ConfigError(
                f"LOOPLINE_ONLINE_STORE={shown} is not a Redis URL: {exc}",
                hint="use redis://host:port/db, rediss://host:port/db or unix:///path.sock",
            ) from exc
        try:
            client.ping()
        except redis.RedisError as exc:
            raise LooplineError(
                f"Redis at LOOPLINE_ONLINE_STORE={shown} does not answer: {exc}"
            ) from exc
        finally:
            client.close()
        return "redis answers"
    if uri.startswith("sqlite:///"):
        path = uri.removeprefix("sqlite:///")
        if not path or path == ":memory:":
            raise ConfigError(
                f"LOOPLINE_ONLINE_STORE={shown} names no file",
                hint="use sqlite:///path/to/online.db",
            )
        return f"sqlite at {path}"
    # the online store refuses any other scheme on first use: say so now, not then
    raise ConfigError(
        f"LOOPLINE_ONLINE_STORE has unknown scheme in {shown!r}",
        hint="use sqlite:///path/to/online.db, redis://host:port/db, rediss://... or unix://...",
    )


def run_checks(settings: Settings) -> list[Check]:
    """Check every configured backend; never raises, each failure is a failed :class:`Check`.

    Example:
        >>> # [c.name for c in run_checks(load_settings())] -> ['metadata', 'artifacts', ...]
    """
    # Targets as display_uri() shows them: a report (or a pasted --json) must not carry
    # the password of the database or of Redis.
    artifacts = _timed(
        "artifacts", display_uri(settings.artifacts_uri), lambda: _check_artifacts(settings)
    )
    checks = [
        _timed("metadata", display_uri(settings.metadata_uri), lambda: _check_metadata(settings)),
        artifacts,
        _timed(
            "temp files",
            "killed writers' leftovers",
            lambda: _check_temp_files(settings, store_answers=artifacts.ok),
        ),
        _timed(
            "online store",
            display_uri(settings.online_store or "sqlite (embedded)"),
            lambda: _check_online(settings),
        ),
    ]
    if settings.ray_address:
        ray = display_uri(settings.ray_address)
        checks.append(Check("ray", ray, True, "configured (checked on use)", 0.0))
    return checks
