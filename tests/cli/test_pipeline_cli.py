"""``loopline pipeline run/resume/ls/show`` in a real subprocess, on both backends."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from loopline.cli.main import app
from loopline.cli.pipeline_cmd import parse_params
from loopline.core.context import Context
from loopline.errors import InvalidInput
from tests.cli_run import run_loopline
from tests.training import pipeline_steps as ps

ROOT = Path(__file__).resolve().parents[2]


def _cli(ctx: Context, *args: str) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    return run_loopline(ctx, "pipeline", *args, env={"PYTHONPATH": path}, timeout=180)


def _json(done: subprocess.CompletedProcess[str]) -> Any:
    return orjson.loads(done.stdout)


def test_run_prints_the_summary_and_resume_reruns_the_failed_steps(
    ctx: Context, tmp_path: Path
) -> None:
    (tmp_path / "broken").touch()
    target = "tests.training.pipeline_steps:resumable"
    done = _cli(ctx, "run", target, "--param", f"workdir={tmp_path}", "--json")
    assert done.returncode == 1, done.stderr
    first = _json(done)
    assert set(first) == {"run_id", "status", "steps"}
    assert first["status"] == "failed"
    assert first["steps"] == {
        "load": {"status": "finished", "attempts": 1},
        "double": {"status": "finished", "attempts": 1},
        "gate": {"status": "failed", "attempts": 1},
        "after": {"status": "skipped", "attempts": 0},
    }
    (tmp_path / "broken").unlink()
    done = _cli(ctx, "resume", first["run_id"][:8], "--json")  # a prefix names the run
    assert done.returncode == 0, done.stderr
    second = _json(done)
    assert second["status"] == "finished"
    assert second["run_id"] != first["run_id"]
    assert second["steps"] == {
        "load": {"status": "cached", "attempts": 0},
        "double": {"status": "cached", "attempts": 0},
        "gate": {"status": "finished", "attempts": 1},
        "after": {"status": "finished", "attempts": 1},
    }
    assert ps.count(str(tmp_path), "load") == 1

    listed = _json(_cli(ctx, "ls", "--json"))
    assert [r["run_id"] for r in listed["runs"]] == [second["run_id"], first["run_id"]]
    assert listed["runs"][1]["steps"] == {"finished": 2, "failed": 1, "skipped": 1}
    shown = _json(_cli(ctx, "show", first["run_id"], "--json"))
    assert shown["steps"]["gate"]["status"] == "failed"
    assert "the gate is broken" in shown["steps"]["gate"]["error"]
    assert shown["steps"]["double"]["inputs"] == {"df": shown["steps"]["load"]["output"]["digest"]}
    human = _cli(ctx, "show", first["run_id"][:9])
    assert human.returncode == 0, human.stderr
    assert "the gate is broken" in human.stdout
    # In an 80-column terminal `ls` shows the ids' first 8 characters (it cut them to
    # '463b82906...', which named no run), and `pipeline show/resume` and `runs show` take
    # them; a wide one shows them whole.
    narrow = run_loopline(ctx, "pipeline", "ls", env={"COLUMNS": "80"})
    words = {w for line in narrow.stdout.splitlines() for w in line.split()}
    assert {first["run_id"][:8], second["run_id"][:8], "(first"} <= words, narrow.stdout
    assert first["run_id"] not in narrow.stdout, narrow.stdout
    wide = run_loopline(ctx, "pipeline", "ls", env={"COLUMNS": "200"})
    assert first["run_id"] in wide.stdout and second["run_id"] in wide.stdout, wide.stdout
    narrow = run_loopline(ctx, "pipeline", "show", first["run_id"], env={"COLUMNS": "80"})
    step_runs = [s["run_id"] for s in shown["steps"].values() if s["run_id"]]
    assert step_runs and all(r in narrow.stdout for r in step_runs), narrow.stdout


def test_run_with_params_on_the_process_executor(ctx: Context, tmp_path: Path) -> None:
    target = "tests.training.pipeline_steps:simple"
    done = _cli(
        ctx, "run", target, "-p", f"workdir={tmp_path}", "-p", "n=4", "-x", "process", "--json"
    )
    assert done.returncode == 0, done.stderr
    summary = _json(done)
    assert summary["status"] == "finished"
    assert set(summary["steps"]) == {"load", "double", "total"}
    human = _cli(ctx, "run", target, "-p", f"workdir={tmp_path}", "-p", "n=4")
    assert human.returncode == 0, human.stderr
    assert "cached" in human.stdout and "finished" in human.stdout


def test_a_step_past_its_timeout_fails_the_run_with_exit_1(ctx: Context, tmp_path: Path) -> None:
    target = "tests.training.pipeline_steps:hanging"
    done = _cli(ctx, "run", target, "-p", f"workdir={tmp_path}", "-x", "process")
    assert done.returncode == 1, done.stderr
    assert "hangs failed after 1 attempt(s): step 'hangs' timed out after 0.5 s" in done.stdout
    assert "loopline pipeline resume" in done.stdout
    refused = _cli(ctx, "run", target, "-p", f"workdir={tmp_path}")  # the local executor
    assert refused.returncode == 2, refused.stderr
    assert "cannot enforce" in refused.stderr and "--executor process" in refused.stderr


def test_a_run_whose_last_write_fails_exits_1_and_is_marked_failed(
    ctx: Context, tmp_path: Path
) -> None:
    # The run's last write failed outside the error handling: the run stayed 'running'.
    done = _cli(ctx, "run", "tests.cli.doomed_pipeline:doomed", "-p", f"workdir={tmp_path}")
    assert done.returncode == 1, done.stderr
    assert "disk I/O error (injected)" in done.stderr
    assert "loopline pipeline resume" in done.stderr and "Traceback" not in done.stderr
    (listed,) = _json(_cli(ctx, "ls", "--json"))["runs"]
    assert listed["status"] == "failed"
    shown = _json(_cli(ctx, "show", listed["run_id"], "--json"))
    assert shown["finished_at"] is not None
    assert any("disk I/O error" in (s["error"] or "") for s in shown["steps"].values())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "tests.training.pipeline_steps:simple", "--param", "n"], "not in k=v form"),
        (["run", "tests.training.pipeline_steps:simple", "-x", "gpu"], "unknown executor 'gpu'"),
        (["run", "tests.training.pipeline_steps"], "MODULE:PIPELINE"),
        (["run", "tests.training.pipeline_steps:load"], "not a pipeline"),
        (["run", "no_such_module:p"], "cannot be imported"),
        (["show", "0" * 32], "no pipeline run"),
    ],
    ids=["param-form", "executor", "no-colon", "not-pipeline", "no-module", "no-run"],
)
def test_bad_input_is_a_clear_error(embedded_ctx: Context, args: list[str], message: str) -> None:
    done = _cli(embedded_ctx, *args)
    assert done.returncode != 0
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_parse_params_uses_annotations_and_json() -> None:
    assert parse_params(["workdir=007", "n=5"], ps.simple) == {"workdir": "007", "n": 5}
    assert parse_params(["x=[1, 2]", "y=text", "z="]) == {"x": [1, 2], "y": "text", "z": ""}
    with pytest.raises(InvalidInput, match="'=5' is not in k=v form"):
        parse_params(["=5"])


@pytest.mark.parametrize(
    ("item", "said"),
    [
        ("n=abc", 'n="abc": the pipeline takes n as int'),
        ("n=1.5", "n=1.5: the pipeline takes n as int"),
        ("n=true", "n=true: the pipeline takes n as int"),
        ("seconds=fast", 'seconds="fast": the pipeline takes seconds as float'),
        ("seconds=false", "seconds=false: the pipeline takes seconds as float"),
    ],
)
def test_a_param_of_the_wrong_kind_is_refused_before_the_run(item: str, said: str) -> None:
    # n=abc used to start the run with the text "abc" and fail inside the first step.
    pipe = ps.parallel if item.startswith("seconds") else ps.simple
    with pytest.raises(InvalidInput, match=re.escape(said)) as info:
        parse_params([item], pipe)
    assert info.value.field == f"--param {item.partition('=')[0]}"
    assert parse_params(["seconds=2"], ps.parallel) == {"seconds": 2}  # an int is a float


@pytest.mark.parametrize("command", [[], ["run"], ["resume"], ["ls"], ["show"]])
def test_every_help_has_an_example(command: list[str]) -> None:
    result = CliRunner().invoke(app, ["pipeline", *command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("def f(:\n    pass\n", "line 1"),
        ("x = 1\nraise RuntimeError('no config at import')\n", "line 2: RuntimeError"),
    ],
    ids=["syntax-error", "import-time-error"],
)
def test_a_module_that_fails_to_import_is_exit_2_naming_file_and_line(
    embedded_ctx: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, words: str
) -> None:
    (tmp_path / "badsyn.py").write_text(source)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))  # _cli puts the repository before it
    done = _cli(embedded_ctx, "run", "badsyn:f")
    assert done.returncode == 2, done.stderr
    assert "badsyn:f cannot be imported" in done.stderr and "hint" in done.stderr
    assert "badsyn.py" in done.stderr and words in done.stderr
    assert "Traceback" not in done.stderr
