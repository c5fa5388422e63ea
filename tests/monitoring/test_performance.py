"""Live performance per window and version: label metrics, latency, throughput, drift."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    accuracy_score,
    mean_absolute_error,
    precision_score,
    recall_score,
    roc_auc_score,
    root_mean_squared_error,
)

import loopline as ll
from loopline.core.context import Context
from loopline.monitoring.performance import assign_windows, infer_task
from loopline.monitoring.prediction_log import PredictionLogger


def test_classification_metrics_per_window_and_version_match_sklearn(ctx: Context) -> None:
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 2, 400)
    pred = np.where(rng.random(400) < 0.8, truth, 1 - truth)
    with PredictionLogger(ctx, start=False) as logger:
        for i in range(400):
            version = "1" if i < 200 else "2"
            latency = 2.0 if i % 100 else 50.0
            logger.log(f"r{i}", "m", version, [{"x": float(i)}], [int(pred[i])], latency)
    ll.monitor.log_labels([f"r{i}" for i in range(400)], truth.tolist())
    windows = ll.monitor.performance("m", window=100)
    assert [(w.version, w.requests) for w in windows] == [("1", 100)] * 2 + [("2", 100)] * 2
    w = windows[2]
    t, p = truth[200:300], pred[200:300]
    assert w.metrics["accuracy"] == pytest.approx(accuracy_score(t, p))
    assert w.metrics["precision"] == pytest.approx(precision_score(t, p))
    assert w.metrics["recall"] == pytest.approx(recall_score(t, p))
    assert w.metrics["auc"] == pytest.approx(roc_auc_score(t, p))
    assert w.latency_p50_ms == 2.0 and w.latency_p99_ms is not None and w.latency_p99_ms > 2.0
    assert w.throughput_rps is not None and w.throughput_rps > 0
    merged = ll.monitor.performance("m", window=1000, by_version=False)
    assert len(merged) == 1 and merged[0].labelled == 400


def test_regression_metrics(embedded_ctx: Context) -> None:
    with PredictionLogger(embedded_ctx, start=False) as logger:
        for i in range(50):
            logger.log(f"r{i}", "price", "1", [{"x": 1.0}], [10.0 + (i % 2) * 2.5], 1.0)
    ll.monitor.log_labels([f"r{i}" for i in range(50)], [10.0 + 0.1 * i for i in range(50)])
    w = ll.monitor.performance("price", window="day", task="regression")[0]
    err = np.array([10.0 + (i % 2) * 2.5 - (10.0 + 0.1 * i) for i in range(50)])
    assert w.metrics["rmse"] == pytest.approx(float(np.sqrt(np.mean(err**2))))
    assert w.metrics["mae"] == pytest.approx(float(np.mean(np.abs(err))))


def test_drift_per_window_against_the_reference(embedded_ctx: Context) -> None:
    rng = np.random.default_rng(2)
    reference = pd.DataFrame({"temp": rng.normal(35, 8, 3000), "dist": rng.normal(1000, 300, 3000)})
    with PredictionLogger(embedded_ctx, start=False) as logger:
        for i in range(1000):
            shifted = i >= 500  # spring arrives: warmer, same distances
            row = {
                "temp": float(rng.normal(65 if shifted else 35, 8)),
                "dist": float(rng.normal(1000, 300)),
            }
            logger.log(f"r{i}", "m", "1", [row], [0], 1.0)
    windows = ll.monitor.performance(
        "m", window=500, reference=reference, features=["temp", "dist"]
    )
    assert windows[0].drifted == [] and windows[1].drifted == ["temp"]
    assert windows[1].drift_scores["temp"] > windows[1].drift_scores["dist"]
    assert windows[1].value("drift_share") == 0.5


def test_windows_and_task_inference() -> None:
    f = pd.DataFrame({"_ts": [0.0, 1.0, 2.0, 3.0, 90000.0], "_request_id": list("abcde")})
    assert assign_windows(f, 2).tolist() == [0.0, 0.0, 2.0, 2.0, 90000.0]
    assert assign_windows(f, "day").tolist() == [0.0] * 4 + [86400.0]
    with pytest.raises(ll.InvalidInput, match="window"):
        assign_windows(f, 0)
    assert infer_task(pd.Series([0, 1, 1])) == "classification"
    assert infer_task(pd.Series([0.5, 1.7])) == "regression"
    # Whole-number labels with predictions that are not: a regressor of counts.
    assert infer_task(pd.Series([3, 5, 4]), pd.Series([3.2, 4.9, 4.0])) == "regression"
    assert infer_task(pd.Series([0, 1]), pd.Series([1.0, 0.0])) == "classification"
    assert infer_task(pd.Series([0, 1]), pd.Series([True, False])) == "classification"
    assert infer_task(pd.Series(["a", "b"]), pd.Series(["a", "a"])) == "classification"
    # Labels of 0/1 met by probabilities: a binary classifier; met by numbers past 1 (or
    # labels beyond 0/1): a regressor.
    assert infer_task(pd.Series([0, 1, 1]), pd.Series([0.1, 0.8, 1.0])) == "classification"
    assert infer_task(pd.Series([0, 1, 1]), pd.Series([0.1, 0.8, 1.4])) == "regression"
    assert infer_task(pd.Series([0, 1, 2]), pd.Series([0.1, 0.8, 0.9])) == "regression"


def test_labels_and_predictions_of_one_class_compare_alike(embedded_ctx: Context) -> None:
    # A model trained on a bool target predicts True/False while the labels come as 0/1
    # (or the other way round): both name the same classes. Each was 'True' against '1',
    # accuracy 0.0.
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 2, 100)
    pred = np.where(rng.random(100) < 0.8, truth, 1 - truth)
    with PredictionLogger(embedded_ctx, start=False) as logger:
        for i in range(100):
            logger.log(f"i{i}", "ints", "1", [{"x": 1.0}], [int(pred[i])], 1.0)
            logger.log(f"b{i}", "bools", "1", [{"x": 1.0}], [bool(pred[i])], 1.0)
    ll.monitor.log_labels([f"i{i}" for i in range(100)], [bool(t) for t in truth], model="ints")
    ll.monitor.log_labels([f"b{i}" for i in range(100)], truth.tolist(), model="bools")
    for model in ("ints", "bools"):
        m = ll.monitor.performance(model, window="day")[0].metrics
        assert m["accuracy"] == pytest.approx(accuracy_score(truth, pred))
        assert m["precision"] == pytest.approx(precision_score(truth, pred))
        assert m["recall"] == pytest.approx(recall_score(truth, pred))
        assert m["auc"] == pytest.approx(roc_auc_score(truth, pred))


def test_a_regressor_with_whole_number_labels_is_scored_as_a_regressor(
    embedded_ctx: Context,
) -> None:
    # Counts (items bought, a rating) are a few whole numbers; the model predicts 4.7.
    rng = np.random.default_rng(4)
    truth = rng.poisson(5, 200)
    pred = truth + rng.normal(0, 0.7, 200)
    with PredictionLogger(embedded_ctx, start=False) as logger:
        for i in range(200):
            logger.log(f"r{i}", "items", "1", [{"x": 1.0}], [float(pred[i])], 1.0)
    ll.monitor.log_labels([f"r{i}" for i in range(200)], truth.tolist(), model="items")
    m = ll.monitor.performance("items", window="day")[0].metrics
    assert m.keys() == {"rmse", "mae"}  # was accuracy 0.0: 4.7 never equals 5
    assert m["rmse"] == pytest.approx(root_mean_squared_error(truth, pred))
    assert m["mae"] == pytest.approx(mean_absolute_error(truth, pred))


def test_a_binary_classifiers_probabilities_are_scored_as_a_classifier(
    embedded_ctx: Context,
) -> None:
    # A model that answers P(class 1) (a pyfunc wrapping predict_proba): labels are 0 and 1,
    # predictions 0.83. It was scored as a regressor (RMSE against 0/1), with no accuracy
    # and no AUC.
    rng = np.random.default_rng(5)
    truth = rng.integers(0, 2, 300)
    proba = np.clip(truth * 0.6 + rng.normal(0.2, 0.2, 300), 0.01, 0.99)
    with PredictionLogger(embedded_ctx, start=False) as logger:
        for i in range(300):
            logger.log(f"p{i}", "proba", "1", [{"x": 1.0}], [float(proba[i])], 1.0)
    ll.monitor.log_labels([f"p{i}" for i in range(300)], truth.tolist(), model="proba")
    m = ll.monitor.performance("proba", window="day")[0].metrics
    hard = (proba >= 0.5).astype(int)
    assert m.keys() == {"accuracy", "precision", "recall", "auc"}
    assert m["accuracy"] == pytest.approx(accuracy_score(truth, hard))
    assert m["precision"] == pytest.approx(precision_score(truth, hard))
    assert m["recall"] == pytest.approx(recall_score(truth, hard))
    assert m["auc"] == pytest.approx(roc_auc_score(truth, proba))  # ranked by probability
    assert roc_auc_score(truth, proba) != pytest.approx(roc_auc_score(truth, hard))
    zero = ll.monitor.performance("proba", window="day", positive=0)[0].metrics
    assert zero["recall"] == pytest.approx(recall_score(truth, hard, pos_label=0))
    assert zero["auc"] == pytest.approx(roc_auc_score(truth == 0, 1 - proba))


def test_the_positive_class_of_live_metrics_can_be_named(embedded_ctx: Context) -> None:
    # 'stayed' sorts after 'churned': without positive=, precision and recall are those of
    # 'stayed'; the loop passes its gate's 'positive' so both score the same class.
    rng = np.random.default_rng(6)
    truth = np.where(rng.random(200) < 0.3, "churned", "stayed")
    pred = np.where(
        rng.random(200) < 0.75, truth, np.where(truth == "churned", "stayed", "churned")
    )
    with PredictionLogger(embedded_ctx, start=False) as logger:
        for i in range(200):
            logger.log(f"c{i}", "churn", "1", [{"x": 1.0}], [str(pred[i])], 1.0)
    ll.monitor.log_labels([f"c{i}" for i in range(200)], truth.tolist(), model="churn")
    default = ll.monitor.performance("churn", window="day")[0].metrics
    assert default["recall"] == pytest.approx(recall_score(truth, pred, pos_label="stayed"))
    named = ll.monitor.performance("churn", window="day", positive="churned")[0].metrics
    assert named["recall"] == pytest.approx(recall_score(truth, pred, pos_label="churned"))
    assert named["precision"] == pytest.approx(precision_score(truth, pred, pos_label="churned"))
    assert named["accuracy"] == default["accuracy"]
    with pytest.raises(ll.InvalidInput, match="positive class 'churn' is not one of") as e:
        ll.monitor.performance("churn", window="day", positive="churn")
    assert e.value.field == "positive"


def test_drift_share_counts_a_missing_feature_once(embedded_ctx: Context) -> None:
    # b is never logged: it is drifted and counts among the columns (the share was
    # drifted / tested: 2 of 2 here, and 1.5 when c drifted too).
    rng = np.random.default_rng(5)
    reference = pd.DataFrame({k: rng.normal(size=2000) for k in "abc"})
    with PredictionLogger(embedded_ctx, start=False) as logger:
        for i in range(300):
            row = {"a": float(rng.normal(3)), "c": float(rng.normal())}
            logger.log(f"r{i}", "m", "1", [row], [0], 1.0)
    [w] = ll.monitor.performance("m", window=1000, reference=reference)
    assert sorted(w.drifted) == ["a", "b"] and sorted(w.drift_scores) == ["a", "c"]
    assert w.value("drift_share") == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("spend", "note"),
    [
        (float("nan"), "broken: all null in current"),
        (None, "broken: all null in current"),
        ("50.1", "broken: current column is large_string, reference is numeric"),
    ],
    ids=["nan", "none", "text"],
)
def test_a_feature_all_null_or_of_another_type_in_a_window_is_drifted_with_why(
    embedded_ctx: Context, spend: object, note: str
) -> None:
    # spend silently dropped out of the window (drifted [], scores of tenure only), or, as
    # text, the window raised InvalidInput.
    rng = np.random.default_rng(5)
    reference = pd.DataFrame({"tenure": rng.normal(size=2000), "spend": rng.normal(50, 10, 2000)})
    with PredictionLogger(embedded_ctx, start=False) as logger:
        for i in range(300):
            row = {"tenure": float(rng.normal()), "spend": spend}
            logger.log(f"r{i}", "m", "1", [row], [0], 1.0)
    [w] = ll.monitor.performance("m", window=1000, reference=reference)
    assert w.drifted == ["spend"] and list(w.drift_scores) == ["tenure"]
    assert w.drift_notes == {"spend": note}
    assert w.to_dict()["drift_notes"] == {"spend": note}
    assert w.value("drift_share") == 0.5 and w.value("drifted_features") == 1.0


def test_throughput_is_none_when_a_window_cannot_measure_a_rate(embedded_ctx: Context) -> None:
    # Five requests logged back to back: a window of one request was divided by a 1e-9 s
    # floor (1e9 requests per second), and two requests microseconds apart by their span.
    for i in range(5):
        ll.monitor.log_prediction(f"t-{i}", "m2", 1, [{"x": 1.0}], [1], latency_ms=1.0)
    by_two = ll.monitor.performance("m2", window=2)
    assert [w.throughput_rps for w in by_two] == [2.0, 2.0, None]
    assert by_two[-1].to_dict()["throughput_rps"] is None
    [hour] = ll.monitor.performance("m2", window="hour")
    assert hour.throughput_rps == 5.0  # the same one-second floor as the windows of N
    ceiling = ll.monitor.AlertRule(metric="throughput_rps", op=">", threshold=100)
    assert ll.monitor.check_rules([ceiling], [*by_two, hour]) == []
    ll.monitor.log_prediction("alone", "m3", 1, [{"x": 1.0}], [1], latency_ms=1.0)
    assert [w.throughput_rps for w in ll.monitor.performance("m3", window="day")] == [None]


def test_throughput_is_requests_over_their_span() -> None:
    from loopline.monitoring.performance import throughput

    assert throughput(pd.Series([0.0, 10.0, 20.0, 40.0])) == 0.1
    assert throughput(pd.Series([3.0, 3.0, 3.0])) is None  # one instant: no rate
    assert throughput(pd.Series([], dtype=float)) is None


def test_precision_and_recall_are_left_out_when_a_window_cannot_define_them(
    embedded_ctx: Context,
) -> None:
    # 4 predictions of 1, every label 0: recall of class 1 has no positive label to be
    # measured on. It was 0.0, which a floor {recall: 0.5} takes for a collapse.
    with PredictionLogger(embedded_ctx, start=False) as logger:
        for i in range(200):
            logger.log(f"p-{i}", "m4", "1", [{"x": 1.0}], [1 if i < 4 else 0], 1.0)
            logger.log(f"q-{i}", "m5", "1", [{"x": 1.0}], [0], 1.0)
    ll.monitor.log_labels([f"p-{i}" for i in range(200)], [0] * 200, model="m4")
    ll.monitor.log_labels([f"q-{i}" for i in range(200)], [0] * 200, model="m5")
    [w] = ll.monitor.performance("m4", window="day", positive=1)
    assert w.metrics == {"accuracy": 0.98, "precision": 0.0}
    assert w.value("recall") is None
    assert ll.monitor.performance("m4", window="day")[0].metrics == w.metrics
    # All 0: the positive class flipped to 0 (precision and recall 1.0); class 1 has
    # neither a prediction nor a label here, so neither is defined.
    assert ll.monitor.performance("m5", window="day")[0].metrics == {"accuracy": 1.0}
    floor = ll.monitor.AlertRule(metric="recall", op="<", threshold=0.5)
    assert ll.monitor.check_rules([floor], [w]) == []


def test_the_positive_class_does_not_depend_on_the_classes_of_one_window(
    embedded_ctx: Context,
) -> None:
    # 'stayed' sorts after 'churned': it is the default positive class. A window that
    # held only 'churned' scored 'churned' as positive (precision and recall 1.0).
    truth = ["churned", "stayed"] * 50 + ["churned"] * 100
    pred = ["churned", "stayed"] * 40 + ["stayed", "churned"] * 10 + ["churned"] * 100
    with PredictionLogger(embedded_ctx, start=False) as logger:
        for i in range(200):
            logger.log(f"c{i}", "churn", "1", [{"x": 1.0}], [pred[i]], 1.0)
    ll.monitor.log_labels([f"c{i}" for i in range(200)], truth, model="churn")
    first, second = ll.monitor.performance("churn", window=100)
    assert first.metrics["recall"] == pytest.approx(
        recall_score(truth[:100], pred[:100], pos_label="stayed")
    )
    assert second.metrics == {"accuracy": 1.0}  # no 'stayed' at all: undefined
    named = ll.monitor.performance("churn", window=100, positive="churned")[1].metrics
    assert named == {"accuracy": 1.0, "precision": 1.0, "recall": 1.0}


def test_a_classifier_of_several_classes_is_macro_averaged_in_every_window(
    embedded_ctx: Context,
) -> None:
    # A window of a 3-class model that held two classes was scored as a binary one (of
    # the greater class), and a class predicted but never labelled counted recall 0.
    truth = ["a", "b", "c"] * 30 + ["a", "b"] * 45
    pred = [*truth[:90], "a", "c", *truth[92:]]
    with PredictionLogger(embedded_ctx, start=False) as logger:
        for i in range(180):
            logger.log(f"k{i}", "abc", "1", [{"x": 1.0}], [pred[i]], 1.0)
    ll.monitor.log_labels([f"k{i}" for i in range(180)], truth, model="abc")
    _, second = ll.monitor.performance("abc", window=90)
    t, p = truth[90:], pred[90:]
    assert second.metrics["precision"] == pytest.approx(
        precision_score(t, p, average="macro", zero_division=np.nan)
    )
    # 'c' is predicted once, never a label here: the recall of 'a' and 'b' alone
    assert second.metrics["recall"] == pytest.approx(
        recall_score(t, p, labels=["a", "b"], average="macro")
    )


def test_a_regressors_labels_that_are_not_numbers_are_counted_not_coerced(
    embedded_ctx: Context,
) -> None:
    # "n/a" was dropped by nanmean and "3" (text) read as... nothing said so: labelled 4,
    # RMSE over fewer rows. Labels sent without model= (or before the predictions were
    # logged) are not checked when sent; the window scores the numbers and counts the rest.
    with PredictionLogger(embedded_ctx, start=False) as logger:
        for i in range(4):
            logger.log(f"g-{i}", "reg", "1", [{"x": 1.0}], [i + 0.5], 1.0)
        logger.log("g-4", "reg", "1", [{"x": 1.0}], [None], 1.0)
    ll.monitor.log_labels([f"g-{i}" for i in range(5)], [0.0, 1.0, "n/a", "3", 4.0])
    [w] = ll.monitor.performance("reg", window="day", task="regression")
    assert (w.labelled, w.unscored_rows) == (2, 3)
    assert w.metrics == {"rmse": 0.5, "mae": 0.5}
    assert w.to_dict()["unscored_rows"] == 3 and w.value("unscored_rows") == 3.0
    rule = ll.monitor.AlertRule(metric="unscored_rows", op=">", threshold=0)
    assert len(ll.monitor.check_rules([rule], [w])) == 1
    # Classifiers compare every label as a class: nothing is unscored.
    [c] = ll.monitor.performance("reg", window="day", task="classification")
    assert (c.labelled, c.unscored_rows) == (5, 0)


def test_labels_for_a_numeric_model_are_checked_while_its_predictions_are_queued(
    embedded_ctx: Context,
) -> None:
    # The check read the stored files only: right after log_prediction (still in the
    # logger's queue) a text label for a regressor passed unchecked.
    for i in range(2):
        ll.monitor.log_prediction(f"h-{i}", "reg2", 1, [{"x": 1.0}], [i + 0.5], latency_ms=1.0)
    with pytest.raises(ll.InvalidInput, match="predicts numbers") as err:
        ll.monitor.log_labels(["h-0", "h-1"], [0.0, "n/a"], model="reg2")
    assert err.value.field == "labels[1]"
    assert ll.monitor.read_labels().empty


def test_regression_metrics_are_nan_over_a_row_that_is_not_a_number() -> None:
    from loopline.monitoring.scoring import label_metrics

    m = label_metrics(pd.Series([1.0, np.nan]), pd.Series([1.5, 2.0]), None, "regression")
    assert np.isnan(m["rmse"]) and np.isnan(m["mae"])  # never a mean over fewer rows
