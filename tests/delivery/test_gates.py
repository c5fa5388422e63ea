"""Gates on real stores: data gate, value and change bounds, bootstrap, storage, CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from typer.testing import CliRunner

import loopline as ll
from loopline.cli.main import app
from loopline.core import audit
from loopline.core.context import Context
from loopline.delivery.gates import GateVerdict, latest_verdict, verdicts
from loopline.errors import InvalidInput, NotFound
from loopline.training import registry_versions
from tests.conftest import seeded
from tests.serving.helpers import FEATURES, good_model, register, toy_data, weak_model


@seeded
def models() -> dict[str, int]:
    """train@1 and holdout@1; versions: good (read train@1), weak, good again; in the test's
    ``ctx`` store."""
    train = toy_data(240, seed=0)
    ll.datasets.register("train", train)
    ll.datasets.register("holdout", toy_data(150, seed=1))
    return {
        "good": register(good_model(train), "churn", train, train_ref="train@1"),
        "weak": register(weak_model(train), "churn", train, train_ref="train@1"),
        "twin": register(good_model(train), "churn", train, train_ref="train@1"),
    }


def _checks(v: GateVerdict) -> dict[str, bool]:
    return {c.check: c.passed for c in v.checks}


def test_the_first_model_is_judged_by_value_bounds_alone(
    ctx: Context, models: dict[str, int]
) -> None:
    v = ll.gates.evaluate(
        "churn",
        models["good"],
        "holdout@1",
        {
            "label": "label",
            "metrics": {
                "accuracy": {"lower": 0.8},
                "auc": {"lower": 0.9, "change": {"absolute": 0}},
                "logloss": {"upper": 0.5},
            },
        },
    )
    assert v.blessed and v.champion_version is None and v.metrics["champion"] is None
    assert _checks(v) == {
        "contract": True,
        "accuracy.lower": True,
        "auc.lower": True,
        "auc.change": True,
        "logloss.upper": True,
    }
    assert any("no champion yet" in r for r in v.reasons)
    assert "the training data contract of train@1" in v.reasons[0]
    assert set(v.metrics["challenger"]) == {
        "accuracy",
        "precision",
        "recall",
        "f1",
        "auc",
        "logloss",
    }


def test_every_bound_kind_against_the_champion(ctx: Context, models: dict[str, int]) -> None:
    ll.registry.set_alias("churn", "champion", models["good"])
    thresholds: dict[str, Any] = {
        "label": "label",
        "metrics": {
            "accuracy": {"lower": 0.7, "upper": 0.8},  # value: lower ok, upper not
            "auc": {"change": {"absolute": -0.01}},  # may fall by 0.01
            "logloss": {"change": {"relative": 0.05}},  # may grow by 5 %
            "f1": {"change": {"absolute": 0.05}},  # must gain 0.05
            "recall": {"change": {"direction": "lower", "absolute": 0.0}},  # lower is better
        },
    }
    twin = ll.gates.evaluate("churn", models["twin"], "holdout@1", thresholds)
    assert twin.champion_version == models["good"]
    assert _checks(twin) == {
        "contract": True,
        "accuracy.lower": True,
        "accuracy.upper": False,
        "auc.change.absolute": True,
        "logloss.change.relative": True,
        "f1.change.absolute": False,
        "recall.change.absolute": True,
    }
    assert not twin.blessed
    assert any("accuracy" in r and "upper bound 0.8" in r for r in twin.reasons)
    assert twin.metrics["change"]["auc"]["absolute"] == pytest.approx(0.0, abs=1e-12)

    weak = ll.gates.evaluate(
        "churn",
        models["weak"],
        "holdout@1",
        {"label": "label", "metrics": {"auc": {"lower": 0.5, "change": {"absolute": -0.01}}}},
    )
    assert not weak.blessed and _checks(weak)["auc.change.absolute"] is False
    assert weak.metrics["champion"]["auc"] > weak.metrics["challenger"]["auc"]
    assert "vs champion" in weak.reasons[0] and "higher is better" in weak.reasons[0]


def test_a_missing_metric_fails(ctx: Context, models: dict[str, int]) -> None:
    from sklearn.svm import LinearSVC

    train = toy_data(240, seed=0)
    svc = register(LinearSVC().fit(train[FEATURES], train["label"]), "churn", train)
    v = ll.gates.evaluate(
        "churn",
        svc,
        "holdout@1",
        {
            "label": "label",
            "data": {"validate": False},
            "metrics": {"accuracy": {"lower": 0.5}, "auc": {"lower": 0.5}},
        },
    )
    assert not v.blessed and _checks(v) == {"accuracy.lower": True, "auc": False}
    assert v.reasons == ["auc: missing: the model gives no class probabilities (predict_proba)"]


def test_bootstrap_intervals_are_seeded_and_judge_the_worse_end(
    ctx: Context, models: dict[str, int]
) -> None:
    ll.registry.set_alias("churn", "champion", models["good"])
    spec = {
        "label": "label",
        "data": {"validate": False},
        "metrics": {"auc": {"change": {"absolute": -0.05}}},
        "bootstrap": {"samples": 200, "confidence": 0.9, "seed": 3},
    }
    first = ll.gates.evaluate("churn", models["weak"], "holdout@1", spec)
    again = ll.gates.evaluate("churn", models["weak"], "holdout@1", spec)
    interval = first.metrics["intervals"]["auc"]["absolute"]
    assert interval == again.metrics["intervals"]["auc"]["absolute"]
    assert interval["low"] < first.metrics["change"]["auc"]["absolute"] < interval["high"]
    assert interval["samples"] == 200 and not first.blessed
    assert "90% interval" in first.reasons[0]
    twin = ll.gates.evaluate("churn", models["twin"], "holdout@1", spec)
    assert twin.blessed and twin.metrics["intervals"]["auc"]["absolute"]["low"] == 0.0


def test_the_bootstrap_does_not_judge_a_change_on_a_few_rows(
    ctx: Context, models: dict[str, int]
) -> None:
    """On 5 rows where two models agree every resample gives a change of 0, so the weak
    model, which differs from the good one elsewhere, passed "with 95 % confidence"."""
    ll.registry.set_alias("churn", "champion", models["good"])
    good, weak = (ll.registry.load(f"models:/churn/{models[k]}") for k in ("good", "weak"))
    frame = toy_data(300, seed=4)
    agree = frame[good.predict(frame[FEATURES]) == weak.predict(frame[FEATURES])]
    assert len(agree) < len(frame)  # the weak model is worse elsewhere
    ll.datasets.register("tiny", agree.head(5))
    spec: dict[str, Any] = {
        "label": "label",
        "data": {"validate": False},
        "metrics": {"accuracy": {"lower": 0.0, "change": {"absolute": -0.01}}},
        "bootstrap": {"samples": 200, "seed": 1},
    }
    v = ll.gates.evaluate("churn", models["weak"], "tiny@1", spec)
    assert not v.blessed
    assert _checks(v) == {"accuracy.lower": True, "accuracy.change.absolute": False}
    assert "5 held-out rows are too few for the bootstrap" in v.reasons[0]
    assert "bootstrap.min_rows: 30" in v.reasons[0]
    spec["bootstrap"]["min_rows"] = 5  # the team's own call, written in the thresholds
    assert ll.gates.evaluate("churn", models["weak"], "tiny@1", spec).blessed


def test_the_data_gate_checks_the_holdout_and_a_serving_sample(
    ctx: Context, models: dict[str, int], tmp_path: Path
) -> None:
    bad = toy_data(100, seed=2)
    bad["bucket"] = bad["bucket"].astype("float64")
    bad.loc[3, "b"] = None
    ll.datasets.register("holdout-bad", bad)
    spec: dict[str, Any] = {"label": "label", "metrics": {"accuracy": {"lower": 0.0}}}
    v = ll.gates.evaluate("churn", models["good"], "holdout-bad@1", spec)
    assert not v.blessed and _checks(v)["contract"] is False
    assert "bucket: dtype: expected int64" in v.reasons[0]
    assert "b: nullable" in v.reasons[0]

    live = toy_data(50, seed=3).drop(columns=["label"])
    live.loc[0, "a"] = None
    ll.datasets.register("live", live)
    contract = tmp_path / "churn.contract.yaml"
    ll.contracts.infer(toy_data(150, seed=1), name="churn").to_yaml(contract)
    spec["data"] = {"contract": str(contract), "serving_sample": "live@1"}
    v = ll.gates.evaluate("churn", models["good"], "holdout@1", spec)
    assert _checks(v) == {"contract": True, "serving_sample": False, "accuracy.lower": True}
    assert f"contract {contract}" in v.reasons[0] and "a: nullable" in v.reasons[0]

    # A serving sample that does not exist: the error says which of the gate's datasets
    # it is (it read like the held-out set was missing).
    spec["data"]["serving_sample"] = "live@7"
    with pytest.raises(NotFound, match=r"^data\.serving_sample: .*'live' has no version 7"):
        ll.gates.evaluate("churn", models["good"], "holdout@1", spec)


def test_regression_metrics(ctx: Context) -> None:
    from sklearn.linear_model import LinearRegression, Ridge

    data = toy_data(200).assign(y=lambda d: 3 * d.a - d.b + 0.1 * d.bucket)
    ll.datasets.register("prices", data.drop(columns=["label"]))
    v1 = register(LinearRegression().fit(data[FEATURES], data.y), "price", data)
    ll.registry.set_alias("price", "champion", v1)
    v2 = register(Ridge(alpha=50.0).fit(data[FEATURES], data.y), "price", data)
    v = ll.gates.evaluate(
        "price",
        v2,
        "prices@1",
        {
            "label": "y",
            "data": {"validate": False},
            "metrics": {
                "rmse": {"upper": 1.0},
                "r2": {"lower": 0.9},
                "mae": {"change": {"relative": 0.10}},
            },
        },
    )
    assert v.metrics["task"] == "regression"
    assert set(v.metrics["challenger"]) == {"rmse", "mae", "r2"}
    assert _checks(v)["rmse.upper"] and _checks(v)["r2.lower"]
    assert _checks(v)["mae.change.relative"] is False  # Ridge(50) is > 10 % worse
    assert v.metrics["champion"]["rmse"] < 1e-6


def test_the_verdict_is_stored_tagged_audited_and_the_cli_exits_1_when_blocked(
    ctx: Context, models: dict[str, int], tmp_path: Path
) -> None:
    ll.registry.set_alias("churn", "champion", models["good"])
    gate = tmp_path / "gate.yaml"
    gate.write_text("label: label\nmetrics:\n  auc: {change: {absolute: -0.01}}\n")
    result = CliRunner().invoke(
        app,
        [
            "gate",
            "churn",
            str(models["weak"]),
            "--dataset",
            "holdout@1",
            "--thresholds",
            str(gate),
            "--json",
        ],
    )
    assert result.exit_code == 1, result.output
    shown = orjson.loads(result.stdout)
    assert shown["blessed"] is False and shown["champion_version"] == models["good"]
    stored = latest_verdict("churn", models["weak"])
    assert stored is not None and stored.id == shown["id"] and stored.reasons == shown["reasons"]
    assert stored.checks == [c for c in stored.checks if c.gate in ("data", "performance")]
    tags = registry_versions.get_model_version(ctx, "churn", models["weak"]).tags
    assert tags["loopline.gate"] == "blocked"
    events = audit.events(
        ctx.engine, object_type="model_version", object_id=f"churn/{models['weak']}"
    )
    assert events[-1].action == "gate.evaluate" and events[-1].after["blessed"] is False
    assert events[-1].reason == "; ".join(stored.reasons)

    ok = CliRunner().invoke(
        app, ["gate", "churn", str(models["twin"]), "-d", "holdout@1", "-t", str(gate)]
    )
    assert ok.exit_code == 0 and "blessed" in ok.output
    assert [v.blessed for v in verdicts("churn")] == [True, False]
    bad = CliRunner().invoke(app, ["gate", "churn", "1", "-d", "holdout", "-t", str(gate)])
    assert isinstance(bad.exception, InvalidInput) and bad.exception.field == "dataset"
    assert bad.exception.exit_code == 2 and "names no version" in str(bad.exception)


def test_the_cli_refuses_a_thresholds_folder_with_a_usage_error(
    ctx: Context, tmp_path: Path
) -> None:
    done = CliRunner().invoke(app, ["gate", "churn", "2", "-d", "holdout@1", "-t", str(tmp_path)])
    assert isinstance(done.exception, InvalidInput), done.exception
    assert done.exception.field == "thresholds" and done.exception.exit_code == 2
    assert f"--thresholds {tmp_path} is a folder" in str(done.exception)


def _three_classes(n: int, seed: int) -> Any:
    import pandas as pd

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    frame["y"] = np.select([frame.a < -0.5, frame.a < 0.5], ["zeta", "alpha"], "mid")
    return frame


def test_lightgbm_probabilities_are_scored_by_the_classes_the_model_recorded(
    ctx: Context,
) -> None:
    # A LightGBM classifier loads as its Booster, which has no classes_: the gate took the
    # classes the labels and predictions held, so held-out rows without 'zeta' but with an
    # unseen 'omega' scored the 'zeta' column as 'omega' (auc 0.79, logloss 0.29, where
    # scikit-learn refuses both), and rows without 'zeta' lost logloss altogether.
    import lightgbm as lgb
    from sklearn import metrics as skm

    train = _three_classes(600, seed=0)
    model = lgb.LGBMClassifier(n_estimators=20, verbose=-1).fit(train[["a", "b"]], train.y)
    with ll.start_run(experiment="lgb") as run:
        run.log_model(model, "model", input_example=train[["a", "b"]].head(5))
    version = ll.registry.register(run, "lgb").version
    rows = _three_classes(300, seed=1)
    rows = rows[(rows.y != "zeta") & (model.predict(rows[["a", "b"]]) != "zeta")]
    rows = rows.reset_index(drop=True)
    unseen = rows.assign(y=np.where(rows.index < 10, "omega", rows.y))
    ll.datasets.register("lgb-two", rows)
    ll.datasets.register("lgb-unseen", unseen)
    spec = {"label": "y", "data": {"validate": False}, "metrics": {"accuracy": {"lower": 0}}}

    two = ll.gates.evaluate("lgb", version, "lgb-two@1", spec).metrics["challenger"]
    proba = model.predict_proba(rows[["a", "b"]])
    assert two["logloss"] == pytest.approx(skm.log_loss(rows.y, proba, labels=model.classes_))
    odd = ll.gates.evaluate("lgb", version, "lgb-unseen@1", spec)
    assert "auc" not in odd.metrics["challenger"] and "logloss" not in odd.metrics["challenger"]
    with_auc = ll.gates.evaluate(
        "lgb", version, "lgb-unseen@1", {**spec, "metrics": {"logloss": {"upper": 1}}}
    )
    assert "omega" in with_auc.reasons[0] and not with_auc.blessed


def test_a_held_out_row_without_a_label_is_refused(ctx: Context, models: dict[str, int]) -> None:
    # The AUC counted a missing label as a negative (NaN == 1 is False) while the other
    # metrics failed on it: a gate on auc alone blessed on a wrong value.
    rows = toy_data(100, seed=4)
    rows["label"] = rows["label"].astype("float64").where(rows.index % 10 != 3)
    ll.datasets.register("holdout-unlabelled", rows)
    spec = {"label": "label", "data": {"validate": False}, "metrics": {"auc": {"lower": 0.5}}}
    with pytest.raises(InvalidInput) as exc:
        ll.gates.evaluate("churn", models["good"], "holdout-unlabelled@1", spec)
    assert exc.value.field == "label"
    assert "has 10 missing value(s) (rows 3, 13, 23, 33, 43, ...)" in str(exc.value)
    assert "holdout-unlabelled@1" in str(exc.value) and verdicts("churn") == []


def test_the_data_gate_skips_a_folder_of_files_the_run_read(ctx: Context, tmp_path: Path) -> None:
    # A run that read a folder of files before its table made the gate fail ('is a folder
    # of files, not a table'), so no model of such a run could be gated.
    folder = tmp_path / "vocab"
    folder.mkdir()
    (folder / "words.txt").write_text("churn\nstay\n")
    ll.datasets.register("vocab", folder)
    train = toy_data(200, seed=0)
    ll.datasets.register("train", train)
    ll.datasets.register("holdout", toy_data(100, seed=1))
    with ll.start_run(experiment="files") as run:
        ll.datasets.get("vocab", 1)
        ll.datasets.get("train", 1)
        run.log_model(good_model(train), "model", input_example=train[FEATURES].head(5))
    version = ll.registry.register(run, "files").version
    spec = {"label": "label", "metrics": {"accuracy": {"lower": 0.5}}}
    v = ll.gates.evaluate("files", version, "holdout@1", spec)
    assert v.blessed and "the training data contract of train@1" in v.reasons[0]
    with ll.start_run(experiment="files") as run:
        ll.datasets.get("vocab", 1)
        run.log_model(good_model(train), "model", input_example=train[FEATURES].head(5))
    version = ll.registry.register(run, "files").version
    v = ll.gates.evaluate("files", version, "holdout@1", spec)
    assert v.blessed and "read no table dataset (vocab@1: files)" in v.reasons[0]
    assert "fits the model's signature" in v.reasons[0]


def test_the_positive_class_of_a_binary_classifier_can_be_named(ctx: Context) -> None:
    # 'stayed' sorts after 'churned', so precision, recall, f1 and auc were those of
    # 'stayed': a churn model that misses most churners passed a recall bound meant for them.
    from sklearn import metrics as skm
    from sklearn.linear_model import LogisticRegression

    train = toy_data(300, seed=0)
    train["label"] = np.where(train.label == 1, "churned", "stayed")
    model = LogisticRegression().fit(train[FEATURES], train.label)
    version = register(model, "churn-text", train)
    holdout = toy_data(200, seed=1)
    holdout["label"] = np.where(holdout.label == 1, "churned", "stayed")
    ll.datasets.register("holdout-text", holdout)
    metrics = {"recall": {"lower": 0.0}, "auc": {"lower": 0.0}}
    spec: dict[str, Any] = {"label": "label", "data": {"validate": False}, "metrics": metrics}
    y, pred = holdout.label, model.predict(holdout[FEATURES])
    proba = model.predict_proba(holdout[FEATURES])[:, list(model.classes_).index("churned")]

    default = ll.gates.evaluate("churn-text", version, "holdout-text@1", spec)
    assert default.metrics["challenger"]["recall"] == pytest.approx(
        skm.recall_score(y, pred, pos_label="stayed")
    )
    named = ll.gates.evaluate(
        "churn-text", version, "holdout-text@1", {**spec, "positive": "churned"}
    ).metrics["challenger"]
    assert named["recall"] == pytest.approx(skm.recall_score(y, pred, pos_label="churned"))
    assert named["precision"] == pytest.approx(skm.precision_score(y, pred, pos_label="churned"))
    assert named["auc"] == pytest.approx(skm.roc_auc_score(y == "churned", proba))

    wrong = ll.gates.evaluate(
        "churn-text", version, "holdout-text@1", {**spec, "positive": "churn"}
    )
    assert not wrong.blessed
    assert "the positive class 'churn' is not one of the classes" in " ".join(wrong.reasons)
    with pytest.raises(InvalidInput, match=r"positive: .*class label"):
        ll.gates.evaluate("churn-text", version, "holdout-text@1", {**spec, "positive": 0.5})
    with pytest.raises(InvalidInput, match="applies to a classifier only"):
        ll.gates.evaluate(
            "churn-text",
            version,
            "holdout-text@1",
            {**spec, "positive": "churned", "metrics": {"rmse": {"upper": 1}}},
        )


def _log_bare(model: Any, name: str) -> int:
    """Log ``model`` without an input example (no signature) and register it."""
    with ll.start_run(experiment=f"bare-{name}") as run:
        run.log_model(model, "model")
    return int(ll.registry.register(run, name).version)


def test_a_model_logged_without_an_example_is_scored_on_the_columns_it_was_fitted_on(
    ctx: Context,
) -> None:
    # Every held-out column but the label went to the model: an id column, or the
    # features in another order, failed the gate with scikit-learn's error.
    from sklearn import metrics as skm

    train = toy_data(240, seed=0)
    model = good_model(train)
    version = _log_bare(model, "bare")
    holdout = toy_data(150, seed=1)
    shuffled = holdout[["label", "bucket", "b", "a"]].assign(id=range(150))
    ll.datasets.register("holdout-shuffled", shuffled)
    spec = {"label": "label", "data": {"validate": False}, "metrics": {"accuracy": {"lower": 0}}}
    v = ll.gates.evaluate("bare", version, "holdout-shuffled@1", spec)
    assert v.blessed, v.reasons
    expected = skm.accuracy_score(holdout.label, model.predict(holdout[FEATURES]))
    assert v.metrics["challenger"]["accuracy"] == pytest.approx(expected)
    ll.datasets.register("holdout-short", shuffled.drop(columns=["b"]))
    short = ll.gates.evaluate("bare", version, "holdout-short@1", spec)
    assert not short.blessed and "missing column 'b'" in short.reasons[0], short.reasons


def test_a_model_fitted_on_a_bare_array_without_an_example_is_not_scored_on_a_guess(
    ctx: Context,
) -> None:
    # Nothing records which held-out columns such a model takes, nor their order: the
    # gate scored whatever columns the held-out set had, in its order.
    train = toy_data(240, seed=0)
    version = _log_bare(good_model(train).fit(train[FEATURES].to_numpy(), train.label), "arr")
    ll.datasets.register("holdout-arr", toy_data(150, seed=1)[["b", "a", "bucket", "label"]])
    spec = {"label": "label", "data": {"validate": False}, "metrics": {"accuracy": {"lower": 0}}}
    v = ll.gates.evaluate("arr", version, "holdout-arr@1", spec)
    assert not v.blessed and v.metrics["challenger"] == {}
    (reason,) = v.reasons
    assert "fitted on unnamed columns" in reason and "input_example=X.head(5)" in reason


def test_a_metric_of_the_other_task_is_refused_naming_it_and_the_models_task(
    ctx: Context, models: dict[str, int], tmp_path: Path
) -> None:
    # A thresholds file naming only rmse made the task 'regression': a classifier was
    # scored as a regressor (its class labels taken for numbers) and could be blessed.
    from sklearn.linear_model import LinearRegression

    from tests.cli_run import run_loopline

    rmse = {"label": "label", "data": {"validate": False}, "metrics": {"rmse": {"upper": 1}}}
    with pytest.raises(InvalidInput) as e:
        ll.gates.evaluate("churn", models["good"], "holdout@1", rmse)
    assert e.value.field == "metrics.rmse"
    assert "rmse does not apply to the task classification" in e.value.message
    assert "accuracy, precision, recall, f1, auc, logloss" in (e.value.hint or "")
    with pytest.raises(InvalidInput) as e:
        ll.gates.evaluate("churn", models["good"], "holdout@1", {**rmse, "task": "regression"})
    assert e.value.field == "task" and "(task classification)" in e.value.message
    assert latest_verdict("churn", models["good"]) is None  # refused, not judged

    data = toy_data(200).assign(y=lambda d: 3 * d.a - d.b)
    ll.datasets.register("prices", data.drop(columns=["label"]))
    price = register(LinearRegression().fit(data[FEATURES], data.y), "price", data)
    accuracy = {"label": "y", "data": {"validate": False}, "metrics": {"accuracy": {"lower": 0}}}
    with pytest.raises(InvalidInput) as e:
        ll.gates.evaluate("price", price, "prices@1", accuracy)
    assert e.value.field == "metrics.accuracy" and "task regression" in e.value.message
    assert e.value.hint == "metrics of the task regression: rmse, mae, r2"

    gate = tmp_path / "gate.yaml"
    gate.write_text("label: label\nmetrics:\n  rmse: {upper: 1}\n")
    done = run_loopline(
        ctx, "gate", "churn", str(models["good"]), "-d", "holdout@1", "-t", str(gate)
    )
    assert done.returncode == 2, done.stderr
    assert "metrics.rmse" in done.stderr and "classification" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
