"""Estimators other than trees loaded from a file: every legitimate kind loads and predicts
as it was saved; a file whose arrays were altered is refused before the model is used.

Each altered file below gives scikit-learn's (or libsvm's, or SciPy's) compiled code a
length, an index or a count that disagrees with the arrays it reads: before these checks
such files loaded without a word, and the audit's reproductions of them crashed the process
(SIGSEGV, SIGABRT, SIGFPE), hung it, or read memory they should not on the first
prediction. None of them is ever predicted here.
"""

from __future__ import annotations

import io
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn._loss.loss import HalfBinomialLoss
from sklearn.cluster import HDBSCAN, BisectingKMeans, KMeans, MiniBatchKMeans
from sklearn.compose import make_column_transformer
from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor
from sklearn.feature_extraction import DictVectorizer, FeatureHasher
from sklearn.feature_extraction.text import CountVectorizer, HashingVectorizer, TfidfVectorizer
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import (
    LogisticRegression,
    Perceptron,
    Ridge,
    SGDClassifier,
    SGDOneClassSVM,
    SGDRegressor,
)
from sklearn.neighbors import (
    KNeighborsClassifier,
    KNeighborsRegressor,
    LocalOutlierFactor,
    NearestNeighbors,
    RadiusNeighborsClassifier,
    RadiusNeighborsRegressor,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    MultiLabelBinarizer,
    OneHotEncoder,
    PolynomialFeatures,
    SplineTransformer,
    StandardScaler,
    TargetEncoder,
)
from sklearn.svm import SVC, SVR, NuSVC, NuSVR, OneClassSVM
from sklearn.tree import DecisionTreeClassifier

from loopline.errors import InvalidInput
from loopline.training.flavors import get_flavor
from loopline.training.flavors.sklearn_flavor import TREE_TYPES

RNG = np.random.default_rng(11)
X = RNG.normal(size=(120, 4))
Y2 = (X[:, 0] > 0).astype(int)
Y3 = np.digitize(X[:, 0], [-0.5, 0.5])
KERNEL = X @ X.T  # a precomputed linear kernel
CODES = np.c_[RNG.choice([0, 1, 2, 3], 120, p=[0.45, 0.45, 0.05, 0.05]), RNG.integers(0, 3, 120)]
WORDS = pd.DataFrame(
    {
        "colour": RNG.choice(["red", "green", "blue", "teal"], 120, p=[0.4, 0.4, 0.15, 0.05]),
        "size": RNG.choice(["s", "m", None], 120),
        "x": X[:, 0],
        "y": X[:, 1],
    }
)
DATES = np.array(["2024-01-01", "NaT", "2024-03-01", "2024-01-01"], dtype="datetime64[D]")[
    :, None
]  # NaT is sorted last, as NaN is
DOCS = [" ".join(RNG.choice(["apple", "banana", "cherry", "plum", "fig"], 4)) for _ in range(60)]
DOC_Y = np.array(["apple" in d for d in DOCS], dtype=int)
LABEL_SETS = [set(RNG.choice(["x", "y", "z", "w"], RNG.integers(0, 4))) for _ in range(40)]
RECORDS = [{"city": str(RNG.choice(["paris", "rome"])), "temp": float(t)} for t in X[:, 0]]
CSR = "scipy.sparse._csr.csr_matrix"
CSC = "scipy.sparse._csc.csc_matrix"
DIA = "scipy.sparse._dia.dia_matrix"


def _quiet(fit: Callable[[], Any]) -> Any:
    """Fit without the FutureWarning scikit-learn 1.9 gives for SVC(probability=True)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return fit()


def _svm(model: Any, data: Any = X, target: Any = Y3) -> Callable[[], Any]:
    return lambda: _quiet(lambda: model.fit(data, target))


def _diagonal_coefficients(offsets: Any = None) -> Any:
    """A logistic regression whose coefficients are kept as a DIA matrix (its own, or one
    with the given diagonals)."""
    model = LogisticRegression().fit(X, Y3)
    if offsets is None:
        model.coef_ = sp.dia_matrix(model.coef_)
    else:
        data = np.ones((len(offsets), X.shape[1]))
        model.coef_ = sp.dia_matrix((data, np.array(offsets)), shape=model.coef_.shape)
    return model


def _used(model: Any, data: Any) -> Any:
    """``model`` after one ``transform``, which leaves a cache in it that is saved too."""
    model.transform(data)
    return model


#: name -> (fit, input, method compared before/after saving, trusted types to load it)
LEGITIMATE: dict[str, tuple[Callable[[], Any], Any, str, tuple[str, ...]]] = {
    "svc-binary": (_svm(SVC(), target=Y2), X, "decision_function", ()),
    "svc-3-classes": (_svm(SVC()), X, "decision_function", ()),
    "svc-linear": (_svm(SVC(kernel="linear")), X, "predict", ()),
    "svc-probability-binary": (
        _svm(SVC(probability=True, random_state=0), target=Y2),
        X,
        "predict_proba",
        (),
    ),
    "svc-probability-3-classes": (
        _svm(SVC(probability=True, random_state=0)),
        X,
        "predict_proba",
        (),
    ),
    "svc-precomputed": (_svm(SVC(kernel="precomputed"), KERNEL), KERNEL, "predict", ()),
    "svc-precomputed-probability": (
        _svm(SVC(kernel="precomputed", probability=True, random_state=0), KERNEL, Y2),
        KERNEL,
        "predict_proba",
        (),
    ),
    "nusvc-probability": (
        _svm(NuSVC(probability=True, random_state=0)),
        X,
        "predict_proba",
        (),
    ),
    "svr": (_svm(SVR(), target=X[:, 1]), X, "predict", ()),
    "svr-no-support-vectors": (_svm(SVR(epsilon=100.0), target=X[:, 1]), X, "predict", ()),
    "svr-precomputed": (_svm(SVR(kernel="precomputed"), KERNEL, X[:, 1]), KERNEL, "predict", ()),
    "nusvr": (_svm(NuSVR(), target=X[:, 1]), X, "predict", ()),
    "one-class-svm": (_svm(OneClassSVM(), target=None), X, "decision_function", ()),
    "one-class-svm-precomputed": (
        _svm(OneClassSVM(kernel="precomputed"), KERNEL, None),
        KERNEL,
        "decision_function",
        (),
    ),
    "svc-sparse": (_svm(SVC(), sp.csr_matrix(X)), sp.csr_matrix(X), "decision_function", (CSR,)),
    "svr-sparse": (
        _svm(SVR(), sp.csr_matrix(X), X[:, 1]),
        sp.csr_matrix(X),
        "predict",
        (CSR,),
    ),
    "logistic-dia-coefficients": (_diagonal_coefficients, X, "predict_proba", (DIA,)),
    "logistic-dia-band-coefficients": (
        lambda: _diagonal_coefficients([-5, -2, -1, 0, 3, 9]),  # -5, 9: outside, skipped
        X,
        "predict_proba",
        (DIA,),
    ),
    "polynomial-degree-2": (lambda: PolynomialFeatures(2).fit(X), X, "transform", ()),
    "polynomial-degree-0": (lambda: PolynomialFeatures(0).fit(X), X, "transform", ()),
    "polynomial-interactions-no-bias-csr": (
        lambda: PolynomialFeatures(3, interaction_only=True, include_bias=False).fit(
            sp.csr_matrix(X)
        ),
        sp.csr_matrix(X),
        "transform",
        (CSR,),
    ),
    "polynomial-interactions-past-the-features": (
        lambda: PolynomialFeatures(9, interaction_only=True).fit(X),
        X,
        "transform",
        (),
    ),
    "polynomial-min-degree-csc": (
        lambda: PolynomialFeatures((2, 4)).fit(sp.csc_matrix(X)),
        sp.csc_matrix(X),
        "transform",
        (CSC,),
    ),
    "polynomial-min-degree-no-bias-ridge": (
        lambda: make_pipeline(PolynomialFeatures((2, 3), include_bias=False), Ridge()).fit(
            X, X[:, 1]
        ),
        X,
        "predict",
        (),
    ),
    "target-encoder-continuous": (
        lambda: TargetEncoder().fit(CODES, X[:, 0]),
        CODES,
        "transform",
        (),
    ),
    "target-encoder-binary-strings": (
        lambda: TargetEncoder().fit(WORDS[["colour", "size"]], Y2),
        WORDS[["colour", "size"]],
        "transform",
        (),
    ),
    "target-encoder-3-classes-logistic": (
        lambda: make_pipeline(TargetEncoder(), LogisticRegression()).fit(CODES, Y3),
        CODES,
        "predict_proba",
        (),
    ),
    "multilabel-binarizer": (
        lambda: MultiLabelBinarizer().fit(LABEL_SETS),
        LABEL_SETS,
        "transform",
        (),
    ),
    "multilabel-binarizer-used-before-saving-sparse": (
        lambda: _used(MultiLabelBinarizer(sparse_output=True).fit(LABEL_SETS), LABEL_SETS),
        LABEL_SETS,
        "transform",
        (),
    ),
    "multilabel-binarizer-given-classes-used": (
        lambda: _used(MultiLabelBinarizer(classes=[3, 1, 2, 0]).fit([[0], [1, 2]]), [[3]]),
        [[0, 3], [1], [2, 1]],
        "transform",
        (),
    ),
    "sgd-classifier-averaged-3-classes": (
        lambda: SGDClassifier(average=True, random_state=0).fit(X, Y3),
        X,
        "decision_function",
        (),
    ),
    "sgd-classifier-averaged-binary-partial-fit": (
        lambda: (
            SGDClassifier(average=True, random_state=0)
            .partial_fit(X[:60], Y2[:60], classes=[0, 1])
            .partial_fit(X[60:], Y2[60:])
        ),
        X,
        "decision_function",
        (),
    ),
    "sgd-classifier-sparsified": (
        lambda: SGDClassifier(random_state=0).fit(X, Y2).sparsify(),
        X,
        "decision_function",
        (CSR,),
    ),
    "sgd-regressor-averaged-partial-fit": (
        lambda: SGDRegressor(average=True, random_state=0).partial_fit(X, X[:, 1]),
        X,
        "predict",
        (),
    ),
    "sgd-one-class-averaged": (
        lambda: SGDOneClassSVM(average=True, random_state=0).fit(X),
        X,
        "decision_function",
        (),
    ),
    "perceptron": (lambda: Perceptron(random_state=0).fit(X, Y3), X, "predict", ()),
    "gradient-boosting-regressor": (
        lambda: GradientBoostingRegressor(n_estimators=5).fit(X, X[:, 1]),
        X,
        "predict",
        (),
    ),
    "gradient-boosting-binary": (
        lambda: GradientBoostingClassifier(n_estimators=5).fit(X, Y2),
        X,
        "predict_proba",
        (),
    ),
    "gradient-boosting-3-classes-zero-init": (
        lambda: GradientBoostingClassifier(n_estimators=5, init="zero").fit(X, Y3),
        X,
        "predict_proba",
        (),
    ),
    "gradient-boosting-3-classes-logistic-init": (
        lambda: GradientBoostingClassifier(n_estimators=5, init=LogisticRegression()).fit(X, Y3),
        X,
        "predict_proba",
        (),
    ),
    "gradient-boosting-early-stopping": (
        lambda: GradientBoostingRegressor(n_estimators=50, n_iter_no_change=2).fit(X, X[:, 1]),
        X,
        "predict",
        (),
    ),
    "one-hot": (lambda: OneHotEncoder().fit(CODES), CODES, "transform", ()),
    "one-hot-drop-first-dense": (
        lambda: OneHotEncoder(drop="first", sparse_output=False).fit(CODES),
        CODES,
        "transform",
        (),
    ),
    "one-hot-infrequent-dropped": (
        lambda: OneHotEncoder(min_frequency=10, drop="first", sparse_output=False).fit(CODES),
        CODES,
        "transform",
        (),
    ),
    "one-hot-max-categories-unknown": (
        lambda: OneHotEncoder(max_categories=2, handle_unknown="infrequent_if_exist").fit(
            CODES[:60]
        ),
        CODES,
        "transform",
        (),
    ),
    "one-hot-strings-missing-if-binary": (
        lambda: OneHotEncoder(drop="if_binary", handle_unknown="ignore", sparse_output=False).fit(
            WORDS[["colour", "size"]]
        ),
        WORDS[["colour", "size"]],
        "transform",
        (),
    ),
    "one-hot-nan-category": (
        lambda: OneHotEncoder(min_frequency=5, sparse_output=False).fit(
            np.where(CODES == 3, np.nan, CODES)
        ),
        np.where(CODES == 3, np.nan, CODES),
        "transform",
        (),
    ),
    "one-hot-dates-missing-last": (
        lambda: OneHotEncoder(sparse_output=False).fit(DATES),
        DATES[[0, 2, 3]],  # scikit-learn itself finds NaT unknown at transform
        "transform",
        (),
    ),
    "column-transformer-one-hot-splines-svc": (
        lambda: make_pipeline(
            make_column_transformer(
                (OneHotEncoder(handle_unknown="ignore"), ["colour", "size"]),
                (SplineTransformer(n_knots=4), ["x", "y"]),
            ),
            SVC(),
        ).fit(WORDS, Y3),
        WORDS,
        "predict",
        (),
    ),
    "dict-vectorizer": (lambda: DictVectorizer().fit(RECORDS), RECORDS, "transform", ()),
    "count-vectorizer-logistic": (
        lambda: make_pipeline(CountVectorizer(), LogisticRegression()).fit(DOCS, DOC_Y),
        DOCS,
        "predict_proba",
        (),
    ),
    "tfidf-bigrams-logistic": (
        lambda: make_pipeline(TfidfVectorizer(ngram_range=(1, 2)), LogisticRegression()).fit(
            DOCS, DOC_Y
        ),
        DOCS,
        "predict_proba",
        (),
    ),
    "hashing-vectorizer-ridge": (
        lambda: make_pipeline(HashingVectorizer(n_features=64), Ridge()).fit(DOCS, DOC_Y),
        DOCS,
        "predict",
        (),
    ),
    "feature-hasher": (
        lambda: FeatureHasher(n_features=16, input_type="string").fit([["a"]]),
        [d.split() for d in DOCS],
        "transform",
        (),
    ),
    "kmeans": (lambda: KMeans(3, n_init=1, random_state=0).fit(X), X, "predict", ()),
    "kmeans-float32": (
        lambda: KMeans(3, n_init=1, random_state=0).fit(X.astype(np.float32)),
        X.astype(np.float32),
        "predict",
        (),
    ),
    "hdbscan-dbscan-clustering": (
        lambda: HDBSCAN(min_cluster_size=5, copy=True).fit(X),
        0.8,  # the cut distance
        "dbscan_clustering",
        (),
    ),
    "hdbscan-with-missing-and-infinite-rows": (
        lambda: HDBSCAN(min_cluster_size=5, copy=True).fit(np.r_[X, [[np.nan] * 4, [np.inf] * 4]]),
        1.5,
        "dbscan_clustering",
        (),
    ),
    "mini-batch-kmeans": (
        lambda: MiniBatchKMeans(3, n_init=1, random_state=0).fit(X),
        X,
        "predict",
        (),
    ),
    "mini-batch-kmeans-partial-fit": (
        lambda: MiniBatchKMeans(3, random_state=0).partial_fit(X[:60]).partial_fit(X[60:]),
        X,
        "predict",
        (),
    ),
    "bisecting-kmeans": (lambda: BisectingKMeans(5, random_state=0).fit(X), X, "predict", ()),
    "bisecting-kmeans-sparse": (
        lambda: BisectingKMeans(4, random_state=0).fit(sp.csr_matrix(X)),
        sp.csr_matrix(X),
        "predict",
        (CSR, "numpy.matrix"),  # the root's centre: the mean of a sparse matrix
    ),
    "scaler-then-kmeans": (
        lambda: make_pipeline(StandardScaler(), KMeans(4, n_init=1, random_state=0)).fit(X),
        X,
        "transform",
        (),
    ),
    "neighbours-brute": (
        lambda: KNeighborsClassifier(algorithm="brute").fit(X, Y3),
        X,
        "predict_proba",
        (),
    ),
    "neighbours-kd-tree": (lambda: KNeighborsClassifier().fit(X, Y3), X, "predict", ()),
    "neighbours-ball-tree-regressor": (
        lambda: KNeighborsRegressor(algorithm="ball_tree").fit(X, X[:, 1]),
        X,
        "predict",
        (),
    ),
    "neighbours-precomputed": (
        lambda: KNeighborsClassifier(metric="precomputed").fit(KERNEL.max() - KERNEL, Y3),
        KERNEL.max() - KERNEL,
        "predict",
        (),
    ),
    "neighbours-two-outputs-string-classes": (
        lambda: KNeighborsClassifier(algorithm="brute").fit(
            X, np.c_[np.array(["a", "b", "c"])[Y3], Y2]
        ),
        X,
        "predict",
        (),
    ),
    "neighbours-mahalanobis": (
        lambda: KNeighborsRegressor(
            algorithm="brute", metric="mahalanobis", metric_params={"VI": np.eye(4)}
        ).fit(X, X[:, 1]),
        X,
        "predict",
        (),
    ),
    "neighbours-sparse": (
        lambda: KNeighborsClassifier().fit(sp.csr_matrix(X), Y3),
        sp.csr_matrix(X),
        "predict",
        (CSR,),
    ),
    "radius-neighbours": (
        lambda: RadiusNeighborsClassifier(radius=2.0, algorithm="brute").fit(X, Y3),
        X[:20],
        "predict_proba",
        (),
    ),
    "radius-neighbours-regressor": (
        lambda: RadiusNeighborsRegressor(radius=2.0).fit(X, X[:, 1]),
        X[:20],
        "predict",
        (),
    ),
    "nearest-neighbours": (lambda: NearestNeighbors(n_neighbors=3).fit(X), X, "kneighbors", ()),
    "local-outlier-factor": (
        lambda: LocalOutlierFactor(novelty=True, algorithm="brute").fit(X),
        X,
        "score_samples",
        (),
    ),
    "splines": (lambda: SplineTransformer().fit(X), X * 1.2, "transform", ()),
    "splines-periodic-sparse": (
        lambda: SplineTransformer(extrapolation="periodic", sparse_output=True).fit(X),
        X * 1.2,
        "transform",
        (),
    ),
    "splines-linear-no-bias-degree-1": (
        lambda: SplineTransformer(degree=1, extrapolation="linear", include_bias=False).fit(X),
        X * 1.2,
        "transform",
        (),
    ),
    "splines-constant-then-ridge": (
        lambda: make_pipeline(
            SplineTransformer(n_knots=7, degree=4, extrapolation="constant"), Ridge()
        ).fit(X, X[:, 1]),
        X * 1.2,
        "predict",
        (),
    ),
}


def _save(model: Any, folder: Path) -> tuple[Any, dict[str, bytes]]:
    flavor = get_flavor("sklearn")
    folder.mkdir()
    saved = flavor.save(model, folder)
    return saved, {rel: (folder / rel).read_bytes() for rel in saved.files}


def _dense(out: Any) -> Any:
    if isinstance(out, tuple):  # kneighbors: distances and indices
        return np.concatenate([np.asarray(o, dtype=float) for o in out], axis=1)
    return out.toarray() if sp.issparse(out) else np.asarray(out)


#: skops builds the root centre of a BisectingKMeans fitted on a sparse matrix (the matrix's
#: mean) as a numpy.matrix, which NumPy warns about
_MATRIX = pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")


@pytest.mark.parametrize(
    "kind",
    [pytest.param(k, marks=_MATRIX) if "sparse" in k else k for k in sorted(LEGITIMATE)],
)
def test_every_kind_of_checked_model_loads_and_predicts_as_saved(kind: str, tmp_path: Path) -> None:
    make, data, method, trusted = LEGITIMATE[kind]
    model = make()
    saved, files = _save(model, tmp_path / "m")
    loaded = get_flavor("sklearn").load(files, saved, trusted_types=list(trusted))
    np.testing.assert_array_equal(
        _dense(getattr(loaded, method)(data)), _dense(getattr(model, method)(data))
    )


# -- altered files ----------------------------------------------------------------------


def _altered(make: Callable[[], Any], change: Callable[[Any], None]) -> Callable[[], Any]:
    def build() -> Any:
        model = make()
        change(model)
        return model

    return build


def _set(**values: Any) -> Callable[[Any], None]:
    def change(model: Any) -> None:
        for name, value in values.items():
            setattr(model, name, value)

    return change


def _gb_eight_trees_a_stage(model: Any) -> None:
    stages = np.empty((model.estimators_.shape[0], 8), dtype=object)
    stages[:, :] = model.estimators_[:, :1]
    model.estimators_ = stages


def _gb_binary_loss_on_three_classes(model: Any) -> None:
    model._loss = HalfBinomialLoss()  # its init predictions are one column, the stages 3


def _gb_classification_tree(model: Any) -> None:
    model.estimators_[1, 0] = DecisionTreeClassifier(max_depth=2).fit(X, Y2)


def _gb_tree_without_values(model: Any) -> None:
    """A tree of the same nodes holding no value (``n_classes`` [0]): the stage loop reads
    one per node anyway, and predicted what lay on the heap (5e240, nan)."""
    old = model.estimators_[1, 0].tree_
    state = old.__getstate__()
    state["values"] = np.zeros((len(state["nodes"]), 1, 0))
    tree = type(old)(old.n_features, np.array([0], dtype=np.intp), 1)
    tree.__setstate__(state)
    model.estimators_[1, 0].tree_ = tree


def _ohe_infrequent_far_away(model: Any) -> None:
    mapping = model._default_to_infrequent_mappings[0].copy()
    mapping[:] = 10**9
    model._default_to_infrequent_mappings[0] = mapping


def _ohe_unsorted(model: Any) -> None:
    model.categories_[0] = model.categories_[0][::-1].copy()


def _vocabulary_far_away(model: Any) -> None:
    model[0].vocabulary_ = dict(model[0].vocabulary_, apple=10**9)


def _vocabulary_twice(model: Any) -> None:
    vocabulary = model[0].vocabulary_
    first, second = sorted(vocabulary)[:2]
    model[0].vocabulary_ = dict(vocabulary, **{second: vocabulary[first]})


def _precomputed_support_far_away(model: Any) -> None:
    support = model.support_.copy()
    support[0] = 10**9
    model.support_ = support


def _support_counts_shifted(model: Any) -> None:
    counts = model._n_support.copy()
    counts[0] += 10**6
    counts[1] -= 10**6  # same sum: scikit-learn's own check passes
    model._n_support = counts


def _sparse_vector_past_the_last_column(model: Any) -> None:
    vectors = model.support_vectors_.copy()
    vectors.indices[0] = 10**6
    model.support_vectors_ = vectors


def _bisecting_centre_wide(model: Any) -> None:
    model._bisecting_tree.left.center = RNG.normal(size=3000)
    model._bisecting_tree.right.center = RNG.normal(size=3000)


def _bisecting_shared_node(model: Any) -> None:
    model._bisecting_tree.right = model._bisecting_tree.left


def _labels_past_the_classes(model: Any) -> None:
    labels = model._y.copy()
    labels[3] = 10**6
    model._y = labels


def _short_vi(model: Any) -> None:
    model.effective_metric_params_ = {"VI": np.eye(1)}
    model.metric_params = {"VI": np.eye(1)}


def _kd_rows_narrow(model: Any) -> None:
    model._fit_X = model._fit_X[:, :2].copy()
    model.n_features_in_ = 2


def _spline_degree(k: int) -> Callable[[Any], None]:
    def change(model: Any) -> None:
        for spline in model.bsplines_:
            spline.k = k

    return change


def _spline_of_degree_2(model: Any) -> None:
    """A sound spline of degree 2 (fewer knots, as many coefficients) in a degree-3 place."""
    spline = model.bsplines_[0]
    spline._t = spline._t[1:-1].copy()
    spline.k = 2


def _spline_short_coefficients(model: Any) -> None:
    for spline in model.bsplines_:
        spline.c = spline.c[:1].copy()


def _spline_function() -> Any:
    """A BSpline used as a FunctionTransformer's function: outside any SplineTransformer."""
    spline = SplineTransformer(n_knots=4).fit(X[:, :1]).bsplines_[0]
    model = make_pipeline(FunctionTransformer(spline), StandardScaler()).fit(X[:, 0])
    spline.k = -5  # after fit, which calls the spline
    return model


def _target_encodings(n: int) -> Callable[[Any], None]:
    def change(model: Any) -> None:
        model.encodings_ = model.encodings_[:n]

    return change


def _linkage_node(field: str, node: int) -> Callable[[Any], None]:
    """Change a child of the last row of an HDBSCAN's single-linkage tree."""

    def change(model: Any) -> None:
        tree = model._single_linkage_tree_.copy()
        tree[field][-1] = node
        model._single_linkage_tree_ = tree

    return change


def _svc(**kw: Any) -> Callable[[], Any]:
    return _svm(SVC(**kw))


#: name -> (build the altered model, the message, trusted types to load it)
ALTERED: dict[str, tuple[Callable[[], Any], str, tuple[str, ...]]] = {
    "gb-eight-trees-a-stage": (
        _altered(
            lambda: GradientBoostingRegressor(n_estimators=2, max_depth=1).fit(X, X[:, 0]),
            _gb_eight_trees_a_stage,
        ),
        r"GradientBoostingRegressor: estimators_ has shape \(2, 8\), not \(stages, 1\)",
        (),
    ),
    "gb-init-narrower-than-the-stages": (
        _altered(
            lambda: GradientBoostingClassifier(n_estimators=2).fit(X, Y3),
            _gb_binary_loss_on_three_classes,
        ),
        r"GradientBoostingClassifier: init_ \(DummyClassifier\) predicts \(1, 1\) for one row, "
        r"not \(1, 3\)",
        (),
    ),
    "gb-classification-tree-in-a-stage": (
        _altered(
            lambda: GradientBoostingRegressor(n_estimators=2).fit(X, X[:, 0]),
            _gb_classification_tree,
        ),
        r"GradientBoostingRegressor: estimators_ item 1 is a DecisionTreeClassifier",
        (),
    ),
    "gb-tree-without-values-trusted-by-type": (  # the tree checks skipped: trusted_types
        _altered(
            lambda: GradientBoostingRegressor(n_estimators=2).fit(X, X[:, 0]),
            _gb_tree_without_values,
        ),
        r"GradientBoostingRegressor: tree 1 has 1 outputs of \[0\] values, not one value",
        tuple(TREE_TYPES),
    ),
    "one-hot-infrequent-mapping-far-away": (
        _altered(
            lambda: OneHotEncoder(sparse_output=False, min_frequency=10).fit(CODES),
            _ohe_infrequent_far_away,
        ),
        r"OneHotEncoder: _default_to_infrequent_mappings\[0\] holds 1000000000, outside \[0, 4\)",
        (),
    ),
    "one-hot-drop-before-the-first": (
        _altered(
            lambda: OneHotEncoder(drop="first").fit(CODES),
            _set(_drop_idx_after_grouping=np.array([-(10**9), 0], dtype=object)),
        ),
        r"OneHotEncoder: _drop_idx_after_grouping\[0\] is -1000000000, not an integer in \[0, 3\]",
        (),
    ),
    "one-hot-more-columns-than-categories": (
        _altered(lambda: OneHotEncoder().fit(CODES), _set(_n_features_outs=[4, 9])),
        r"OneHotEncoder: _n_features_outs is \[4, 9\], its categories give \[4, 3\]",
        (),
    ),
    "one-hot-unsorted-numbers": (
        _altered(lambda: OneHotEncoder().fit(CODES), _ohe_unsorted),
        r"OneHotEncoder: categories_\[0\] is not sorted",
        (),
    ),
    "dict-vectorizer-column-far-away": (
        _altered(
            lambda: DictVectorizer(sparse=False).fit([{"a": 1, "b": 2}]),
            _set(vocabulary_={"a": 10**9, "b": 1}),
        ),
        r"DictVectorizer: vocabulary_ holds 1000000000, outside \[0, 2\)",
        (),
    ),
    "count-vectorizer-column-far-away": (
        _altered(
            lambda: make_pipeline(CountVectorizer(), LogisticRegression()).fit(DOCS, DOC_Y),
            _vocabulary_far_away,
        ),
        r"CountVectorizer: vocabulary_ holds 1000000000, outside \[0, 5\)",
        (),
    ),
    "tfidf-two-terms-one-column": (
        _altered(
            lambda: make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(DOCS, DOC_Y),
            _vocabulary_twice,
        ),
        r"TfidfVectorizer: vocabulary_ gives two terms the same column",
        (),
    ),
    "feature-hasher-zero-features": (
        _altered(
            lambda: FeatureHasher(n_features=8, input_type="string").fit([["a"]]),
            _set(n_features=0),
        ),
        r"FeatureHasher: n_features is 0, not an integer in \[1, 2147483647\]",
        (),
    ),
    "hashing-vectorizer-too-many-features": (
        _altered(
            lambda: make_pipeline(HashingVectorizer(n_features=64), Ridge()).fit(DOCS, DOC_Y),
            lambda m: setattr(m[0], "n_features", 2**40),
        ),
        r"HashingVectorizer: n_features is 1099511627776",
        (),
    ),
    "svc-more-support-indices-than-vectors": (
        _altered(_svc(), _set(support_=np.arange(10**6, dtype=np.int32))),
        r"SVC: support_ has shape \(1000000,\), for \d+ support vectors",
        (),
    ),
    "svc-precomputed-support-far-away": (
        _altered(_svm(SVC(kernel="precomputed"), KERNEL, Y2), _precomputed_support_far_away),
        r"SVC: support_ holds 1000000000, outside \[0, 120\)",
        (),
    ),
    "svc-support-counts-shifted": (
        _altered(_svc(), _support_counts_shifted),
        r"SVC: _n_support \[\d+, -\d+, \d+\] does not split \d+ vectors",
        (),
    ),
    "one-class-svm-three-counts": (
        _altered(_svm(OneClassSVM(), target=None), _set(_n_support=np.array([5, 5, 5], np.int32))),
        r"OneClassSVM: _n_support has shape \(3,\), not \(2,\)",
        (),
    ),
    "svr-no-dual-coefficients": (
        _altered(_svm(SVR(), target=X[:, 0]), _set(_dual_coef_=np.empty((1, 0)))),
        r"SVR: _dual_coef_ has shape \(1, 0\), not \(1, \d+\)",
        (),
    ),
    "nusvc-dual-coefficients-as-integers": (
        _altered(
            _svm(NuSVC()), lambda m: setattr(m, "_dual_coef_", m._dual_coef_.astype(np.int64))
        ),
        r"NuSVC: _dual_coef_ holds int64, not float64",
        (),
    ),
    "svc-one-probability-parameter": (
        _altered(
            _svc(probability=True, random_state=0),
            lambda m: setattr(m, "_probA", m._probA[:1].copy()),
        ),
        r"SVC: _probA and _probB hold 1 and 3 values, not 3 each",
        (),
    ),
    "svc-one-intercept": (
        _altered(_svc(), lambda m: setattr(m, "_intercept_", m._intercept_[:1].copy())),
        r"SVC: _intercept_ has shape \(1,\), not \(3,\)",
        (),
    ),
    "svr-classifier-implementation": (
        _altered(_svm(SVR(), target=X[:, 0]), _set(_impl="c_svc")),
        r"SVR: _impl is 'c_svc', not its class's",
        (),
    ),
    "svc-sparse-column-past-the-end": (
        _altered(_svm(SVC(), sp.csr_matrix(X)), _sparse_vector_past_the_last_column),
        r"SVC: support_vectors_: indices must be < 4",
        (CSR,),
    ),
    "dia-offset-overflowing-the-index-type": (
        lambda: _diagonal_coefficients([0, 2**31 - 1]),
        r"dia_matrix: offsets holds 2147483647, outside \[-2147483640, 2147483641\)",
        (DIA,),
    ),
    "polynomial-more-columns-than-terms": (
        _altered(lambda: PolynomialFeatures(2).fit(X), _set(_n_out_full=4000)),
        r"PolynomialFeatures: _n_out_full is 4000, its 4 features and degree 2 give 15",
        (),
    ),
    "target-encoder-one-encoding-for-two-features": (
        _altered(lambda: TargetEncoder().fit(CODES, X[:, 0]), _target_encodings(1)),
        r"TargetEncoder: encodings_ holds 1 encodings, not 2 \(2 features, 1 per feature\)",
        (),
    ),
    "target-encoder-3-classes-four-encodings": (
        _altered(lambda: TargetEncoder().fit(CODES, Y3), _target_encodings(4)),
        r"TargetEncoder: encodings_ holds 4 encodings, not 6 \(2 features, 3 per feature\)",
        (),
    ),
    "multilabel-binarizer-column-far-away": (
        _altered(
            lambda: MultiLabelBinarizer().fit(LABEL_SETS),
            _set(_cached_dict={"w": 10**9, "x": 1, "y": 2, "z": 3}),
        ),
        r"MultiLabelBinarizer: _cached_dict does not map classes_ to their positions",
        (),
    ),
    "multilabel-binarizer-column-before-the-first": (
        _altered(
            lambda: _used(MultiLabelBinarizer().fit(LABEL_SETS), LABEL_SETS),
            lambda m: m._cached_dict.update(x=-(10**8)),
        ),
        r"MultiLabelBinarizer: _cached_dict does not map classes_ to their positions",
        (),
    ),
    "hdbscan-tree-joins-a-node-far-away": (
        _altered(
            lambda: HDBSCAN(min_cluster_size=5, copy=True).fit(X), _linkage_node("left_node", 10**9)
        ),
        r"HDBSCAN: _single_linkage_tree_ row 118 joins node 1000000000, outside \[0, 238\)",
        (),
    ),
    "sgd-regressor-short-average": (
        _altered(
            lambda: SGDRegressor(average=True, random_state=0).fit(X, X[:, 1]),
            lambda m: setattr(m, "_average_coef", m._average_coef[:1].copy()),
        ),
        r"SGDRegressor: _average_coef has shape \(1,\), coef_ \(4,\)",
        (),
    ),
    "sgd-classifier-short-weights": (
        _altered(
            lambda: SGDClassifier(average=True, random_state=0).fit(X, Y3),
            lambda m: setattr(m, "_standard_coef", m._standard_coef[:, :1].copy()),
        ),
        r"SGDClassifier: _standard_coef has shape \(3, 1\), coef_ \(3, 4\)",
        (),
    ),
    "kmeans-wide-centres": (
        _altered(
            lambda: KMeans(3, n_init=1, random_state=0).fit(X),
            _set(cluster_centers_=RNG.normal(size=(3, 3000))),
        ),
        r"KMeans: cluster_centers_ has shape \(3, 3000\), not \(3, 4\)",
        (),
    ),
    "mini-batch-kmeans-negative-threads": (
        _altered(lambda: MiniBatchKMeans(3, n_init=1).fit(X), _set(_n_threads=-5)),
        r"MiniBatchKMeans: _n_threads is -5",
        (),
    ),
    "mini-batch-kmeans-short-counts": (
        _altered(
            lambda: MiniBatchKMeans(20, n_init=1, random_state=0).partial_fit(X),
            lambda m: setattr(m, "_counts", m._counts[:1].copy()),
        ),
        r"MiniBatchKMeans: _counts has shape \(1,\), not \(20,\)",
        (),
    ),
    "bisecting-kmeans-wide-centre": (
        _altered(lambda: BisectingKMeans(3, random_state=0).fit(X), _bisecting_centre_wide),
        r"BisectingKMeans: a _bisecting_tree centre has shape \(3000,\)",
        (),
    ),
    "bisecting-kmeans-shared-node": (
        _altered(lambda: BisectingKMeans(3, random_state=0).fit(X), _bisecting_shared_node),
        r"BisectingKMeans: _bisecting_tree reaches a node twice",
        (),
    ),
    "neighbours-narrow-rows": (
        _altered(
            lambda: KNeighborsClassifier(3, algorithm="brute").fit(X, Y2),
            lambda m: setattr(m, "_fit_X", m._fit_X[:, :1].copy()),
        ),
        r"KNeighborsClassifier: _fit_X has shape \(120, 1\), not \(120, 4\)",
        (),
    ),
    "neighbours-label-past-the-classes": (
        _altered(
            lambda: KNeighborsClassifier(algorithm="brute").fit(X, Y3), _labels_past_the_classes
        ),
        r"KNeighborsClassifier: _y holds 1000000, outside \[0, 3\)",
        (),
    ),
    "radius-neighbours-short-labels": (
        _altered(
            lambda: RadiusNeighborsClassifier(algorithm="brute").fit(X, Y3),
            lambda m: setattr(m, "_y", m._y[:5].copy()),
        ),
        r"RadiusNeighborsClassifier: _y has shape \(5,\), for 120 rows",
        (),
    ),
    "neighbours-mahalanobis-short-vi": (
        _altered(
            lambda: KNeighborsRegressor(
                algorithm="brute", metric="mahalanobis", metric_params={"VI": np.eye(4)}
            ).fit(X, X[:, 0]),
            _short_vi,
        ),
        r"KNeighborsRegressor: effective_metric_params_\['VI'\] has shape \(1, 1\), not \(4, 4\)",
        (),
    ),
    "local-outlier-factor-more-rows-claimed": (
        _altered(lambda: LocalOutlierFactor(novelty=True).fit(X), _set(n_samples_fit_=500)),
        r"LocalOutlierFactor: _fit_X has shape \(120, 4\), not \(500, 4\)",
        (),
    ),
    "neighbours-kd-tree-rows-narrower-than-the-index": (
        _altered(lambda: KNeighborsClassifier(algorithm="kd_tree").fit(X, Y2), _kd_rows_narrow),
        r"KNeighborsClassifier: _fit_X and its kd_tree index hold different rows",
        (),
    ),
    "splines-negative-degree": (
        _altered(lambda: SplineTransformer(extrapolation="continue").fit(X), _spline_degree(-5)),
        r"SplineTransformer: bsplines_\[0\]: k is -5, not an integer in \[0, \.\.\.\)",
        (),
    ),
    "splines-degree-not-the-transformer's": (
        _altered(lambda: SplineTransformer(n_knots=8).fit(X), _spline_of_degree_2),
        r"SplineTransformer: bsplines_\[0\] has degree 2, the transformer 3",
        (),
    ),
    "splines-short-coefficients": (
        _altered(lambda: SplineTransformer().fit(X), _spline_short_coefficients),
        r"SplineTransformer: bsplines_\[0\]: c has shape \(1, 7\), not \(7, \.\.\.\)",
        (),
    ),
    "bspline-as-a-function": (_spline_function, r"BSpline: k is -5", ()),
}


@pytest.mark.parametrize("kind", sorted(ALTERED))
def test_an_altered_model_is_refused_when_loaded_naming_the_attribute(
    kind: str, tmp_path: Path
) -> None:
    make, message, trusted = ALTERED[kind]
    saved, files = _save(make(), tmp_path / "m")
    with pytest.raises(InvalidInput, match=message) as info:
        get_flavor("sklearn").load(files, saved, trusted_types=list(trusted))
    assert info.value.field == "model.skops"
    assert "do not load it" in (info.value.hint or "")


#: Degrees above what Loopline evaluates: a file altered to hang ``transform``, or a model
#: scikit-learn fitted so (refused alike, with a hint to refit).
TOO_HIGH = {
    "splines-huge-degree": (
        _altered(lambda: SplineTransformer().fit(X), _spline_degree(10**6)),
        r"SplineTransformer: bsplines_\[0\]: k is 1000000, above 100",
    ),
    "polynomial-interactions-of-degree-1e9": (
        _altered(
            lambda: PolynomialFeatures(2, interaction_only=True).fit(X),
            _set(degree=10**9, _max_degree=10**9),
        ),
        r"PolynomialFeatures: _max_degree is 1000000000, above 100",
    ),
    "polynomial-fitted-with-degree-101": (
        lambda: PolynomialFeatures(101).fit(X[:, :1]),
        r"PolynomialFeatures: _max_degree is 101, above 100",
    ),
}


def test_more_threads_than_the_limit_are_refused_with_a_hint_to_refit(tmp_path: Path) -> None:
    """MiniBatchKMeans.partial_fit starts _n_threads OpenMP threads: 100000 crashed the
    process (SIGSEGV), 32768 made libgomp end it."""
    model = MiniBatchKMeans(3, n_init=1).fit(X)
    model._n_threads = 100_000
    saved, files = _save(model, tmp_path / "m")
    with pytest.raises(
        InvalidInput, match=r"MiniBatchKMeans: _n_threads is 100000, above 4096"
    ) as info:
        get_flavor("sklearn").load(files, saved)
    assert info.value.hint == "refit with OMP_NUM_THREADS set to at most 4096"
    model._n_threads = 4096  # a large machine's
    saved, files = _save(model, tmp_path / "ok")
    get_flavor("sklearn").load(files, saved)


@pytest.mark.parametrize("kind", sorted(TOO_HIGH))
def test_a_degree_above_the_limit_is_refused_with_a_hint_to_refit(
    kind: str, tmp_path: Path
) -> None:
    make, message = TOO_HIGH[kind]
    saved, files = _save(make(), tmp_path / "m")
    with pytest.raises(InvalidInput, match=message) as info:
        get_flavor("sklearn").load(files, saved)
    assert info.value.field == "model.skops"
    assert info.value.hint == "refit with a degree of at most 100"


def test_the_checks_ignore_templates_that_were_never_fitted(tmp_path: Path) -> None:
    """A meta-estimator keeps its unfitted template next to the fitted copy: only the
    fitted copy has the arrays that are checked."""
    model = GradientBoostingRegressor(init=make_pipeline(StandardScaler(), SVR()), n_estimators=3)
    model.fit(X, X[:, 1])
    saved, files = _save(model, tmp_path / "m")
    loaded = get_flavor("sklearn").load(files, saved)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_a_dia_matrix_in_a_file_naming_a_trusted_format_is_checked(tmp_path: Path) -> None:
    """skops builds a sparse matrix in whatever format its npz says, not the type the file
    names (and the caller trusts): a file naming a CSR matrix can hold a DIA one."""
    model = LogisticRegression().fit(X, Y3).sparsify()
    saved, files = _save(model, tmp_path / "m")
    far = sp.dia_matrix((np.ones((2, 4)), np.array([0, 2**31 - 1])), shape=(3, 4))
    source, rewritten = io.BytesIO(files["model.skops"]), io.BytesIO()
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(rewritten, "w") as zout:
        for item in zin.infolist():
            body = zin.read(item.filename)
            if item.filename.endswith(".npz"):
                npz = io.BytesIO()
                sp.save_npz(npz, far)
                body = npz.getvalue()
            zout.writestr(item, body)
    files = {"model.skops": rewritten.getvalue()}
    with pytest.raises(InvalidInput, match=r"dia_matrix: offsets holds 2147483647"):
        get_flavor("sklearn").load(files, saved, trusted_types=[CSR])


def test_a_file_an_estimator_refuses_to_rebuild_is_invalid_input(tmp_path: Path) -> None:
    """IsotonicRegression builds its interpolator on load: thresholds of unequal lengths
    made load raise a bare ValueError."""
    model = IsotonicRegression().fit([1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 4.0])
    model.X_thresholds_ = model.X_thresholds_[:2]
    saved, files = _save(model, tmp_path / "m")
    with pytest.raises(InvalidInput, match="could not be loaded: ValueError") as info:
        get_flavor("sklearn").load(files, saved)
    assert info.value.field == "model.skops"
