"""The remote tracking backend: the SDK over HTTP to a ``loopline server`` (``/api/v1``).

Used when ``LOOPLINE_URI`` is ``http(s)://host:port``. One keep-alive ``httpx.Client`` per
process and server carries every call; requests and answers are the pydantic models of
:mod:`loopline.tracking.wire`, which the server uses too.

Retries: a request that could not reach the server (connection refused or reset, a 503
because its database is down) is retried with exponential backoff for up to
``LOOPLINE_HTTP_RETRY_S`` seconds, then :class:`~loopline.errors.BackendUnavailable` is
raised. A request whose answer may have been lost after the server acted on it is retried
only when repeating it is harmless: reads, params (write-once), tags (overwrite), inputs,
artifacts (content-addressed), and metric batches, which carry ``(writer, seq)`` so the
server applies each at most once. Creating a run is retried only when it surely did not
reach the server.

Errors keep their class and message across the wire: the server answers
``{"error": {"code", "message", "hint", "field"}}`` and the client raises the
:class:`~loopline.errors.LooplineError` subclass with that code.

Example:
    >>> import loopline as ll  # doctest: +SKIP
    >>> ll.init(uri="http://127.0.0.1:5000")  # doctest: +SKIP
    >>> with ll.start_run(experiment="churn") as run:  # doctest: +SKIP
    ...     run.log_metric("auc", 0.91)
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
import weakref
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from loopline import __version__
from loopline.config import Settings
from loopline.core.artifacts import hash_bytes, hash_file
from loopline.errors import (
    ERROR_TABLE,
    BackendUnavailable,
    IntegrityError,
    InvalidInput,
    LooplineError,
    NotFound,
    PermissionDenied,
)
from loopline.tracking._dialect import MetricRow
from loopline.tracking.backend import TrackingBackend
from loopline.tracking.batch_codec import encode_metric_rows
from loopline.tracking.entities import (
    ArtifactEntry,
    MetricPoint,
    RunInput,
    RunRecord,
    RunSearchResult,
    ViewType,
)
from loopline.tracking.ingest import MetricSink, MetricWriter
from loopline.tracking.param_tag_checks import check_params, check_tags
from loopline.tracking.run_state import check_run_status
from loopline.tracking.validation import check_artifact_path, check_int, check_max_results
from loopline.tracking.wire import (
    ArtifactListModel,
    ArtifactModel,
    CreateRunRequest,
    LogInputsRequest,
    MetricHistoryModel,
    RunInputModel,
    RunModel,
    RunPageModel,
    SearchRunsRequest,
    UpdateRunRequest,
)

API = "/api/v1"
#: Metric points per log-batch request sent by the background writer (about 1.6 MB of JSON:
#: fewer, larger commits on the server; measured 25 % faster than 10,000 on SQLite).
REMOTE_BATCH_ROWS = 50_000
#: Header carrying an artifact's BLAKE3 digest with its bytes, both ways (the receiver
#: checks it).
DIGEST_HEADER = "X-Loopline-Digest"
_RETRY_STATUSES = frozenset({502, 503, 504})
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_CHUNK = 1 << 20
_BY_CODE: dict[str, type[LooplineError]] = {m.code: cls for cls, m in ERROR_TABLE.items()}
# A 401 (no token, or one unknown or revoked) has no class of its own: the caller may not
# do this, as with a role too low. As a bare LooplineError `loopline runs ls` exited 1,
# the code of a command whose result is a failure, instead of 7.
_BY_CODE["UNAUTHENTICATED"] = PermissionDenied


class HttpTransport:
    """A keep-alive HTTP client for one server, with retries and error mapping.

    The client is made per process (a forked child makes its own) and shared by threads.

    Example:
        >>> t = HttpTransport("http://127.0.0.1:5000", timeout_s=30, retry_s=60)
        >>> t.base_url
        'http://127.0.0.1:5000'
    """

    def __init__(
        self, base_url: str, *, timeout_s: float, retry_s: float, token: str | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.retry_s = retry_s
        # Sent on every request to a server started with --auth (LOOPLINE_TOKEN).
        self._headers = {"User-Agent": f"loopline/{__version__}"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._client: httpx.Client | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()

    @property
    def client(self) -> httpx.Client:
        """This process's client, made on first use.

        Example:
            >>> # transport.client.get("/health").status_code  -> 200
        """
        if self._client is None or self._pid != os.getpid():
            with self._lock:
                if self._client is None or self._pid != os.getpid():
                    # A client inherited through fork is dropped, not closed: its sockets
                    # belong to the parent's connections.
                    self._pid = os.getpid()
                    self._client = httpx.Client(
                        base_url=self.base_url,
                        timeout=httpx.Timeout(self.timeout_s),
                        limits=httpx.Limits(max_connections=32, max_keepalive_connections=32),
                        headers=self._headers,
                    )
        return self._client

    def request(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool,
        body: bytes | None = None,
        params: Mapping[str, Any] | None = None,
        upload: Path | None = None,
        stream_to: Path | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send a request, retrying what is safe to retry; raise the server's error.

        ``upload`` streams a file as the body (re-read on each attempt); ``stream_to``
        writes a successful answer's body to that file instead of memory; ``headers`` are
        added to this request's.

        Example:
            >>> # transport.request("GET", "/api/v1/runs/abc", idempotent=True).json()
        """
        deadline = time.monotonic() + self.retry_s
        pause = 0.05
        while True:
            try:
                response = self._send(method, path, body, params, upload, stream_to, headers)
            except _NEVER_SENT as exc:
                failure = f"cannot connect: {exc}"
            except httpx.TransportError as exc:
                if not idempotent:
                    raise self._unavailable(method, path, f"{type(exc).__name__}: {exc}") from exc
                failure = f"{type(exc).__name__}: {exc}"
            else:
                retryable = response.status_code == 503 or (
                    idempotent and response.status_code in _RETRY_STATUSES
                )
                if not retryable:
                    if response.status_code >= 400:
                        raise _error_from(response)
                    return response
                failure = f"answered {response.status_code}"
            if time.monotonic() + pause > deadline:
                raise self._unavailable(method, path, failure)
            time.sleep(pause)
            pause = min(pause * 2, 2.0)

    def _send(
        self,
        method: str,
        path: str,
        body: bytes | None,
        params: Mapping[str, Any] | None,
        upload: Path | None,
        stream_to: Path | None,
        extra: Mapping[str, str] | None,
    ) -> httpx.Response:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        content: bytes | Iterator[bytes] | None = body
        if upload is not None:
            headers = {
                "Content-Type": "application/octet-stream",
                "Content-Length": str(upload.stat().st_size),
            }
            content = _read_chunks(upload)
        request = self.client.build_request(
            method, path, content=content, params=params, headers={**headers, **(extra or {})}
        )
        if stream_to is None:
            return self.client.send(request)
        response = self.client.send(request, stream=True)
        try:
            if response.status_code >= 400:
                response.read()
                return response
            with stream_to.open("wb") as out:
                for chunk in response.iter_bytes(_CHUNK):
                    out.write(chunk)
        finally:
            response.close()
        return response

    def _unavailable(self, method: str, path: str, failure: str) -> BackendUnavailable:
        return BackendUnavailable(
            f"the Loopline server {self.base_url} did not take {method} {path} "
            f"(retried for {self.retry_s:g} s): {failure}",
            hint="check that `loopline server` runs there (LOOPLINE_URI), or raise "
            "LOOPLINE_HTTP_RETRY_S",
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpTransport:
        """A transport to the server ``settings.metadata_uri`` names, with its timeouts and token.

        Example:
            >>> # HttpTransport.from_settings(load_settings(uri="http://127.0.0.1:5000"))
        """
        return cls(
            settings.metadata_uri,
            timeout_s=settings.http_timeout_s,
            retry_s=settings.http_retry_s,
            token=settings.token.get_secret_value() if settings.token else None,
        )

    def close(self) -> None:
        """Close this process's connections.

        Example:
            >>> HttpTransport("http://x", timeout_s=1, retry_s=0).close()
        """
        if self._client is not None and self._pid == os.getpid():
            self._client.close()
        self._client = None


def _read_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            yield chunk


def run_route(run_id: Any, tail: str = "") -> str:
    """``/runs/{run_id}{tail}`` with the id escaped as one path segment.

    An id is sent as it is, so the server answers what the embedded store answers for it
    (NotFound naming it): quoted, ``?``, ``#``, ``%`` and spaces stay in the id, and dot
    segments are spelled ``%2E`` so that no HTTP client drops them. An id that no URL can
    carry (not a string, empty, or with a ``/``, which the server decodes before routing)
    names no run: :class:`NotFound` here, as the embedded store says.

    Example:
        >>> run_route("3f2a", "/log-batch")
        '/runs/3f2a/log-batch'
        >>> run_route("a?b#c")
        '/runs/a%3Fb%23c'
    """
    if not isinstance(run_id, str) or not run_id or "/" in run_id:
        raise NotFound(
            f"run {run_id!r} does not exist",
            hint="list runs with `loopline runs ls` and check the id",
        )
    segment = quote(run_id, safe="")
    if run_id in (".", ".."):  # dot segments: URL normalisation would remove them
        segment = segment.replace(".", "%2E")
    return f"/runs/{segment}{tail}"


def _error_from(response: httpx.Response) -> LooplineError:
    """The LooplineError a server's error answer stands for."""
    try:
        error = orjson.loads(response.content)["error"]
        code, message = error["code"], error["message"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        text = response.text.strip()[:300] or response.reason_phrase
        message = f"{response.request.method} {response.request.url.path} answered " + (
            f"{response.status_code}: {text}"
        )
        if response.status_code == 404:
            return NotFound(message, hint="is LOOPLINE_URI a Loopline server of this version?")
        if response.status_code in (400, 413, 422):
            return InvalidInput(message)
        return LooplineError(message)
    cls = _BY_CODE.get(code, LooplineError)
    hint = error.get("hint")
    if issubclass(cls, InvalidInput):
        return cls(message, field=error.get("field"), hint=hint)
    return cls(message, hint=hint)


class RemoteSink:
    """Sends numbered metric batches to ``POST /api/v1/runs/{id}/log-batch``.

    Example:
        >>> # MetricWriter(RemoteSink(transport))
    """

    max_batch_rows = REMOTE_BATCH_ROWS

    def __init__(self, transport: HttpTransport) -> None:
        self.transport = transport

    def write(self, rows: Sequence[MetricRow], writer: str, seq: int) -> None:
        """POST the batch; returns once the server has committed it (or had before).

        Example:
            >>> # sink.write(rows, writer_id, 7)
        """
        by_run: list[tuple[str, Sequence[MetricRow]]]
        runs = {row[0] for row in rows}
        if len(runs) == 1:  # the usual batch: one run, sent as it is
            by_run = [(runs.pop(), rows)]
        else:
            split: dict[str, list[MetricRow]] = {}
            for row in rows:
                split.setdefault(row[0], []).append(row)
            by_run = list(split.items())
        for run_id, run_rows in by_run:
            body = orjson.dumps(
                {"metrics": encode_metric_rows(run_rows), "writer": writer, "seq": seq}
            )
            self.transport.request(
                "POST", API + run_route(run_id, "/log-batch"), body=body, idempotent=True
            )

    def describe(self) -> str:
        """The server's URL.

        Example:
            >>> # sink.describe()  -> 'http://127.0.0.1:5000'
        """
        return self.transport.base_url

    def after_fork(self) -> None:
        """Nothing to do: the transport makes a new client in the child on first use.

        Example:
            >>> # sink.after_fork()
        """


def _json(model: Any) -> bytes:
    data: bytes = model.model_dump_json(exclude_unset=True).encode()
    return data


class RemoteBackend(TrackingBackend):
    """The tracking backend of a Loopline server, through ``/api/v1``.

    Example:
        >>> # RemoteBackend(load_settings(uri="http://127.0.0.1:5000")).get_run(run_id)
    """

    def __init__(self, settings: Settings) -> None:
        self.transport = HttpTransport.from_settings(settings)
        # Close the connections when the backend goes (with its context), not at GC of a
        # socket that would then warn about being left open.
        weakref.finalize(self, self.transport.close)

    def _get(self, route: str, **params: Any) -> httpx.Response:
        return self.transport.request("GET", f"{API}{route}", params=params, idempotent=True)

    def _post(self, route: str, body: bytes, *, idempotent: bool = True) -> httpx.Response:
        return self.transport.request("POST", f"{API}{route}", body=body, idempotent=idempotent)

    def create_run(
        self,
        *,
        experiment: str,
        name: str | None,
        tags: Mapping[str, Any],
        parent_run_id: str | None,
        user_id: str | None,
        files: Mapping[str, bytes],
    ) -> RunRecord:
        """See :meth:`TrackingBackend.create_run`: ``POST /runs``, then one PUT per file.

        Example:
            >>> # backend.create_run(experiment="churn", name=None, tags={}, parent_run_id=None,
            >>> #                    user_id="ada", files={})
        """
        request = CreateRunRequest(
            experiment=experiment,
            name=name,
            tags=check_tags(tags),  # a wrong key failed in pydantic, not as InvalidInput
            parent_run_id=parent_run_id,
            user_id=user_id,
        )
        answer = self._post("/runs", _json(request), idempotent=False)
        record = RunModel.model_validate_json(answer.content).to_record()
        for path, data in files.items():
            self.log_artifact_bytes(record.id, path, data)
        return record

    def get_run(self, run_id: str) -> RunRecord:
        """See :meth:`TrackingBackend.get_run`: ``GET /runs/{id}``.

        Example:
            >>> # backend.get_run(run_id).status
        """
        return RunModel.model_validate_json(self._get(run_route(run_id)).content).to_record()

    def finish_run(
        self, run_id: str, *, status: str, end_time: int, writer: MetricWriter | None
    ) -> None:
        """See :meth:`TrackingBackend.finish_run`: flush the writer, then ``PATCH /runs/{id}``.

        Example:
            >>> # backend.finish_run(run_id, status="FINISHED", end_time=now_ms(), writer=w)
        """
        # Checked here, as the embedded store checks them, before the writer is closed: a
        # bad status leaves the run open with its points queued, and raises InvalidInput.
        update = {"status": check_run_status(status), "end_time": check_int(end_time, "end_time")}
        route = API + run_route(run_id)
        if writer is not None:
            writer.close()
        body = _json(UpdateRunRequest.model_validate(update))
        self.transport.request("PATCH", route, body=body, idempotent=True)

    def log_batch(self, run_id: str, *, params: Mapping[str, Any], tags: Mapping[str, Any]) -> None:
        """See :meth:`TrackingBackend.log_batch`: ``POST /runs/{id}/log-batch``.

        Example:
            >>> # backend.log_batch(run_id, params={"lr": 0.1}, tags={})
        """
        # Checked as the embedded store checks them, so that a bad key (not a string, too
        # long, '..') is the same InvalidInput in both modes, not an encoding error here.
        body = orjson.dumps({"params": check_params(params), "tags": check_tags(tags)})
        self._post(run_route(run_id, "/log-batch"), body)

    def metric_sink(self) -> MetricSink:
        """See :meth:`TrackingBackend.metric_sink`: batches of up to 50,000 points per POST.

        Example:
            >>> # MetricWriter(backend.metric_sink())
        """
        return RemoteSink(self.transport)

    def metric_history(self, run_id: str, key: str) -> list[MetricPoint]:
        """See :meth:`TrackingBackend.metric_history`: ``GET /runs/{id}/metric-history``.

        Example:
            >>> # backend.metric_history(run_id, "loss")[-1].value
        """
        answer = self._get(run_route(run_id, "/metric-history"), key=key)
        return MetricHistoryModel.model_validate_json(answer.content).to_points()

    def search_runs(
        self,
        *,
        experiments: Sequence[str] | None,
        filter: str | None,
        order_by: Sequence[str] | None,
        max_results: int,
        page_token: str | None,
        view: ViewType,
    ) -> RunSearchResult:
        """See :meth:`TrackingBackend.search_runs`: ``POST /runs/search``.

        Example:
            >>> # backend.search_runs(experiments=["churn"], filter="metrics.auc > 0.8",
            >>> #                     order_by=None, max_results=10, page_token=None,
            >>> #                     view="active")
        """
        check_max_results(max_results)
        request = SearchRunsRequest(
            experiments=None if experiments is None else list(experiments),
            filter=filter,
            order_by=None if order_by is None else list(order_by),
            max_results=max_results,
            page_token=page_token,
            view=view,
        )
        answer = self._post("/runs/search", _json(request))
        return RunPageModel.model_validate_json(answer.content).to_result()

    def log_inputs(self, run_id: str, inputs: Sequence[RunInput]) -> None:
        """See :meth:`TrackingBackend.log_inputs`: ``POST /runs/{id}/inputs``.

        Example:
            >>> # backend.log_inputs(run_id, [RunInput("dataset", "churn", "3", digest)])
        """
        request = LogInputsRequest(inputs=[RunInputModel.from_entity(i) for i in inputs])
        self._post(run_route(run_id, "/inputs"), _json(request))

    def log_artifact_files(
        self, run_id: str, files: Sequence[tuple[Path, str]]
    ) -> list[ArtifactEntry]:
        """See :meth:`TrackingBackend.log_artifact_files`: one streamed PUT per file.

        Each PUT carries the file's digest, which the server checks against the bytes it
        received (422 on a mismatch); the digest it answers must equal the local one too,
        or :class:`IntegrityError`.

        Example:
            >>> # backend.log_artifact_files(run_id, [(Path("model.pkl"), "model/model.pkl")])
        """
        entries = []
        for file, rel in files:
            digest = hash_file(file)
            answer = self.transport.request(
                "PUT",
                API + run_route(run_id, "/artifacts/content"),
                params={"path": check_artifact_path(rel)},
                upload=file,
                headers={DIGEST_HEADER: digest},
                idempotent=True,
            )
            entries.append(_checked(ArtifactModel.model_validate_json(answer.content), digest))
        return entries

    def log_artifact_bytes(self, run_id: str, path: str, data: bytes) -> ArtifactEntry:
        """See :meth:`TrackingBackend.log_artifact_bytes`: one PUT, with the digest.

        Example:
            >>> # backend.log_artifact_bytes(run_id, "config.json", b"{}")
        """
        digest = hash_bytes(data)
        answer = self.transport.request(
            "PUT",
            API + run_route(run_id, "/artifacts/content"),
            params={"path": check_artifact_path(path)},
            body=data,
            headers={DIGEST_HEADER: digest},
            idempotent=True,
        )
        return _checked(ArtifactModel.model_validate_json(answer.content), digest)

    def list_artifacts(self, run_id: str, prefix: str | None = None) -> list[ArtifactEntry]:
        """See :meth:`TrackingBackend.list_artifacts`: ``GET /runs/{id}/artifacts``.

        Example:
            >>> # [a.path for a in backend.list_artifacts(run_id)]
        """
        params = {"prefix": prefix} if prefix else {}
        answer = self._get(run_route(run_id, "/artifacts"), **params)
        return [
            a.to_entity() for a in ArtifactListModel.model_validate_json(answer.content).artifacts
        ]

    def read_artifact(self, run_id: str, path: str) -> bytes:
        """See :meth:`TrackingBackend.read_artifact`; the bytes are checked against the digest.

        Example:
            >>> # backend.read_artifact(run_id, "config.json")
        """
        answer = self._get(run_route(run_id, "/artifacts/content"), path=check_artifact_path(path))
        _verify(answer.headers.get(DIGEST_HEADER), hash_bytes(answer.content), path)
        return answer.content

    def download_artifact(self, run_id: str, path: str, dest: Path) -> Path:
        """See :meth:`TrackingBackend.download_artifact`: streamed to a temporary file.

        Example:
            >>> # backend.download_artifact(run_id, "model.pkl", Path("/tmp/model.pkl"))
        """
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".loopline-{uuid.uuid4().hex}.part")  # fits any name length
        try:
            answer = self.transport.request(
                "GET",
                API + run_route(run_id, "/artifacts/content"),
                params={"path": check_artifact_path(path)},
                stream_to=tmp,
                idempotent=True,
            )
            _verify(answer.headers.get(DIGEST_HEADER), hash_file(tmp), path)
            os.replace(tmp, dest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return dest

    def close(self) -> None:
        """Close this process's connections.

        Example:
            >>> # backend.close()
        """
        self.transport.close()


def _checked(model: ArtifactModel, local_digest: str) -> ArtifactEntry:
    entry = model.to_entity()
    _verify(entry.digest, local_digest, entry.path)
    return entry


def _verify(expected: str | None, actual: str, path: str) -> None:
    if expected != actual:
        raise IntegrityError(
            f"artifact {path!r} changed in transit: the server has {expected}, "
            f"the bytes here hash to {actual}",
            hint="send or fetch it again",
        )
