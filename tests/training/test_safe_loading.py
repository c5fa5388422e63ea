"""Loading a registered model never deserialises bytes the registry did not record, and
skops loads only trusted types: through ``ll.registry.load``, on a local folder and on S3.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

import loopline as ll
from loopline.core.artifacts import LocalArtifactStore, S3ArtifactStore, object_key
from loopline.core.context import Context
from loopline.errors import IntegrityError, InvalidInput
from loopline.training.flavors import get_flavor
from loopline.training.flavors.base import SavedModel
from loopline.training.model_manifest import Manifest


class Tripler(BaseEstimator, TransformerMixin):  # type: ignore[misc]
    """A custom step: not on skops' allow-list, so loading it needs explicit trust."""

    def fit(self, X: Any, y: Any = None) -> Tripler:
        return self

    def transform(self, X: Any) -> Any:
        return np.asarray(X) * 3


def _frame() -> tuple[pd.DataFrame, np.ndarray]:
    X = pd.DataFrame({"a": np.linspace(0, 1, 30), "b": np.linspace(1, 0, 30)})
    return X, (X["a"] * 2 + X["b"]).to_numpy()


@pytest.fixture
def store_ctx(migrated_sqlite_uri: str, artifacts_url: str) -> Iterator[Context]:
    """A context on each artifact store (a local folder and S3)."""
    context = ll.init(uri=migrated_sqlite_uri, artifacts=artifacts_url)
    yield context
    context.close()


@pytest.fixture
def deserialised(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every call of skops' loader (the only way model bytes become objects)."""
    calls: list[Any] = []
    real = skops.io.load

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(skops.io, "load", spy)
    return calls


def _register(model: Any, name: str) -> str:
    X, _ = _frame()
    with ll.start_run(experiment="safe-load") as run:
        logged = run.log_model(model, "model", input_example=X.head(3))
    ll.registry.register(logged, name)
    return str(logged.manifest_digest)


def _tamper(ctx: Context, digest: str) -> None:
    """Flip one byte of the stored object, behind the store's back (as a bad disk would)."""
    store = ctx.artifacts
    if isinstance(store, LocalArtifactStore):
        path = store.local_path(digest)
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.chmod(0o644)
        path.write_bytes(bytes(data))
        return
    assert isinstance(store, S3ArtifactStore)
    key = f"{store.url.removeprefix('s3://')}/{object_key(digest)}"
    data = bytearray(store.fs.cat_file(key))
    data[len(data) // 2] ^= 0xFF
    store.fs.pipe_file(key, bytes(data))


def test_tampered_model_bytes_are_refused_before_deserialising(
    store_ctx: Context, deserialised: list[Any]
) -> None:
    X, y = _frame()
    manifest_digest = _register(LinearRegression().fit(X, y), "churn")
    manifest = Manifest.from_bytes(store_ctx.artifacts.get_bytes(manifest_digest), "t")
    model_digest = next(f.digest for f in manifest.files if f.path == "model.skops")
    assert ll.registry.load("models:/churn/1").predict(X.head(2)) is not None
    deserialised.clear()
    _tamper(store_ctx, model_digest)
    with pytest.raises(IntegrityError, match=r"model\.skops") as info:
        ll.registry.load("models:/churn/1")
    assert "nothing was deserialized" in str(info.value)
    assert deserialised == []


def test_a_tampered_manifest_is_refused(store_ctx: Context, deserialised: list[Any]) -> None:
    X, y = _frame()
    _tamper(store_ctx, _register(LinearRegression().fit(X, y), "churn"))
    deserialised.clear()
    with pytest.raises(IntegrityError):
        ll.registry.load("models:/churn/1")
    assert deserialised == []


def test_a_registered_model_with_a_custom_class_needs_explicit_trust(
    embedded_ctx: Context, deserialised: list[Any]
) -> None:
    X, y = _frame()
    _register(make_pipeline(Tripler(), LinearRegression()).fit(X.to_numpy(), y), "custom")
    deserialised.clear()
    with pytest.raises(InvalidInput, match=f"{__name__}.Tripler") as info:
        ll.registry.load("models:/custom/1")
    assert info.value.field == "trusted_types"
    assert deserialised == []


def test_a_skops_file_calling_os_system_is_refused_whatever_the_manifest_says(
    deserialised: list[Any],
) -> None:
    # Built by hand, not by Loopline: its manifest options claim nothing untrusted.
    evil = make_pipeline(FunctionTransformer(os.system), LinearRegression())
    buffer = io.BytesIO(skops.io.dumps(evil))
    saved = SavedModel(("model.skops",), "sklearn.pipeline.Pipeline", {"untrusted_types": []})
    with pytest.raises(InvalidInput, match=r"\.system") as info:
        get_flavor("sklearn").load({"model.skops": buffer.getvalue()}, saved)
    assert info.value.field == "trusted_types"
    assert deserialised == []
