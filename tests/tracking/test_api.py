"""The tracking SDK (``ll.start_run`` and ``Run``) on both backends."""

from __future__ import annotations

import json
import math
import platform
import shlex
import socket
import subprocess
import sys
import threading
from pathlib import Path

import blake3
import orjson
import pytest
import yaml

import loopline as ll
from loopline.core.context import Context
from loopline.errors import InvalidInput, NotFound
from loopline.tracking import environment
from loopline.tracking.api import ENVIRONMENT_TAG, RunPage
from loopline.tracking.entities import MetricPoint
from loopline.tracking.environment import ENVIRONMENT_ARTIFACT, installed_packages
from loopline.tracking.run_handle import ERROR_TAG, Run
from tests.git_repo import git


def test_lifecycle_params_metrics_tags(ctx: Context) -> None:
    assert ll.active_run() is None
    with ll.start_run(experiment="churn", name="lgbm", tags={"team": "risk"}) as run:
        assert ll.active_run() is run
        assert run.status == "RUNNING" and run.end_time is None
        run.log_params({"model": "lgbm", "lr": 0.05})
        run.log_param("depth", 7)
        run.log_metric("loss", 0.5)
        run.log_metrics({"loss": 0.25, "acc": 0.9}, step=1)
        run.set_tag("stage", "candidate")
        run.set_tags({"owner": "ada"})
        assert run.metrics == {"acc": 0.9, "loss": 0.25}  # queued points count too
    assert ll.active_run() is None
    assert run.status == "FINISHED"
    assert run.end_time is not None and run.end_time >= run.start_time
    stored = ll.get_run(run.id)
    assert stored.experiment == "churn" and stored.name == "lgbm"
    assert stored.params == {"model": "lgbm", "lr": "0.05", "depth": "7"}
    assert stored.metrics == {"acc": 0.9, "loss": 0.25}
    assert {"team": "risk", "stage": "candidate", "owner": "ada"}.items() <= stored.tags.items()
    assert stored.user == ctx.settings.actor_name
    assert stored.tags["mlflow.user"] == ctx.settings.actor_name
    assert ll.metric_history(run.id, "loss") == [
        MetricPoint(0, ll.metric_history(run.id, "loss")[0].timestamp, 0.5),
        MetricPoint(1, ll.metric_history(run.id, "loss")[1].timestamp, 0.25),
    ]
    data = stored.to_dict()
    assert data["id"] == run.id and data["params"]["lr"] == "0.05"


def test_an_exception_ends_the_run_failed_with_the_traceback(ctx: Context) -> None:
    def train() -> None:
        raise ValueError("learning rate diverged")

    with pytest.raises(ValueError, match="diverged"), ll.start_run(experiment="churn") as run:
        run.log_metric("loss", 3.0)
        train()
    assert run.status == "FAILED"
    error = run.tags[ERROR_TAG] or ""
    assert error.startswith("ValueError: learning rate diverged")
    assert "Traceback" in error and "in train" in error
    assert run.tags[f"{ERROR_TAG}.type"] == "ValueError"
    assert run.metrics == {"loss": 3.0}  # what was logged before the error is kept


def test_ctrl_c_ends_the_run_killed(ctx: Context) -> None:
    with pytest.raises(KeyboardInterrupt), ll.start_run(experiment="churn") as run:
        raise KeyboardInterrupt
    assert run.status == "KILLED"


def test_nested_runs_record_their_parent(ctx: Context) -> None:
    with pytest.raises(InvalidInput, match="needs an active parent"):
        ll.start_run(nested=True)
    with ll.start_run(experiment="tune") as parent:
        with ll.start_run(name="trial-1", nested=True) as child:
            assert ll.active_run() is child
            with ll.start_run(name="inner") as grandchild:
                assert grandchild.parent_run_id == child.id
        assert ll.active_run() is parent
        seen: list[Run] = []

        def trial() -> None:  # a helper thread attributes its run to the main thread's run
            with ll.start_run(name="in-thread") as run:
                seen.append(run)

        worker = threading.Thread(target=trial)
        worker.start()
        worker.join()
    assert child.parent_run_id == parent.id
    assert child.experiment == "tune"  # inherited from the parent
    assert child.tags["mlflow.parentRunId"] == parent.id
    assert seen[0].parent_run_id == parent.id
    children = ll.search_runs("tune", filter=f"tags.`mlflow.parentRunId` = '{parent.id}'")
    assert {r.name for r in children} == {"trial-1", "in-thread"}
    assert parent.parent_run_id is None


def test_recorded_without_being_asked_outside_git(ctx: Context) -> None:
    with ll.start_run() as run:
        pass
    tags = run.tags
    assert run.experiment == "Default"
    assert tags["loopline.python"] == platform.python_version()
    assert tags["loopline.host"] == socket.gethostname()
    assert tags["loopline.command"] == shlex.join(sys.argv)
    assert tags["mlflow.source.name"] == sys.argv[0]
    assert "mlflow.source.git.commit" not in tags  # the test runs outside any repository
    env = {a.path: a for a in run.artifacts}[ENVIRONMENT_ARTIFACT]
    assert tags[ENVIRONMENT_TAG] == env.digest
    doc = orjson.loads(ctx.artifacts.get_bytes(env.digest))
    assert doc["python"] == platform.python_version()
    assert doc["packages"]["sqlalchemy"] == installed_packages()["sqlalchemy"]
    assert f"sqlalchemy=={installed_packages()['sqlalchemy']}" in doc["requirements"]


def test_git_commit_and_uncommitted_diff_are_recorded(
    ctx: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "train.py").write_text("print('v1')\n")
    git(repo, "add", "train.py")
    git(repo, "commit", "-q", "-m", "v1")
    head = git(repo, "rev-parse", "HEAD").strip()
    monkeypatch.chdir(repo)
    with ll.start_run() as clean:
        pass
    assert clean.tags["mlflow.source.git.commit"] == head
    assert clean.tags["mlflow.source.git.branch"] == "main"
    assert clean.tags["loopline.git.dirty"] == "false"
    (repo / "train.py").write_text("print('v2')\n")
    with ll.start_run() as dirty:
        pass
    diff = subprocess.run(
        ["git", "diff", "HEAD", "--binary", "--no-color", "--no-ext-diff"],
        cwd=repo,
        check=True,
        capture_output=True,
    ).stdout
    assert dirty.tags["loopline.git.dirty"] == "true"
    assert dirty.tags["loopline.git.diff_blake3"] == blake3.blake3(diff).hexdigest()
    assert dirty.tags["loopline.git.diff_blake3"] != clean.tags["loopline.git.diff_blake3"]


_TRAIN = """
import sys
import loopline as ll

ll.init(uri=sys.argv[1], artifacts=sys.argv[2])
with ll.start_run(experiment="git") as run:
    pass
print(run.id)
"""


def test_git_state_is_the_scripts_not_the_working_directorys(tmp_path: Path) -> None:
    repo, other = tmp_path / "repo", tmp_path / "other"
    for folder, text in ((repo, _TRAIN), (other, "# another project\n")):
        folder.mkdir()
        git(folder, "init", "-q", "-b", "main")
        (folder / "train.py").write_text(text)
        git(folder, "add", "train.py")
        git(folder, "commit", "-q", "-m", "v1")
    head = git(repo, "rev-parse", "HEAD").strip()
    uri = f"sqlite:///{tmp_path / 'meta.db'}"
    for cwd in (tmp_path, other):  # outside any repository, and inside another one
        done = subprocess.run(
            [sys.executable, str(repo / "train.py"), uri, str(tmp_path / "artifacts")],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        ctx = ll.init(uri=uri, artifacts=str(tmp_path / "artifacts"))
        tags = ll.get_run(done.stdout.split()[-1]).tags
        ctx.close()
        assert tags["mlflow.source.git.commit"] == head, cwd
        assert Path(tags["mlflow.source.git.repoRoot"]).resolve() == repo.resolve()
        assert tags["loopline.git.dirty"] == "false"
    # A tool's entry point (pytest, Loopline's CLI run as a module) is not the user's code:
    # then the working directory's repository is recorded, as before.
    assert environment.code_folder([str(repo / "train.py")]) == str(repo.resolve())
    assert environment.code_folder([sys.argv[0]]) is None
    assert (
        environment.code_folder([str(Path(environment.__file__).parents[1] / "cli" / "main.py")])
        is None
    )
    assert environment.code_folder(["-c"]) is None


def test_log_artifact_files_and_folders_content_addressed(ctx: Context, tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights.bin").write_bytes(b"\x00" * 1000)
    (tmp_path / "model" / "sub").mkdir()
    (tmp_path / "model" / "sub" / "vocab.txt").write_text("a\nb\n")
    (tmp_path / "report.md").write_text("# report\n")
    with ll.start_run(experiment="art") as run:
        run.log_artifact(tmp_path / "report.md")
        run.log_artifact(tmp_path / "model", artifact_path="outputs")
        run.log_artifact(str(tmp_path / "report.md"), artifact_path="docs/")
        with pytest.raises(InvalidInput, match="does not exist"):
            run.log_artifact(tmp_path / "missing.bin")
        with pytest.raises(InvalidInput, match=r"'\.\.' segment"):
            run.log_artifact(tmp_path / "report.md", artifact_path="../up")
    found = {a.path: a for a in run.artifacts}
    assert set(found) == {
        ENVIRONMENT_ARTIFACT,
        "report.md",
        "docs/report.md",
        "outputs/model/weights.bin",
        "outputs/model/sub/vocab.txt",
    }
    assert found["report.md"].digest == found["docs/report.md"].digest  # stored once
    assert ctx.artifacts.get_bytes(found["outputs/model/sub/vocab.txt"].digest) == b"a\nb\n"
    assert found["outputs/model/weights.bin"].size == 1000


def test_log_dict_as_json_or_yaml(ctx: Context) -> None:
    with ll.start_run(experiment="art") as run:
        a = run.log_dict({"features": ["age", "plan"], "k": 3}, "config/features.json")
        b = run.log_dict({"k": [1, 2]}, "config/k.yaml")
        with pytest.raises(InvalidInput, match="cannot store"):
            run.log_dict({"f": object()}, "bad.json")
    assert orjson.loads(ctx.artifacts.get_bytes(a.digest)) == {"features": ["age", "plan"], "k": 3}
    assert yaml.safe_load(ctx.artifacts.get_bytes(b.digest)) == {"k": [1, 2]}
    assert {"config/features.json", "config/k.yaml"} <= {x.path for x in run.artifacts}


def test_log_dict_writes_nan_and_infinity_in_json_as_mlflow_does(ctx: Context) -> None:
    import numpy as np

    # orjson writes null for them: the artifact said "no value" where there was a NaN.
    # MLflow's log_dict writes Python json's NaN / Infinity tokens, which json.loads reads.
    with ll.start_run(experiment="art") as run:
        nan = run.log_dict(
            {
                "report": {"auc": float("nan")},
                "scores": [0.5, float("inf")],
                "m": np.array([[1.0, 2.0], [3.0, -np.inf]]),
                "x": np.float32("nan"),
            },
            "report.json",
        )
        kept = run.log_dict({"auc": float("nan"), "loss": float("inf")}, "report.yaml")
        fine = run.log_dict({"m": np.array([1.0, 2.0]), "n": None, "s": "nan"}, "ok.json")
    text = ctx.artifacts.get_bytes(nan.digest).decode()
    assert "NaN" in text and "Infinity" in text and "null" not in text
    read = json.loads(text)
    assert math.isnan(read["report"]["auc"]) and read["scores"] == [0.5, math.inf]
    assert read["m"] == [[1.0, 2.0], [3.0, -math.inf]] and math.isnan(read["x"])
    loaded = yaml.safe_load(ctx.artifacts.get_bytes(kept.digest))
    assert math.isnan(loaded["auc"]) and loaded["loss"] == math.inf
    assert orjson.loads(ctx.artifacts.get_bytes(fine.digest)) == {
        "m": [1.0, 2.0],
        "n": None,
        "s": "nan",
    }
    assert "report.json" in {a.path for a in run.artifacts}


def test_log_figure_stores_a_png(ctx: Context) -> None:
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    fig = Figure()
    fig.add_subplot().plot([1, 2, 3], [3, 1, 2])
    with ll.start_run(experiment="art") as run:
        png = run.log_figure(fig, "plots/curve.png")
        svg = run.log_figure(fig, "plots/curve.svg")
        with pytest.raises(InvalidInput, match=r"\.png, \.svg or \.pdf"):
            run.log_figure(fig, "plots/curve.gif")
        with pytest.raises(InvalidInput, match="takes a matplotlib Figure, got dict"):
            run.log_figure({}, "plots/x.png")
    assert ctx.artifacts.get_bytes(png.digest)[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in ctx.artifacts.get_bytes(svg.digest)


def test_log_figure_without_matplotlib_says_how_to_install_it(tmp_path: Path) -> None:
    script = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "import loopline as ll\n"
        f"ll.init(uri='sqlite:///{tmp_path / 'm.db'}', artifacts='{tmp_path / 'art'}')\n"
        "from loopline.errors import InvalidInput\n"
        "with ll.start_run() as run:\n"
        "    try:\n"
        "        run.log_figure(object(), 'x.png')\n"
        "    except InvalidInput as exc:\n"
        "        print(exc.field, exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.startswith("figure log_figure needs matplotlib, which is not installed")
    assert "pip install matplotlib" in done.stdout


def test_log_input_records_dataset_lineage(ctx: Context) -> None:
    digest = "9f" * 32
    with ll.start_run(experiment="lineage") as run:
        active = ll.active_run()
        assert active is not None
        active.log_input("dataset", "churn", 3, digest, context="training")
        active.log_input("dataset", "churn", "3", digest, context="training")  # idempotent
    (item,) = run.inputs
    assert (item.kind, item.name, item.version, item.digest) == ("dataset", "churn", "3", digest)
    assert [r.id for r in ll.search_runs("lineage", filter="datasets.name = 'churn'")] == [run.id]


def test_get_run_and_history_name_what_is_missing(ctx: Context) -> None:
    with pytest.raises(NotFound, match="run 'abc123' does not exist"):
        ll.get_run("abc123")
    with pytest.raises(NotFound, match="'abc123'"):
        ll.metric_history("abc123", "loss")


def test_explicit_steps_and_timestamps(ctx: Context) -> None:
    with ll.start_run(experiment="steps") as run:
        run.log_metric("m", 1.0, step=10, timestamp=1_000)
        run.log_metric("m", 2.0, step=5, timestamp=2_000)
        run.log_metrics({"m": 3.0}, step=10, timestamp=500)
    history = ll.metric_history(run.id, "m")
    assert history == [
        MetricPoint(5, 2000, 2.0),
        MetricPoint(10, 500, 3.0),
        MetricPoint(10, 1000, 1.0),
    ]
    assert run.metrics == {"m": 1.0}  # greatest step, then greatest timestamp


def test_search_runs_returns_a_page_of_runs(ctx: Context) -> None:
    for i in range(3):
        with ll.start_run(experiment="paging", name=f"r{i}") as run:
            run.log_metric("score", i)
    page = ll.search_runs("paging", order_by=["metrics.score DESC"], max_results=2)
    assert isinstance(page, RunPage)
    assert [r.name for r in page] == ["r2", "r1"]
    assert page.next_page_token is not None
    rest = ll.search_runs(
        "paging", order_by=["metrics.score DESC"], page_token=page.next_page_token
    )
    assert [r.name for r in rest] == ["r0"] and rest.next_page_token is None


def test_searched_runs_are_made_as_init_makes_them_and_accept_writes(ctx: Context) -> None:
    with ll.start_run(experiment="read") as run:
        run.log_metric("loss", 0.5)
    (found,) = ll.search_runs("read")
    made = Run(found._record, ctx, backend=found._backend)
    # Run._read skips __init__ for a search page: it must set the same attributes
    assert vars(found).keys() == vars(made).keys()
    assert {k: type(v) for k, v in vars(found).items()} == {
        k: type(v) for k, v in vars(made).items()
    }
    assert found._lock is not made._lock and found.owner_pid == made.owner_pid
    found.set_tag("later", "yes")
    found.log_metric("loss", 0.25, step=1)
    found.flush()
    assert ll.get_run(run.id).tags["later"] == "yes"
    assert ll.get_run(run.id).metrics == {"loss": 0.25}
