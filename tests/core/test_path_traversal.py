"""No name a user sends can reach outside the store: artifact paths, dataset, model,
feature view, deployment and experiment names, through the SDK and over HTTP.

Every case is a way a path escapes its folder (``../``, ``..\\``, absolute, percent-encoded
once and twice, full-width dots, NUL, overlong); each must be a clear ``InvalidInput`` (a
4xx over HTTP) naming the field, and nothing may be written.
"""

from __future__ import annotations

import os
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import loopline as ll
from loopline.core import artifact_paths
from loopline.core.artifacts import hash_bytes
from loopline.core.context import Context
from loopline.errors import InvalidInput
from loopline.tracking import lineage
from tests.conftest import s3_options
from tests.server.conftest import start_server, stop_server

#: (id, text): every way a path or name has been seen to climb out of its folder.
ESCAPES = [
    ("dotdot", "../outside.txt"),
    ("dotdot-nested", "a/../../outside.txt"),
    ("backslash", "..\\outside.txt"),
    ("absolute", "/tmp/outside.txt"),
    ("windows-absolute", "C:\\outside.txt"),
    ("url-encoded", "%2e%2e%2foutside.txt"),
    ("double-encoded", "%252e%252e%252foutside.txt"),
    ("fullwidth", "\uff0e\uff0e\uff0foutside.txt"),
    ("nul", "a\x00b.txt"),
    ("newline", "ok.txt\n"),
    ("overlong", "a/" * 600 + "x.txt"),
]
ESCAPE_IDS = [case_id for case_id, _ in ESCAPES]
BAD = [text for _, text in ESCAPES]


def _files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


def _logged_by_user(ctx: Context, run_id: str) -> list[str]:
    """The run's artifact paths, without the ones Loopline logs itself (loopline/...)."""
    entries = lineage.list_artifacts(ctx.engine, run_id)
    return [e.path for e in entries if not e.path.startswith("loopline/")]


@pytest.fixture
def store_ctx(migrated_sqlite_uri: str, artifacts_url: str, tmp_path: Path) -> Iterator[Context]:
    """A context on each artifact store (a local folder and S3)."""
    context = ll.init(uri=migrated_sqlite_uri, artifacts=artifacts_url)
    yield context
    context.close()


@pytest.mark.parametrize("bad", BAD, ids=ESCAPE_IDS)
def test_clean_path_refuses_every_escape(bad: str) -> None:
    with pytest.raises(InvalidInput) as info:
        artifact_paths.clean_path(bad, field="artifact_path")
    assert info.value.field == "artifact_path"


@pytest.mark.parametrize(
    "good", ["model/MLmodel", "100%.txt", "a%2fb.txt", "C:notes.txt", "v1.2/x..y.bin"]
)
def test_ordinary_paths_stay_allowed(good: str) -> None:
    assert artifact_paths.unsafe_reason(good) is None


def test_more_than_three_layers_of_encoding_are_refused() -> None:
    reason = artifact_paths.unsafe_reason("%2525252e%2525252e%2525252f")
    assert reason is not None and "percent-encoded" in reason


@pytest.mark.parametrize("bad", BAD, ids=ESCAPE_IDS)
def test_log_artifact_refuses_escapes_on_each_store(
    store_ctx: Context, tmp_path: Path, bad: str
) -> None:
    source = tmp_path / "src" / "w.bin"
    source.parent.mkdir()
    source.write_bytes(b"weights")
    before = _files_under(tmp_path)
    with ll.start_run(experiment="safe") as run:
        with pytest.raises(InvalidInput) as info:
            run.log_artifact(source, artifact_path=bad)
        assert info.value.field == "artifact_path"
        with pytest.raises(InvalidInput) as info:
            run.log_dict({"a": 1}, bad)
        assert info.value.field == "artifact_path"
    assert _logged_by_user(store_ctx, run.id) == []
    # The bytes were never stored, and nothing appeared outside the store and the db.
    assert not store_ctx.artifacts.exists(hash_bytes(b"weights"))
    new = _files_under(tmp_path) - before
    assert all(p.is_relative_to(tmp_path / "artifacts") or "meta.db" in p.name for p in new)
    assert not list(tmp_path.parent.rglob("outside.txt"))


@pytest.mark.parametrize("bad", BAD, ids=ESCAPE_IDS)
def test_named_paths_refuse_escapes_on_each_store(store_ctx: Context, bad: str) -> None:
    with pytest.raises(InvalidInput) as info:
        artifact_paths.put_bytes(store_ctx, bad, b"x")
    assert info.value.field == "path"
    assert artifact_paths.list_dir(store_ctx, "") == []


def test_a_symlink_out_of_a_logged_folder_is_refused(embedded_ctx: Context, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("private")
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "w.bin").write_bytes(b"weights")
    (folder / "leak.txt").symlink_to(secret)
    with (
        ll.start_run(experiment="safe") as run,
        pytest.raises(InvalidInput, match="outside the logged folder") as info,
    ):
        run.log_artifact(folder)
    assert info.value.field == "path"
    assert _logged_by_user(embedded_ctx, run.id) == []


def test_a_symlink_inside_a_logged_folder_is_kept(embedded_ctx: Context, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "w.bin").write_bytes(b"weights")
    (folder / "alias.bin").symlink_to(folder / "w.bin")
    with ll.start_run(experiment="safe") as run:
        entries = run.log_artifact(folder)
    assert sorted(e.path for e in entries) == ["model/alias.bin", "model/w.bin"]


# -- names -------------------------------------------------------------------------------

NAME_ESCAPES = [*ESCAPES[:-1], ("overlong", "n" * 300), ("slash", "a/b")]
NAME_IDS = [case_id for case_id, _ in NAME_ESCAPES]
BAD_NAMES = [text for _, text in NAME_ESCAPES]


@pytest.mark.parametrize("bad", BAD_NAMES, ids=NAME_IDS)
def test_dataset_names_refuse_escapes(embedded_ctx: Context, bad: str) -> None:
    with pytest.raises(InvalidInput) as info:
        ll.datasets.register(bad, pd.DataFrame({"x": [1]}))
    assert info.value.field == "name"


@pytest.fixture
def logged_model(embedded_ctx: Context) -> object:
    model = LogisticRegression().fit(pd.DataFrame({"x": [0.0, 1.0]}), [0, 1])
    with ll.start_run(experiment="safe") as run:
        return run.log_model(model, "model", input_example=pd.DataFrame({"x": [0.5]}))


@pytest.mark.parametrize("bad", BAD_NAMES, ids=NAME_IDS)
def test_model_names_refuse_escapes(logged_model: object, bad: str) -> None:
    with pytest.raises(InvalidInput) as info:
        ll.registry.register(logged_model, bad)
    assert info.value.field == "name"


@pytest.mark.parametrize("bad", BAD_NAMES, ids=NAME_IDS)
def test_deployment_names_refuse_escapes(embedded_ctx: Context, bad: str) -> None:
    with pytest.raises(InvalidInput) as info:
        ll.deploy(bad, 1)
    assert info.value.field == "name"


@pytest.mark.parametrize("bad", BAD_NAMES, ids=NAME_IDS)
def test_feature_view_names_refuse_escapes(bad: str) -> None:
    df = pd.DataFrame({"user": [1], "ts": [pd.Timestamp("2024-01-01")], "x": [0.5]})
    with pytest.raises(InvalidInput) as info:
        ll.features.FeatureView(name=bad, entity="user", timestamp="ts", features=["x"], source=df)
    assert info.value.field == "name"


@pytest.mark.parametrize(
    "bad", ["a\x00b", "line\nbreak", "n" * 300], ids=["nul", "newline", "long"]
)
def test_experiment_names_refuse_control_characters_and_length(
    embedded_ctx: Context, bad: str
) -> None:
    with pytest.raises(InvalidInput) as info, ll.start_run(experiment=bad):
        pass
    assert info.value.field == "experiment"


def test_an_experiment_name_never_becomes_a_path(embedded_ctx: Context, tmp_path: Path) -> None:
    # MLflow allows '/' and '..' in experiment names; artifacts live under the numeric id.
    before = _files_under(tmp_path)
    with ll.start_run(experiment="../../outside") as run:
        run.log_dict({"a": 1}, "cfg.json")
    assert not (tmp_path.parent / "outside").exists()
    new = _files_under(tmp_path) - before
    assert all(p.is_relative_to(tmp_path / "artifacts") or "meta.db" in p.name for p in new)


# -- over HTTP ---------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["local", "s3"])
def client(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[httpx.Client]:
    """A real `loopline server` on SQLite, once with a local artifact folder, once on S3."""
    folder = tmp_path_factory.mktemp("server")
    env: dict[str, str] = {}
    artifacts = str(folder / "artifacts")
    if request.param == "s3":
        opts = s3_options()
        artifacts = f"s3://{os.environ['LOOPLINE_TEST_S3_BUCKET']}/t-{uuid.uuid4().hex[:16]}"
        env = {
            "LOOPLINE_S3_ENDPOINT_URL": opts["endpoint_url"],
            "LOOPLINE_S3_ACCESS_KEY_ID": opts["key"],
            "LOOPLINE_S3_SECRET_ACCESS_KEY": opts["secret"],
        }
    proc, url = start_server(f"sqlite:///{folder / 'meta.db'}", artifacts, env)
    try:
        with httpx.Client(base_url=url, timeout=30) as c:
            yield c
    finally:
        stop_server(proc)


@pytest.mark.parametrize("bad", BAD, ids=ESCAPE_IDS)
def test_api_v1_artifact_routes_refuse_escapes(client: httpx.Client, bad: str) -> None:
    run = client.post("/api/v1/runs", json={"experiment": "safe"}).json()
    url = f"/api/v1/runs/{run['id']}/artifacts/content"
    for answer in (
        client.put(url, params={"path": bad}, content=b"x"),
        client.get(url, params={"path": bad}),
    ):
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["field"] == "artifact_path"
    assert client.get(f"/api/v1/runs/{run['id']}/artifacts").json()["artifacts"] == []


# Starlette's `{path:path}` stops before a trailing newline, so "ok.txt\n" in the URL path
# names "ok.txt": no escape; the query-string form is still checked below.
URL_PATH_ESCAPES = [(i, t) for i, t in ESCAPES if i != "newline"]


@pytest.mark.parametrize(
    "bad", [t for _, t in URL_PATH_ESCAPES], ids=[i for i, _ in URL_PATH_ESCAPES]
)
def test_mlflow_artifact_proxy_refuses_escapes(client: httpx.Client, bad: str) -> None:
    # Every character encoded, so that no client normalises a '..' away before sending.
    url = "/api/2.0/mlflow-artifacts/artifacts/" + urllib.parse.quote(bad, safe="")
    for answer in (
        client.put(url, content=b"x"),
        client.get(url),
        client.delete(url),
        client.get("/api/2.0/mlflow-artifacts/artifacts", params={"path": bad}),
    ):
        assert answer.status_code in (400, 422), answer.text
        assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        assert "artifact path" in answer.json()["message"]
    listed = client.get("/api/2.0/mlflow-artifacts/artifacts", params={"path": "ok.txt\n"})
    assert listed.status_code in (400, 422)
