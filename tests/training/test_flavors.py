"""Conformance suite run over every model flavor, plus each flavor's own refusals."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import skops.io
import xgboost as xgb
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from loopline.errors import InvalidInput
from loopline.training.flavors import FLAVORS, Flavor, flavor_for, get_flavor
from loopline.training.flavors.base import SavedModel, installed_version
from loopline.training.flavors.sklearn_flavor import ALLOWED_TYPES
from loopline.training.signature import infer_signature

COLUMNS = ["a", "b", "c", "d"]


def _data(n: int = 120) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(7)
    X = pd.DataFrame(rng.random((n, 4)), columns=COLUMNS)
    y = pd.Series((X["a"] + X["b"] > 1.0).astype(int))
    return X, y


@dataclass
class Case:
    """A fitted model, its flavor, and how to ask the original for reference answers."""

    flavor: str
    build: Callable[[pd.DataFrame, pd.Series], Any]
    reference: Callable[[Any, pd.DataFrame], Any]
    proba: Callable[[Any, pd.DataFrame], Any] | None = None


def _predict(m: Any, X: pd.DataFrame) -> Any:
    return m.predict(X)


def _predict_proba(m: Any, X: pd.DataFrame) -> Any:
    return m.predict_proba(X)


def _xgb_booster(X: pd.DataFrame, y: pd.Series) -> Any:
    return xgb.train({"objective": "binary:logistic"}, xgb.DMatrix(X, label=y), 4)


def _lgb_booster(X: pd.DataFrame, y: pd.Series) -> Any:
    return lgb.train({"objective": "regression", "verbose": -1}, lgb.Dataset(X, label=X["c"]), 4)


CASES: dict[str, Case] = {
    "sklearn-logreg-frame": Case(
        "sklearn", lambda X, y: LogisticRegression().fit(X, y), _predict, _predict_proba
    ),
    "sklearn-pipeline-forest": Case(
        "sklearn",
        lambda X, y: make_pipeline(StandardScaler(), RandomForestClassifier(5, random_state=0)).fit(
            X, y
        ),
        _predict,
        _predict_proba,
    ),
    "sklearn-histgb": Case(
        "sklearn",
        lambda X, y: HistGradientBoostingClassifier(max_iter=5).fit(X, y),
        _predict,
        _predict_proba,
    ),
    "sklearn-linreg-array": Case(
        "sklearn",
        lambda X, y: LinearRegression().fit(X.to_numpy(), X["c"].to_numpy()),
        lambda m, X: m.predict(X.to_numpy()),
    ),
    "xgboost-classifier": Case(
        "xgboost",
        lambda X, y: xgb.XGBClassifier(n_estimators=4).fit(X, y),
        _predict,
        _predict_proba,
    ),
    "xgboost-regressor": Case(
        "xgboost", lambda X, y: xgb.XGBRegressor(n_estimators=4).fit(X, X["d"]), _predict
    ),
    "xgboost-booster": Case("xgboost", _xgb_booster, lambda m, X: m.inplace_predict(X.to_numpy())),
    "lightgbm-binary": Case(
        "lightgbm",
        lambda X, y: lgb.LGBMClassifier(n_estimators=4, verbose=-1).fit(X, y),
        _predict,
        _predict_proba,
    ),
    "lightgbm-multiclass": Case(
        "lightgbm",
        lambda X, y: lgb.LGBMClassifier(n_estimators=4, verbose=-1, min_child_samples=5).fit(
            X, (X["a"] * 3).astype(int).map({0: "low", 1: "mid", 2: "high"})
        ),
        _predict,
        _predict_proba,
    ),
    "lightgbm-regressor": Case(
        "lightgbm",
        lambda X, y: lgb.LGBMRegressor(n_estimators=4, verbose=-1).fit(X, X["b"]),
        _predict,
    ),
    "lightgbm-booster": Case("lightgbm", _lgb_booster, lambda m, X: m.predict(X.to_numpy())),
}


# Fitted once per module: the four tests of a case only read the model (save, load, detect),
# and fitting the eleven of them again for each test cost ~0.3 s a test.
@pytest.fixture(scope="module", params=sorted(CASES), ids=str)
def case(request: pytest.FixtureRequest) -> tuple[Case, Any]:
    c = CASES[request.param]
    X, y = _data()
    return c, c.build(X, y)


def _save_and_read(flavor: Flavor, model: Any, folder: Path) -> tuple[SavedModel, dict[str, bytes]]:
    folder.mkdir()
    saved = flavor.save(model, folder)
    files = {rel: (folder / rel).read_bytes() for rel in saved.files}
    return saved, files


def test_every_flavor_is_covered_by_a_case() -> None:
    assert {c.flavor for c in CASES.values()} == set(FLAVORS)


def test_detection_picks_the_flavor(case: tuple[Case, Any]) -> None:
    c, model = case
    assert flavor_for(model).name == c.flavor
    assert get_flavor(c.flavor) is FLAVORS[c.flavor]


def test_save_writes_exactly_its_files_and_no_pickle(
    case: tuple[Case, Any], tmp_path: Path
) -> None:
    c, model = case
    saved, files = _save_and_read(get_flavor(c.flavor), model, tmp_path / "m")
    on_disk = sorted(
        p.relative_to(tmp_path / "m").as_posix() for p in (tmp_path / "m").rglob("*") if p.is_file()
    )
    assert on_disk == sorted(saved.files)
    assert saved.files
    for rel, data in files.items():
        assert not data.startswith(b"\x80"), f"{rel} looks like a pickle"
    assert saved.model_class.rsplit(".", 1)[-1] == type(model).__name__


def test_round_trip_predicts_the_same(case: tuple[Case, Any], tmp_path: Path) -> None:
    c, model = case
    flavor = get_flavor(c.flavor)
    X, _ = _data(40)
    saved, files = _save_and_read(flavor, model, tmp_path / "m")
    loaded = flavor.load(files, saved)
    signature = infer_signature(X.head(5))
    example = X.head(5).to_dict(orient="records")
    predictor = flavor.predictor(loaded, saved, signature, example)
    given = signature.validate(X) if predictor.input_kind == "array" else signature.to_frame(X)
    np.testing.assert_array_equal(
        np.asarray(predictor.predict(given)), np.asarray(c.reference(model, X))
    )
    if c.proba is None:
        assert predictor.predict_proba is None
    else:
        assert predictor.predict_proba is not None
        np.testing.assert_allclose(predictor.predict_proba(given), c.proba(model, X), rtol=1e-12)


def test_load_refuses_garbage_naming_the_file(case: tuple[Case, Any], tmp_path: Path) -> None:
    c, model = case
    flavor = get_flavor(c.flavor)
    saved, files = _save_and_read(flavor, model, tmp_path / "m")
    garbage = {rel: b"\x00not a model\xff" * 8 for rel in files}
    with pytest.raises(InvalidInput) as info:
        flavor.load(garbage, saved)
    assert saved.files[0] in str(info.value)


def test_library_versions_are_the_installed_ones(case: tuple[Case, Any]) -> None:
    c, _ = case
    versions = get_flavor(c.flavor).library_versions()
    assert set(versions) == set(get_flavor(c.flavor).libraries)
    assert all(v == installed_version(k) != "not installed" for k, v in versions.items())


def test_no_flavor_for_other_objects() -> None:
    with pytest.raises(InvalidInput, match="no model flavor saves a dict"):
        flavor_for({"weights": [1, 2]})
    with pytest.raises(InvalidInput, match="unknown model flavor 'torch'"):
        get_flavor("torch")


def test_importing_the_flavors_imports_no_model_library() -> None:
    code = (
        "import sys, loopline.training.flavors, loopline.training.models; "
        "print(sorted(m for m in ('sklearn', 'xgboost', 'lightgbm', 'skops') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={**os.environ}
    )
    assert out.stdout.strip() == "[]"


# -- scikit-learn: skops and the allow-list --------------------------------------------------


class Doubler(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """A custom transformer: its type is not on the allow-list."""

    def fit(self, X: Any, y: Any = None) -> Doubler:
        return self

    def transform(self, X: Any) -> Any:
        return np.asarray(X) * 2


def test_allow_list_holds_only_sklearn_numpy_scipy_types() -> None:
    assert all(t.split(".", 1)[0] in ("sklearn", "numpy", "scipy") for t in ALLOWED_TYPES)


def _system_caller() -> Any:
    # Saved, never fitted nor called: loading it would hand os.system to the caller.
    return make_pipeline(FunctionTransformer(os.system), LinearRegression())


def _custom_class() -> Any:
    X, _ = _data(30)
    return make_pipeline(Doubler(), LinearRegression()).fit(X.to_numpy(), X["c"].to_numpy())


@pytest.mark.parametrize(
    ("make", "refused"),
    [(_system_caller, f"{os.system.__module__}.system"), (_custom_class, f"{__name__}.Doubler")],
    ids=["os-system", "custom-class"],
)
def test_untrusted_types_are_refused_before_anything_is_built(
    make: Callable[[], Any], refused: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flavor = get_flavor("sklearn")
    saved, files = _save_and_read(flavor, make(), tmp_path / "m")
    assert refused in saved.options["untrusted_types"]
    built: list[Any] = []
    monkeypatch.setattr(skops.io, "load", lambda *a, **k: built.append(a))
    with pytest.raises(InvalidInput, match=refused.replace(".", r"\.")) as info:
        flavor.load(files, saved)
    assert info.value.field == "trusted_types"
    assert built == []


def test_an_explicitly_trusted_type_loads(tmp_path: Path) -> None:
    X, _ = _data(30)
    model = _custom_class()
    flavor = get_flavor("sklearn")
    saved, files = _save_and_read(flavor, model, tmp_path / "m")
    loaded = flavor.load(files, saved, trusted_types=[f"{__name__}.Doubler"])
    np.testing.assert_allclose(loaded.predict(X.to_numpy()), model.predict(X.to_numpy()))


def test_a_dataframe_model_takes_the_array_fast_path_only_when_it_is_exact(
    tmp_path: Path,
) -> None:
    from sklearn.compose import ColumnTransformer

    X, y = _data(60)
    flavor = get_flavor("sklearn")
    signature = infer_signature(X.head(3))
    example = X.head(3).to_dict(orient="records")
    plain = LogisticRegression().fit(X, y)
    by_name = make_pipeline(
        ColumnTransformer([("scale", StandardScaler(), ["b", "a"])], remainder="drop"),
        LogisticRegression(),
    ).fit(X, y)
    kinds = {}
    for label, model in (("plain", plain), ("by_name", by_name)):
        saved, files = _save_and_read(flavor, model, tmp_path / label)
        predictor = flavor.predictor(flavor.load(files, saved), saved, signature, example)
        kinds[label] = predictor.input_kind
        given = signature.validate(X) if predictor.input_kind == "array" else signature.to_frame(X)
        np.testing.assert_array_equal(predictor.predict(given), model.predict(X))
    assert kinds == {"plain": "array", "by_name": "frame"}
    assert "feature_names_in_" in vars(plain)  # the caller's model is left as it was


def test_a_signature_in_another_column_order_is_reordered_for_the_model(tmp_path: Path) -> None:
    X, y = _data(60)
    model = LogisticRegression().fit(X, y)
    flavor = get_flavor("sklearn")
    signature = infer_signature(X[["d", "c", "b", "a"]].head(3))
    saved, files = _save_and_read(flavor, model, tmp_path / "m")
    predictor = flavor.predictor(flavor.load(files, saved), saved, signature, None)
    assert predictor.input_kind == "frame" and predictor.predict_proba is not None
    rows = X.to_dict(orient="records")
    np.testing.assert_array_equal(predictor.predict(signature.to_frame(rows)), model.predict(X))
