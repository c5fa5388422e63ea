"""run.log_model, verified loading, version warnings, and signatures, on both databases."""

from __future__ import annotations

import copy
import math
import timeit
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import orjson
import pandas as pd
import pytest
import xgboost as xgb
from sklearn.linear_model import LogisticRegression

import loopline as ll
from loopline.core import artifact_paths
from loopline.core.artifacts import LocalArtifactStore, hash_bytes
from loopline.core.context import Context
from loopline.errors import IntegrityError, InvalidInput, NotFound
from loopline.training import models, registry_logged_models, registry_records
from loopline.training.flavors import LibraryVersionWarning
from loopline.training.flavors.sklearn_flavor import SklearnFlavor
from loopline.training.model_manifest import MANIFEST_FILE, Manifest
from loopline.training.signature import ModelSignature, infer_signature
from loopline.training.signature_columns import ColumnSpec

COLUMNS = ["age", "income", "visits", "score"]


def _data(n: int = 80) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(3)
    X = pd.DataFrame(
        {
            "age": rng.integers(18, 80, n),
            "income": rng.random(n) * 100,
            "visits": rng.integers(0, 20, n),
            "score": rng.random(n),
        }
    )
    return X, pd.Series((X["income"] > 50).astype(int))


MAKERS = {
    "sklearn": lambda X, y: LogisticRegression(max_iter=500).fit(X, y),
    "xgboost": lambda X, y: xgb.XGBClassifier(n_estimators=4).fit(X, y),
    "lightgbm": lambda X, y: lgb.LGBMClassifier(n_estimators=4, verbose=-1).fit(X, y),
}


def _logged(ctx: Context, flavor: str = "sklearn") -> tuple[Any, registry_records.LoggedModel]:
    X, y = _data()
    model = MAKERS[flavor](X, y)
    with ll.start_run(experiment="models") as run:
        logged = run.log_model(model, "model", input_example=X.head(5))
    return model, logged


@pytest.mark.parametrize("flavor", sorted(MAKERS), ids=str)
def test_log_model_stores_files_and_loads_back_equal(ctx: Context, flavor: str) -> None:
    model, logged = _logged(ctx, flavor)
    assert logged.status == "READY" and logged.flavor == flavor
    run = ll.get_run(logged.source_run_id or "")
    prefix = f"{run.experiment_id}/models/{logged.model_id}/artifacts"
    listed = {e.path.rsplit("/", 1)[-1]: e for e in artifact_paths.list_dir(ctx, prefix)}
    assert MANIFEST_FILE in listed and len(listed) == 2
    assert listed[MANIFEST_FILE].digest == logged.manifest_digest
    manifest = Manifest.from_bytes(ctx.artifacts.get_bytes(logged.manifest_digest or ""), "t")
    assert {"python", "numpy"} <= set(manifest.library_versions)
    for f in manifest.files:
        assert listed[f.path].digest == f.digest
    assert ModelSignature.from_json(logged.signature or "") == manifest.signature
    loaded = models.load_logged_model(ctx, logged, ref=logged.model_id)
    X, _ = _data(30)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X), rtol=1e-12)
    one = X.head(1).to_dict(orient="records")
    np.testing.assert_array_equal(loaded.predict(one), model.predict(X.head(1)))


@pytest.mark.usefixtures("s3_env")
def test_log_and_load_with_s3_artifacts(migrated_sqlite_uri: str, s3_url: str) -> None:
    ctx = ll.init(uri=migrated_sqlite_uri, artifacts=s3_url)
    try:
        model, logged = _logged(ctx, "lightgbm")
        loaded = models.load_logged_model(ctx, logged, ref="models:/s3/1")
        X, _ = _data(20)
        np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
        assert ctx.artifacts.exists(logged.manifest_digest or "")
    finally:
        ctx.close()


def _skops_digest(ctx: Context, logged: registry_records.LoggedModel) -> str:
    manifest = Manifest.from_bytes(ctx.artifacts.get_bytes(logged.manifest_digest or ""), "t")
    return next(f.digest for f in manifest.files if f.path == "model.skops")


def _spy_on_deserialisation(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    calls: list[Any] = []
    monkeypatch.setattr(SklearnFlavor, "load", lambda *a, **k: calls.append(a))
    return calls


def test_a_corrupted_model_file_is_refused_before_deserialising(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, logged = _logged(ctx)
    digest = _skops_digest(ctx, logged)
    assert isinstance(ctx.artifacts, LocalArtifactStore)
    path = ctx.artifacts.local_path(digest)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    calls = _spy_on_deserialisation(monkeypatch)
    with pytest.raises(IntegrityError, match=r"model\.skops .* is corrupted"):
        models.load_logged_model(ctx, logged, ref="models:/t/1")
    assert calls == []


def test_a_model_file_replaced_through_its_path_is_refused(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, logged = _logged(ctx)
    prefix = models.artifact_prefix(logged)
    artifact_paths.put_bytes(ctx, f"{prefix}/model.skops", b"PK\x03\x04 something else")
    calls = _spy_on_deserialisation(monkeypatch)
    with pytest.raises(IntegrityError, match=r"model\.skops of models:/t/1 was replaced"):
        models.load_logged_model(ctx, logged, ref="models:/t/1")
    assert calls == []


def test_a_missing_model_file_is_an_integrity_error(ctx: Context) -> None:
    _, logged = _logged(ctx)
    path = ctx.artifacts.local_path(_skops_digest(ctx, logged))  # type: ignore[attr-defined]
    path.unlink()
    with pytest.raises(IntegrityError, match=r"model\.skops .* is missing"):
        models.load_logged_model(ctx, logged, ref="models:/t/1")


def _with_recorded_version(
    ctx: Context, logged: registry_records.LoggedModel, dist: str, version: str
) -> registry_records.LoggedModel:
    raw = orjson.loads(ctx.artifacts.get_bytes(logged.manifest_digest or ""))
    raw["library_versions"][dist] = version
    digest = ctx.artifacts.put_bytes(orjson.dumps(raw))
    return registry_logged_models.update_logged_model(ctx, logged.model_id, manifest_digest=digest)


def test_another_library_version_warns_but_loads(ctx: Context) -> None:
    model, logged = _logged(ctx)
    copy_ = _with_recorded_version(ctx, logged, "scikit-learn", "0.0.1")
    with pytest.warns(LibraryVersionWarning, match=r"scikit-learn 0\.0\.1 \(installed: "):
        loaded = models.load_logged_model(ctx, copy_, ref="models:/t/1")
    X, _ = _data(10)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_a_model_folder_is_verified_and_warns_on_versions(tmp_path: Path) -> None:
    X, y = _data()
    model = MAKERS["xgboost"](X, y)
    folder = models.save_model(model, tmp_path / "m", input_example=X.head(3))
    raw = orjson.loads((folder / MANIFEST_FILE).read_bytes())
    original = hash_bytes((folder / MANIFEST_FILE).read_bytes())
    raw["library_versions"]["xgboost"] = "0.90"
    (folder / MANIFEST_FILE).write_bytes(orjson.dumps(raw))
    with pytest.warns(LibraryVersionWarning, match=r"xgboost 0\.90"):
        loaded = models.load_folder(folder)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    with pytest.raises(IntegrityError, match="does not match the digest"):
        models.load_folder(folder, manifest_digest=original)
    (folder / "model.ubj").write_bytes(b"{}")
    with pytest.raises(IntegrityError, match=r"model\.ubj in .* does not match its manifest"):
        models.load_folder(folder)


def test_a_failed_log_is_marked_failed(ctx: Context) -> None:
    X, y = _data()
    model = MAKERS["sklearn"](X, y)
    wrong = ModelSignature(tuple(ColumnSpec(c, "string") for c in COLUMNS))
    with ll.start_run(experiment="models") as run, pytest.raises(InvalidInput, match="'age'"):
        run.log_model(model, "model", input_example=X.head(3), signature=wrong)
    [failed] = registry_logged_models.search_logged_models(ctx, source_run_id=run.id)
    assert failed.status == "FAILED" and failed.manifest_digest is None
    with ll.start_run(experiment="models") as run2, pytest.raises(InvalidInput, match="flavor"):
        run2.log_model({"not": "a model"}, "model")
    assert registry_logged_models.search_logged_models(ctx, source_run_id=run2.id) == []


@pytest.mark.parametrize("flavor", sorted(MAKERS))
def test_an_example_without_the_fitted_columns_is_refused_naming_them(
    ctx: Context, flavor: str
) -> None:
    X, y = _data()
    model = MAKERS[flavor](X, y)
    with ll.start_run(experiment="models") as run, pytest.raises(InvalidInput) as info:
        run.log_model(model, "model", input_example=X[["age", "income"]].head(3))
    assert info.value.field == "input_example"
    if flavor == "sklearn":  # it knows its columns by name: they are named
        assert "lacks 'visits', 'score'" in str(info.value), info.value
    [failed] = registry_logged_models.search_logged_models(ctx, source_run_id=run.id)
    assert failed.status == "FAILED"


def test_a_model_logged_without_example_loads_unvalidated(ctx: Context) -> None:
    X, y = _data()
    model = MAKERS["sklearn"](X, y)
    with ll.start_run(experiment="models") as run:
        logged = run.log_model(model, "bare")
    assert logged.signature is None
    loaded = models.load_logged_model(ctx, logged, ref="bare")
    assert loaded.signature is None
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


SHUFFLED = ["score", "age", "visits", "income"]


@pytest.mark.parametrize("flavor", sorted(MAKERS), ids=str)
def test_the_input_columns_come_from_the_signature_else_from_the_fit_else_none(
    ctx: Context, flavor: str
) -> None:
    # One answer to "which columns does this model take" for batch scoring and the gate:
    # a model logged without an example was given every column of the table, so an id
    # column or another column order failed (or, for a booster, was silently misread).
    X, y = _data()
    fitted = MAKERS[flavor](X, y)
    with ll.start_run(experiment="models") as run:
        with_example = run.log_model(fitted, "with", input_example=X[COLUMNS].head(5))
        by_names = run.log_model(fitted, "names")
        by_position = run.log_model(MAKERS[flavor](X.to_numpy(), y), "array")
    loaded = {
        logged.name: models.load_logged_model(ctx, logged, ref=logged.name)
        for logged in (with_example, by_names, by_position)
    }
    assert loaded["with"].input_columns == COLUMNS
    assert loaded["names"].signature is None and loaded["names"].input_columns == COLUMNS
    assert loaded["array"].input_columns is None  # nothing records its columns
    # ... but its library records how many there are: the model server takes its rows by
    # position only, as rows with names would be scored in the order sent.
    assert {k: m.input_width for k, m in loaded.items()} == dict.fromkeys(loaded, len(COLUMNS))
    table = X[SHUFFLED].assign(id=range(len(X)))
    model = loaded["names"]
    picked = model.select_inputs(list(table.columns))
    assert picked == COLUMNS
    np.testing.assert_array_equal(model.predict(table[picked]), fitted.predict(X))
    assert loaded["array"].select_inputs(list(table.columns)) is None
    with pytest.raises(InvalidInput, match="missing column 'visits'") as e:
        model.select_inputs(["id", "age", "income", "score"])
    assert e.value.field == "visits"
    assert {m.task for m in loaded.values()} == {"classification"}


def test_the_task_is_what_the_model_says_it_is(ctx: Context) -> None:
    from sklearn.cluster import KMeans
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = _data()
    cases = {
        "classification": [make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)],
        "regression": [
            Ridge().fit(X, X.income),
            xgb.XGBRegressor(n_estimators=2).fit(X, X.income),
            lgb.LGBMRegressor(n_estimators=2, verbose=-1).fit(X, X.income),
        ],
        None: [
            KMeans(n_clusters=2, n_init=1).fit(X),
            xgb.XGBClassifier(n_estimators=2).fit(X, y).get_booster(),
        ],
    }
    for task, fitted in cases.items():
        for native in fitted:
            with ll.start_run(experiment="tasks") as run:
                logged = run.log_model(native, "m", input_example=X.head(3))
            assert models.load_logged_model(ctx, logged, ref="m").task == task, native


def _categorical_data(n: int = 300) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(5)
    X = pd.DataFrame(
        {
            "plan": pd.Categorical(rng.choice(["free", "pro", "team"], n), ["free", "pro", "team"]),
            "age": rng.integers(18, 80, n),
            "code": pd.Categorical(rng.choice([10, 20, 30], n)),
        }
    )
    return X, pd.Series(((X.plan == "pro") | (X.age > 60) | (X.code == 30)).astype(int))


CATEGORICAL_MAKERS = {
    "xgboost": lambda X, y: xgb.XGBClassifier(n_estimators=8, enable_categorical=True).fit(X, y),
    "lightgbm": lambda X, y: lgb.LGBMClassifier(
        n_estimators=8, min_child_samples=5, verbose=-1
    ).fit(X, y),
}


@pytest.mark.parametrize("flavor", sorted(CATEGORICAL_MAKERS), ids=str)
def test_a_model_trained_on_categorical_columns_logs_loads_and_predicts(
    ctx: Context, flavor: str
) -> None:
    """A categorical column was read as text: logging raised the library's ValueError
    ('categorical_feature do not match', 'Invalid columns: plan: str')."""
    X, y = _categorical_data()
    model = CATEGORICAL_MAKERS[flavor](X, y)
    with ll.start_run(experiment="models") as run:
        logged = run.log_model(model, "model", input_example=X.head(5))
    version = ll.registry.register(logged, f"cat-{flavor}")
    plan = version.signature.inputs[0] if version.signature else None
    assert plan is not None and (plan.type, plan.categories) == (
        "category",
        ("free", "pro", "team"),
    )
    loaded = ll.registry.load(version.uri)
    expected = model.predict(X)
    np.testing.assert_array_equal(loaded.predict(X), expected)
    np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X), rtol=1e-6)
    as_json = orjson.loads(orjson.dumps(X.astype({"plan": str, "code": int}).to_dict("records")))
    np.testing.assert_array_equal(loaded.predict(as_json), expected)
    np.testing.assert_array_equal(loaded.predict(as_json[:1]), expected[:1])
    with pytest.raises(InvalidInput, match="expects one of its categories") as info:
        loaded.predict([{**as_json[0], "plan": "gold"}])
    assert info.value.field == "plan"


def test_mlflow_logged_models_are_not_unpickled(ctx: Context) -> None:
    m = registry_logged_models.create_logged_model(
        ctx, name="model", experiment_id="0", source_run_id=None
    )
    prefix = models.artifact_prefix(m)
    artifact_paths.put_bytes(ctx, f"{prefix}/MLmodel", b"flavors:\n  sklearn: {}\n")
    artifact_paths.put_bytes(ctx, f"{prefix}/model.pkl", b"\x80\x04K\x01.")
    m = registry_logged_models.update_logged_model(ctx, m.model_id, status="READY")
    with pytest.raises(InvalidInput, match="logged by the MLflow client") as info:
        models.load_logged_model(ctx, m, ref="models:/mlf/1")
    assert "mlflow.pyfunc.load_model('models:/mlf/1')" in str(info.value)


# -- signatures -----------------------------------------------------------------------------


def test_signature_is_inferred_with_types_and_nullability() -> None:
    df = pd.DataFrame(
        {
            "n": [1, 2, 3],
            "x": [0.5, np.nan, 1.0],
            "flag": [True, False, True],
            "plan": ["a", "b", None],
        }
    )
    sig = infer_signature(df, output=np.array([0, 1, 1]))
    assert [(c.name, c.type, c.nullable) for c in sig.inputs] == [
        ("n", "int", False),
        ("x", "float", True),
        ("flag", "bool", False),
        ("plan", "string", True),
    ]
    assert sig.output is not None and (sig.output.type, sig.output.width) == ("int", 1)
    rows = [{"n": 1, "x": 2.0}, {"n": 2, "x": None}]
    assert [c.nullable for c in infer_signature(rows).inputs] == [False, True]
    assert [c.nullable for c in infer_signature(rows, nullable=["n"]).inputs] == [True, True]
    assert ModelSignature.from_json(sig.to_json()) == sig


SIG = infer_signature([{"age": 30, "income": 1.5, "member": True, "plan": "pro"}])
GOOD = {"age": 30, "income": 1.5, "member": True, "plan": "pro"}


@pytest.mark.parametrize(
    ("rows", "field", "message"),
    [
        ([{k: v for k, v in GOOD.items() if k != "plan"}], "plan", "missing column 'plan'"),
        ([{**GOOD, "extra": 1}], "extra", "unexpected column 'extra'"),
        ([{**GOOD, "income": "high"}], "income", "expects float, got str 'high'"),
        ([{**GOOD, "age": 30.5}], "age", "expects int, got float 30.5"),
        ([{**GOOD, "member": 1}], "member", "expects bool, got int 1"),
        ([{**GOOD, "plan": 3}], "plan", "expects string, got int 3"),
        ([{**GOOD, "income": math.nan}], "income", "NaN/null in row 0"),
        ([GOOD, {**GOOD, "age": None}], "age", "NaN/null in row 1"),
        (pd.DataFrame([GOOD]).drop(columns="age"), "age", "missing column 'age'"),
        (pd.DataFrame([GOOD, {**GOOD, "income": None}]), "income", "NaN/null in row 1"),
        (pd.DataFrame([{**GOOD, "age": "old"}]), "age", "expects int, got str 'old'"),
        (np.zeros((2, 3)), "input", "expected 4 features (age, income, member, plan), got 3"),
        (np.zeros((1, 4)), "plan", "expects string"),
        ("age=3", "input", "must be a DataFrame, a list of row dicts or a numpy array"),
        ([], "input", "the input has no rows"),
    ],
    ids=[
        "missing",
        "extra",
        "str-for-float",
        "fraction-for-int",
        "int-for-bool",
        "int-for-string",
        "nan",
        "none-second-row",
        "df-missing",
        "df-null",
        "df-type",
        "array-count",
        "array-string-column",
        "not-a-table",
        "empty",
    ],
)
def test_signature_violations_name_the_field(rows: Any, field: str, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        SIG.validate(rows)
    assert info.value.field == field
    assert message in info.value.message


def test_signature_accepts_what_it_should() -> None:
    sig = infer_signature([{"a": 1, "b": 2.0}, {"a": 2, "b": None}])
    assert sig.validate([{"a": 3.0, "b": None}]).tolist() == [
        [3.0, pytest.approx(math.nan, nan_ok=True)]
    ]
    assert sig.validate({"b": np.float32(1.5), "a": np.int64(2)}).tolist() == [[2.0, 1.5]]
    assert sig.validate(np.array([1, 2])).shape == (1, 2)
    frame = sig.to_frame([{"a": 1, "b": 2.5}])
    assert list(frame.columns) == ["a", "b"] and frame["a"].dtype == np.int64
    assert SIG.validate([GOOD]).tolist() == [[30, 1.5, True, "pro"]]


def test_one_row_validation_adds_under_100us_to_predict(tmp_path: Path) -> None:
    X, y = _data(200)
    X = X.astype(float)
    model = LogisticRegression(max_iter=500).fit(X, y)
    loaded = models.load_folder(models.save_model(model, tmp_path / "m", input_example=X.head(5)))
    assert loaded.input_kind == "array"
    row = [X.iloc[0].to_dict()]
    raw_model = copy.copy(model)
    del raw_model.feature_names_in_  # the fastest raw call: a bare array, no name check
    arr = X.head(1).to_numpy()

    raws, ours = [], []
    for _ in range(25):  # interleaved, so both see the same machine load; best of each
        raws.append(timeit.timeit(lambda: raw_model.predict(arr), number=100) / 100)
        ours.append(timeit.timeit(lambda: loaded.predict(row), number=100) / 100)
    raw, our = min(raws), min(ours)
    assert our - raw < 100e-6, f"validate+predict {our * 1e6:.1f} us vs raw {raw * 1e6:.1f} us"


def test_load_folder_without_manifest_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match=r"has no loopline-model\.json"):
        models.load_folder(tmp_path)
