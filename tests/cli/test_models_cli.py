"""``loopline models ls/show/lineage/alias`` in a real subprocess, on both backends."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import orjson
from sklearn.linear_model import LogisticRegression

import loopline as ll
from loopline.core import audit
from loopline.core.calendar import utc_text_ms
from loopline.core.context import Context
from tests.cli_run import run_cli, run_loopline
from tests.conftest import seeded


def _models(ctx: Context, *args: str) -> subprocess.CompletedProcess[str]:
    return run_loopline(ctx, "models", *args)


def _json(ctx: Context, *args: str) -> Any:
    done = _models(ctx, *args, "--json")
    assert done.returncode == 0, done.stderr
    return orjson.loads(done.stdout)


@seeded
def churn() -> list[str]:
    """Two versions of 'churn', each from a run that read a dataset; champion -> 1; in the
    test's ``ctx`` store."""
    import pandas as pd

    run_ids = []
    for seed in (1, 2):
        frame = pd.DataFrame({"x": [0.1, 0.4, 0.6, 0.9] * 5, "y": [0, 0, 1, 1] * 5})
        ll.datasets.register("churn-data", frame.assign(seed=seed))
        with ll.start_run(experiment="cli-models") as run:
            df = ll.datasets.get("churn-data").to_pandas()
            run.log_params({"seed": seed})
            run.log_metric("auc", 0.8 + seed / 100)
            run.log_model(
                LogisticRegression().fit(df[["x"]], df["y"]),
                "model",
                input_example=df[["x"]].head(3),
            )
        ll.registry.register(run, "churn")
        run_ids.append(run.id)
    ll.registry.set_alias("churn", "champion", 1, reason="first")
    return run_ids


def test_ls_lists_models_with_aliases(ctx: Context, churn: list[str]) -> None:
    listed = _json(ctx, "ls")
    [model] = listed["models"]
    assert model["name"] == "churn" and model["latest_version"] == 2
    assert model["aliases"] == {"champion": 1}
    text = _models(ctx, "ls")
    assert text.returncode == 0 and "churn" in text.stdout and "champion=v1" in text.stdout
    assert _json(ctx, "ls", "--name", "nothing%")["models"] == []


def test_ls_and_the_version_list_in_80_columns_split_no_id_version_or_date(
    ctx: Context, churn: list[str]
) -> None:
    # Rich folded every column to fit: a run id in `models show` broke over lines, and the
    # dates with it. The word columns stay whole now; aliases and descriptions may fold. A
    # run id too long for the width shows its first 8 characters, which `runs show` takes.
    narrow = {"COLUMNS": "80"}
    listing = run_loopline(ctx, "models", "ls", env=narrow)
    versions = run_loopline(ctx, "models", "show", "churn", env=narrow)
    for done in (listing, versions):
        assert done.returncode == 0, done.stderr
        assert max(map(len, done.stdout.splitlines())) <= 80, done.stdout
    shown = set(versions.stdout.split())
    short = {run_id[:8] for run_id in churn}
    expected = {*short, "version", "flavor", "run", "(first", "registered", "(UTC)", "sklearn"}
    assert expected <= shown, versions.stdout
    wide = run_loopline(ctx, "models", "show", "churn", env={"COLUMNS": "200"})
    assert set(churn) <= set(wide.stdout.split()), wide.stdout
    dates = [v["creation_time"] for v in _json(ctx, "show", "churn")["versions"]]
    assert all(set(utc_text_ms(ms).split()) <= shown for ms in dates), versions.stdout
    assert {"latest", "updated", "(UTC)", "2"} <= set(listing.stdout.split()), listing.stdout


def test_show_a_model_and_a_version(ctx: Context, churn: list[str]) -> None:
    model = _json(ctx, "show", "churn")
    assert [v["version"] for v in model["versions"]] == [2, 1]
    assert model["aliases"] == {"champion": 1}
    champion = _json(ctx, "show", "churn@champion")
    assert champion["version"] == 1 and champion["run_id"] == churn[0]
    assert champion["flavor"] == "sklearn"
    assert champion["signature"]["inputs"] == [{"name": "x", "type": "float", "nullable": False}]
    assert [d["version"] for d in champion["datasets"]] == ["1"]
    assert champion["params"] == {"seed": "1"}
    assert _json(ctx, "show", "churn@2")["run_id"] == churn[1]
    text = _models(ctx, "show", "churn@champion")
    assert text.returncode == 0 and "signature" in text.stdout and "churn-data" in text.stdout
    assert "churn: 2 versions" in _models(ctx, "show", "churn").stdout


def test_show_a_model_of_one_version_says_version(ctx: Context) -> None:
    """It said 'churn: 1 versions'."""
    import pandas as pd

    frame = pd.DataFrame({"x": [0.1, 0.4, 0.6, 0.9] * 5, "y": [0, 0, 1, 1] * 5})
    with ll.start_run(experiment="cli-models") as run:
        run.log_model(LogisticRegression().fit(frame[["x"]], frame["y"]), "model")
    ll.registry.register(run, "solo")
    text = _models(ctx, "show", "solo")
    assert text.returncode == 0, text.stderr
    assert "solo: 1 version\n" in text.stdout or "solo: 1 version " in text.stdout, text.stdout


def test_lineage_json_and_tree(ctx: Context, churn: list[str]) -> None:
    lineage = _json(ctx, "lineage", "churn@2")
    assert lineage["run"]["id"] == churn[1]
    assert [d["ref"] for d in lineage["datasets"]] == ["churn-data@2"]
    assert lineage["deployments"] == []
    text = _models(ctx, "lineage", "churn@champion")
    assert text.returncode == 0
    assert "churn-data@1" in text.stdout and churn[0] in text.stdout
    assert "deployments" in text.stdout
    bad = _models(ctx, "lineage", "churn")
    assert bad.returncode == 2 and "NAME@VERSION" in bad.stderr


def test_lineage_tree_says_how_the_run_read_each_dataset(ctx: Context) -> None:
    """A held-out set the run only scored on was listed like its training data."""
    import pandas as pd

    frame = pd.DataFrame({"x": [0.1, 0.4, 0.6, 0.9] * 5, "y": [0, 0, 1, 1] * 5})
    ll.datasets.register("flights-train", frame)
    held = ll.datasets.register("flights-holdout", frame.head(8))
    with ll.start_run(experiment="cli-models") as run:
        df = ll.datasets.get("flights-train").to_pandas()  # no context given
        run.log_input("dataset", held.name, str(held.version), held.hash, context="holdout")
        run.log_model(LogisticRegression().fit(df[["x"]], df["y"]), "model")
    ll.registry.register(run, "late")
    text = _models(ctx, "lineage", "late@1")
    assert text.returncode == 0, text.stderr
    assert "flights-holdout@1" in text.stdout and "8 rows (holdout)" in text.stdout
    assert "20 rows\n" in text.stdout  # the training read: no context, nothing added


def test_lineage_shows_the_deployments_of_the_version(ctx: Context, churn: list[str]) -> None:
    ll.deploy("churn", 1, reason="first [release]")
    ll.deploy("churn", 2, strategy="canary", steps=[50, 100])
    lineage = _json(ctx, "lineage", "churn@1")
    assert [e["action"] for e in lineage["deployments"]] == ["deploy.direct", "deploy.canary"]
    text = _models(ctx, "lineage", "churn@1")
    assert text.returncode == 0, text.stderr
    assert "churn rev 1 deploy.direct (stable v1)" in text.stdout
    assert ": first [release]" in text.stdout  # the reason as written, not read as markup
    assert "rev 2 deploy.canary (stable v1, candidate v2)" in text.stdout
    assert "none" not in text.stdout.split("deployments", 1)[1]


def test_alias_moves_are_audited(ctx: Context, churn: list[str]) -> None:
    moved = _json(ctx, "alias", "churn", "champion", "2", "--reason", "AUC 0.82 beats 0.81")
    assert moved == {
        "name": "churn",
        "alias": "champion",
        "version": 2,
        "previous": 1,
        "reason": "AUC 0.82 beats 0.81",
    }
    assert ll.registry.get("churn", "champion").version == 2
    last = audit.events(ctx.engine, object_type="registered_model", object_id="churn")[-1]
    assert (last.action, last.before, last.after, last.reason) == (
        "alias.set",
        {"champion": 1},
        {"champion": 2},
        "AUC 0.82 beats 0.81",
    )
    text = _models(ctx, "alias", "churn", "challenger", "1")
    assert text.returncode == 0 and "churn@challenger -> version 1" in text.stdout


def test_unknown_names_exit_4_with_a_hint(ctx: Context, churn: list[str]) -> None:
    ghost = _models(ctx, "show", "ghost")
    assert ghost.returncode == 4 and "loopline models ls" in ghost.stderr
    assert "Traceback" not in ghost.stderr
    alias = _models(ctx, "show", "churn@prod")
    assert alias.returncode == 4 and "loopline models show churn" in alias.stderr
    version = _models(ctx, "alias", "churn", "champion", "7")
    assert version.returncode == 4 and "no version 7" in version.stderr


def test_every_models_command_has_an_example(tmp_path: Path) -> None:
    for command in ("ls", "show", "lineage", "alias", "rename"):
        done = run_cli(["models", command, "--help"], env=os.environ, cwd=tmp_path, timeout=60)
        assert done.returncode == 0 and "Example" in done.stdout


def _deployments(ctx: Context, *args: str) -> subprocess.CompletedProcess[str]:
    return run_loopline(ctx, "deployments", *args)


def test_square_brackets_in_descriptions_params_and_reasons_print_verbatim(
    ctx: Context, churn: list[str]
) -> None:
    """Rich reads '[...]' as markup: '[/x]' crashed a table and '[red]' vanished."""
    from loopline.training import registry_models

    registry_models.update_registered_model(ctx, "churn", "v2 [/x] beats [red]v1")
    ll.deploy("churn", 1, reason="first [/release]")
    listed = _models(ctx, "ls")
    assert listed.returncode == 0, listed.stderr
    assert "v2 [/x] beats [red]v1" in listed.stdout
    shown = _deployments(ctx, "show", "churn")
    assert shown.returncode == 0, shown.stderr
    assert "first [/release]" in shown.stdout


def test_show_prints_the_categories_of_a_category_column(embedded_ctx: Context) -> None:
    import lightgbm as lgb
    import pandas as pd

    X = pd.DataFrame({"plan": pd.Categorical(["free", "pro", "team"] * 10), "n": range(30)})
    model = lgb.LGBMClassifier(n_estimators=2, min_child_samples=2, verbose=-1)
    with ll.start_run(experiment="cli-models") as run:
        run.log_model(model.fit(X, [0, 1, 1] * 10), "model", input_example=X.head(3))
    ll.registry.register(run, "plans")
    text = _models(embedded_ctx, "show", "plans@1")
    assert text.returncode == 0, text.stderr
    assert "category: free, pro, team" in text.stdout, text.stdout


def test_lineage_prints_run_names_params_and_metrics_verbatim(embedded_ctx: Context) -> None:
    """The lineage tree took a run name, experiment, param or metric key for Rich markup:
    '[/x]' crashed it with MarkupError and '[red]' vanished."""
    import pandas as pd

    frame = pd.DataFrame({"x": [0.1, 0.4, 0.6, 0.9] * 5, "y": [0, 0, 1, 1] * 5})
    with ll.start_run(experiment="odd [/exp]", name="xgb[/x]") as run:
        run.log_param("[red]p", "[red]lgbm")
        run.log_metric("auc[/]", 0.9)
        run.log_model(LogisticRegression().fit(frame[["x"]], frame.y), "model")
    ll.registry.register(run, "odd")
    tree = _models(embedded_ctx, "lineage", "odd@1")
    assert tree.returncode == 0, tree.stderr
    for text in ("xgb[/x]", "odd [/exp]", "[red]p=[red]lgbm", "auc[/]=0.9"):
        assert text in tree.stdout, tree.stdout


def test_rename_moves_the_model_and_a_taken_name_exits_5(ctx: Context, churn: list[str]) -> None:
    renamed = _json(ctx, "rename", "churn", "churn-classifier")
    assert renamed == {"name": "churn-classifier", "previous": "churn", "latest_version": 2}
    assert ll.registry.get("churn-classifier", "champion").version == 1
    assert [m.name for m in ll.registry.list_models()] == ["churn-classifier"]
    ll.registry.rename("churn-classifier", "churn")  # the SDK: and back
    ll.registry.register(churn[0], "other")
    taken = _models(ctx, "rename", "churn", "other")
    assert taken.returncode == 5 and "'other' already exists" in taken.stderr
    text = _models(ctx, "rename", "churn", "churn-v2")
    assert text.returncode == 0 and "churn -> churn-v2" in text.stdout
