"""Check the arrays of scikit-learn models other than trees, loaded from a file, before any use.

skops checks that a loaded object is of an allowed type, and ``sklearn_trees`` checks the
node arrays of trees. Many other estimators keep arrays whose lengths and values the
compiled code behind ``predict`` and ``transform`` trusts to agree with each other: libsvm
takes the number of support vectors from one array and reads as many rows of another,
k-means and nearest-neighbour kernels read as many columns of the stored centres or rows as
the input has, gradient boosting writes one column per tree of a stage, SciPy builds sparse
matrices from stored column numbers and evaluates B-splines from stored knots without
checking either. A file with one such number changed loads without a word and then crashes
the process (SIGSEGV, SIGABRT, SIGFPE), hangs it, reads memory it should not, or returns
output columns it never wrote (memory the process freed before, e.g. another request's).

:func:`check_arrays` walks the loaded model and checks, for each estimator below, the
invariants scikit-learn's own ``fit`` establishes (so a model scikit-learn fitted passes):

* ``GradientBoosting*``: ``estimators_`` is (stages, ``n_trees_per_iteration_``) of
  regression trees reading the model's features and holding one value per node, and the
  initial estimator gives as many columns (the one check that runs model code: ``init_``
  on one row of zeros);
* ``OneHotEncoder``: categories, infrequent-category mappings and dropped columns give each
  feature's codes inside its own block of output columns;
* ``TargetEncoder``: one encoding per feature (and class); ``MultiLabelBinarizer``: its
  cache maps each class to its own column;
* ``PolynomialFeatures``: a degree of at most ``MAX_POLYNOMIAL_DEGREE`` and as many output
  columns as terms;
* ``DictVectorizer``, ``CountVectorizer``, ``TfidfVectorizer``: the vocabulary numbers
  each of its columns once; ``FeatureHasher``, ``HashingVectorizer``: 1 <= ``n_features``
  < 2**31;
* ``SGD*``, ``Perceptron``, ``PassiveAggressive*``: the weights ``partial_fit`` continues
  from have the shape of ``coef_``;
* libsvm models (``SVC``, ``NuSVC``, ``SVR``, ``NuSVR``, ``OneClassSVM``): support
  vectors, their counts per class, dual coefficients, intercepts and probability
  parameters agree in length and type, and a precomputed kernel's support indices point
  inside the training kernel;
* ``KMeans``, ``MiniBatchKMeans``, ``BisectingKMeans``: centres (and every node of the
  bisecting tree) have the model's width, mini-batch counts one per centre, and the model
  asks for 1 to ``MAX_THREADS`` OpenMP threads;
  ``HDBSCAN``: each row of the single-linkage tree joins nodes before it;
* nearest-neighbour models: the stored training rows have the model's width and count,
  labels match them, and metric weights the model's width;
* ``SplineTransformer`` and every SciPy ``BSpline`` in the model: degree, knots and
  coefficients agree (and the degree is small: evaluation costs its square per point);
* every CSR/CSC/BSR/COO matrix in the model: its index arrays stay inside its shape; every
  DIA matrix: its diagonal offsets leave room for the shape in their integer type.

A model that breaks one is refused with :class:`~loopline.errors.InvalidInput` naming the
estimator and the attribute. Unlike the tree checks there is no way to skip these through
``trusted_types``: the estimators checked are types skops trusts by itself, and a model
scikit-learn fitted always passes.

Example:
    >>> from sklearn.svm import SVC
    >>> check_arrays(SVC().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1]))
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from loopline.errors import InvalidInput
from loopline.training.flavors.sklearn_trees import FIELD, HINT, walk

#: The largest B-spline degree accepted. Evaluating a spline costs the square of its degree
#: per point, and a file bounds the degree only by the length of its knots: a degree of a
#: million hung ``transform``. scikit-learn's SplineTransformer defaults to 3.
MAX_SPLINE_DEGREE = 100

#: The largest PolynomialFeatures degree accepted. ``transform`` loops over the degrees
#: even past the last one that adds a column (with ``interaction_only``, every degree above
#: the number of features), and on sparse input multiplies a column per factor of every
#: term: a file with degree 10**9 and the 8 columns of 3 features hung the process, and
#: scikit-learn's own degree 1000 on one sparse column took 68 s.
MAX_POLYNOMIAL_DEGREE = 100

#: The most OpenMP threads a model may ask for. ``KMeans`` models keep the thread count of
#: the machine that fitted them (``_n_threads``: its CPUs, or OMP_NUM_THREADS), and
#: ``MiniBatchKMeans.partial_fit`` starts that many: 100000 crashed the process (SIGSEGV),
#: 32768 made libgomp end it ("Thread creation failed"), 2**31 - 1 too ("Out of memory").
MAX_THREADS = 4096

_INT32_MAX = 2**31 - 1
_FLOATS = (np.dtype(np.float64), np.dtype(np.float32))
_F64 = (np.dtype(np.float64),)


def _refuse(message: str) -> InvalidInput:
    return InvalidInput(f"model.skops: {message}", field=FIELD, hint=HINT)


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _degree(value: Any, what: str, name: str, high: int) -> int:
    """A degree: an integer >= 0 (else the file was altered) and at most ``high``, the
    most Loopline evaluates (a model scikit-learn fitted with more is refused too, with a
    hint that says so)."""
    degree = _int(value, what, name, 0)
    if degree > high:
        raise InvalidInput(
            f"model.skops: {what}: {name} is {degree}, above {high}, the highest degree "
            "Loopline loads (evaluating one costs its square, or more, per value)",
            field=FIELD,
            hint=f"refit with a degree of at most {high}",
        )
    return degree


def _int(value: Any, what: str, name: str, low: int, high: int | None = None) -> int:
    """``value`` as an int in ``[low, high]`` (no upper bound when ``high`` is None)."""
    if not _is_int(value) or value < low or (high is not None and value > high):
        bounds = f"[{low}, {high}]" if high is not None else f"[{low}, ...)"
        raise _refuse(f"{what}: {name} is {value!r}, not an integer in {bounds}")
    return int(value)


def _array(
    value: Any,
    what: str,
    name: str,
    *,
    ndim: int | None = None,
    dtypes: Sequence[np.dtype[Any]] | None = None,
    integer: bool = False,
    shape: tuple[int, ...] | None = None,
) -> np.ndarray[Any, Any]:
    """``value`` if it is an array of the given kind; refused otherwise."""
    if not isinstance(value, np.ndarray):
        raise _refuse(f"{what}: {name} is a {type(value).__name__}, not an array")
    if ndim is not None and value.ndim != ndim:
        raise _refuse(f"{what}: {name} has {value.ndim} dimensions, not {ndim}")
    if dtypes is not None and value.dtype not in dtypes:
        wanted = " or ".join(str(d) for d in dtypes)
        raise _refuse(f"{what}: {name} holds {value.dtype}, not {wanted}")
    if integer and value.dtype.kind not in "iu":
        raise _refuse(f"{what}: {name} holds {value.dtype}, not integers")
    if shape is not None and value.shape != shape:
        raise _refuse(f"{what}: {name} has shape {value.shape}, not {shape}")
    return value


def _within(values: Any, low: int, high: int, what: str, name: str) -> None:
    """Every one of the integer ``values`` is in ``[low, high)``."""
    values = np.asarray(values)
    if values.size and (values.min() < low or values.max() >= high):
        bad = values[(values < low) | (values >= high)].flat[0]
        raise _refuse(f"{what}: {name} holds {bad}, outside [{low}, {high})")


def _width(estimator: Any, what: str) -> int:
    return _int(getattr(estimator, "n_features_in_", None), what, "n_features_in_", 1)


def _fitted(estimator: Any) -> bool:
    """Whether scikit-learn counts ``estimator`` as fitted (an attribute ending in ``_``):
    an unfitted one (a search's or an ensemble's template) refuses to predict by itself."""
    return any(k.endswith("_") and not k.startswith("__") for k in vars(estimator))


# -- gradient boosting -------------------------------------------------------------------


def check_gradient_boosting(estimator: Any, what: str) -> None:
    """Check a fitted ``GradientBoostingClassifier`` or ``GradientBoostingRegressor``.

    Its compiled stage loop adds tree ``k`` of each stage to column ``k`` of the initial
    predictions, for every column of ``estimators_``, without a bounds check, reading one
    value per node of each tree (a tree altered to hold none read the heap). So the stages
    must be as wide as ``n_trees_per_iteration_``, and the initial predictions too: their
    width is whatever ``init_`` returns, which no stored number fixes for an arbitrary
    estimator, so this runs ``init_`` on one row of zeros (call it after every other
    check, so that ``init_`` is known sound).

    Example:
        >>> from sklearn.ensemble import GradientBoostingRegressor
        >>> m = GradientBoostingRegressor(n_estimators=2).fit([[0.0], [1.0]] * 5, [0, 1] * 5)
        >>> check_gradient_boosting(m, "GradientBoostingRegressor")
    """
    from sklearn.base import is_classifier
    from sklearn.tree import DecisionTreeRegressor

    width = _width(estimator, what)
    per_stage = _int(estimator.n_trees_per_iteration_, what, "n_trees_per_iteration_", 1)
    expected = 1
    if is_classifier(estimator):
        n_classes = len(estimator.classes_)
        if n_classes < 2 or estimator.n_classes_ != n_classes:
            raise _refuse(f"{what}: n_classes_ is {estimator.n_classes_!r}, classes_ {n_classes}")
        expected = 1 if n_classes == 2 else n_classes  # one tree per class unless binary
    if per_stage != expected:
        raise _refuse(f"{what}: n_trees_per_iteration_ is {per_stage}, not {expected}")
    stages = _array(estimator.estimators_, what, "estimators_", ndim=2)
    if stages.shape[0] < 1 or stages.shape[1] != per_stage:
        raise _refuse(
            f"{what}: estimators_ has shape {stages.shape}, not (stages, {per_stage}): the "
            f"stage loop would write {stages.shape[1]} columns into {per_stage}"
        )
    for i, tree in enumerate(stages.ravel().tolist()):
        if not isinstance(tree, DecisionTreeRegressor):
            raise _refuse(f"{what}: estimators_ item {i} is a {type(tree).__name__}")
        if _width(tree, f"{what}, tree {i}") != width:
            raise _refuse(f"{what}: tree {i} reads {tree.n_features_in_} features, not {width}")
        # the stage loop reads one value per node: a tree of one output and one value
        nodes = tree.tree_
        if nodes.n_outputs != 1 or nodes.max_n_classes != 1:  # then n_classes is [1]
            raise _refuse(
                f"{what}: tree {i} has {int(nodes.n_outputs)} outputs of "
                f"{np.asarray(nodes.n_classes).tolist()} values, not one value per node"
            )
    init = estimator.init_
    if isinstance(init, str) and init == "zero":
        return  # the initial predictions are zeros of n_trees_per_iteration_ columns
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. feature names the probe row lacks
            raw = estimator._raw_predict_init(np.zeros((1, width), dtype=np.float32))
    except Exception as exc:  # not swallowed: a model whose init_ fails is refused
        raise _refuse(
            f"{what}: init_ ({type(init).__name__}) fails on one row: {type(exc).__name__}: {exc}"
        ) from exc
    if np.shape(raw) != (1, per_stage):
        raise _refuse(
            f"{what}: init_ ({type(init).__name__}) predicts {np.shape(raw)} for one row, "
            f"not (1, {per_stage}) as the stages add"
        )


# -- encoders and vectorizers -------------------------------------------------------------


def check_one_hot_encoder(encoder: Any, what: str) -> None:
    """Check a fitted ``OneHotEncoder``: every code it can give a feature lands in that
    feature's block of output columns.

    ``transform`` encodes feature ``i`` as a position in ``categories_[i]`` (a binary search
    for numbers, so they must be sorted), groups infrequent categories through
    ``_default_to_infrequent_mappings[i]``, removes column ``_drop_idx_after_grouping[i]``,
    then builds a sparse matrix with ``_n_features_outs[i]`` columns per feature from those
    codes, which SciPy does not check.

    Example:
        >>> from sklearn.preprocessing import OneHotEncoder
        >>> check_one_hot_encoder(OneHotEncoder(drop="first").fit([["a"], ["b"]]), "enc")
    """
    width = _width(encoder, what)
    categories = encoder.categories_
    if not isinstance(categories, list) or len(categories) != width:
        raise _refuse(f"{what}: categories_ is not a list of {width} arrays")
    sizes = []
    for i, cats in enumerate(categories):
        cats = _array(cats, what, f"categories_[{i}]", ndim=1)
        if cats.size == 0:
            raise _refuse(f"{what}: categories_[{i}] is empty")
        if cats.dtype.kind not in "OUS":
            # numbers are encoded by a binary search: sorted, NaN (if seen) last
            body = cats[:-1] if cats.dtype.kind in "fcmM" and np.isnan(cats[-1]) else cats
            if not (body[1:] > body[:-1]).all():  # also false where NaN is compared
                raise _refuse(f"{what}: categories_[{i}] is not sorted (NaN last)")
        sizes.append(int(cats.size))
    groups = list(sizes)  # output columns per feature before dropping
    enabled = encoder._infrequent_enabled
    if not isinstance(enabled, bool | np.bool_):
        raise _refuse(f"{what}: _infrequent_enabled is {enabled!r}")
    if enabled:
        _check_infrequent(encoder, sizes, groups, what)
    outs = list(groups)
    dropped = encoder._drop_idx_after_grouping
    if dropped is not None:
        dropped = _array(dropped, what, "_drop_idx_after_grouping", shape=(width,))
        for i, drop in enumerate(dropped.tolist()):
            if drop is not None:
                _int(drop, what, f"_drop_idx_after_grouping[{i}]", 0, groups[i] - 1)
                outs[i] -= 1
    _check_public_drop(encoder.drop_idx_, dropped, sizes, what)
    stored = encoder._n_features_outs
    if not isinstance(stored, list) or [int(n) if _is_int(n) else n for n in stored] != outs:
        raise _refuse(f"{what}: _n_features_outs is {stored!r}, its categories give {outs}")


def _check_infrequent(encoder: Any, sizes: list[int], groups: list[int], what: str) -> None:
    """Infrequent categories of feature ``i`` map onto ``groups[i]`` codes (set here)."""
    indices = encoder._infrequent_indices
    mappings = encoder._default_to_infrequent_mappings
    for name, value in (
        ("_infrequent_indices", indices),
        ("_default_to_infrequent_mappings", mappings),
    ):
        if not isinstance(value, list) or len(value) != len(sizes):
            raise _refuse(f"{what}: {name} is not a list of {len(sizes)} entries")
    for i, (rare, mapping) in enumerate(zip(indices, mappings, strict=True)):
        if rare is None and mapping is None:
            continue
        if rare is None or mapping is None:
            raise _refuse(f"{what}: feature {i} has infrequent categories and no mapping")
        rare = _array(rare, what, f"_infrequent_indices[{i}]", ndim=1, integer=True)
        if rare.size == 0:
            raise _refuse(f"{what}: _infrequent_indices[{i}] is empty")
        _within(rare, 0, sizes[i], what, f"_infrequent_indices[{i}]")
        name = f"_default_to_infrequent_mappings[{i}]"
        mapping = _array(mapping, what, name, integer=True, shape=(sizes[i],))
        groups[i] = sizes[i] - rare.size + 1  # the infrequent ones share one column
        _within(mapping, 0, groups[i], what, name)


def _check_public_drop(public: Any, dropped: Any, sizes: list[int], what: str) -> None:
    """``drop_idx_`` names the same features' categories as the internal drop indices."""
    if public is None or dropped is None:
        if public is not dropped:
            raise _refuse(f"{what}: drop_idx_ and _drop_idx_after_grouping disagree")
        return
    public = _array(public, what, "drop_idx_", shape=dropped.shape)
    for i, (outer, inner) in enumerate(zip(public.tolist(), dropped.tolist(), strict=True)):
        if (outer is None) != (inner is None):
            raise _refuse(f"{what}: drop_idx_[{i}] and _drop_idx_after_grouping[{i}] disagree")
        if outer is not None:
            _int(outer, what, f"drop_idx_[{i}]", 0, sizes[i] - 1)


def check_vocabulary(vectorizer: Any, what: str) -> None:
    """Check the vocabulary of a fitted ``DictVectorizer``, ``CountVectorizer`` or
    ``TfidfVectorizer``: it numbers each of its ``len(vocabulary_)`` columns once.

    ``transform`` builds a sparse matrix of that many columns from the numbers it looks up,
    which SciPy does not check; a number outside was written out of bounds by ``toarray()``
    or read out of bounds by the model that follows.

    Example:
        >>> from sklearn.feature_extraction.text import CountVectorizer
        >>> check_vocabulary(CountVectorizer().fit(["red fox", "red hen"]), "CountVectorizer")
    """
    from sklearn.feature_extraction import DictVectorizer

    vocabulary = vectorizer.vocabulary_
    if not isinstance(vocabulary, dict):
        raise _refuse(f"{what}: vocabulary_ is a {type(vocabulary).__name__}, not a dict")
    n = len(vocabulary)
    columns = np.array(list(vocabulary.values()))
    if n and (columns.dtype.kind not in "iu" or columns.shape != (n,)):
        raise _refuse(f"{what}: vocabulary_ maps terms to {columns.dtype}, not column numbers")
    _within(columns, 0, n, what, "vocabulary_")
    if n and np.unique(columns).size != n:
        raise _refuse(f"{what}: vocabulary_ gives two terms the same column")
    if isinstance(vectorizer, DictVectorizer):
        names = vectorizer.feature_names_
        if not isinstance(names, list) or len(names) != n:
            raise _refuse(f"{what}: feature_names_ does not name the {n} columns of vocabulary_")


def check_multilabel_binarizer(binarizer: Any, what: str) -> None:
    """Check the class-to-column cache of a ``MultiLabelBinarizer``, if it holds one.

    The first ``transform`` caches ``classes_`` as a dict of columns, saved with the model,
    and later ones build a sparse matrix of ``len(dict)`` columns from its values, which
    SciPy does not check: a value outside was written out of bounds by the dense output's
    ``toarray()`` (SIGSEGV).

    Example:
        >>> from sklearn.preprocessing import MultiLabelBinarizer
        >>> m = MultiLabelBinarizer().fit([["a", "b"], ["c"]])
        >>> _ = m.transform([["a"]])
        >>> check_multilabel_binarizer(m, "MultiLabelBinarizer")
    """
    cache = getattr(binarizer, "_cached_dict", None)  # a private name
    if cache is None:
        return  # built from classes_ on the first transform
    classes = _array(binarizer.classes_, what, "classes_", ndim=1).tolist()
    if not isinstance(cache, dict) or cache != {c: i for i, c in enumerate(classes)}:
        raise _refuse(f"{what}: _cached_dict does not map classes_ to their positions")


def check_feature_hasher(hasher: Any, what: str) -> None:
    """Check ``n_features`` of a ``FeatureHasher`` or ``HashingVectorizer``: the hashing
    code takes each hash modulo it in C (0 stops the process with SIGFPE), and it is not
    validated again at ``transform``.

    Example:
        >>> from sklearn.feature_extraction import FeatureHasher
        >>> check_feature_hasher(FeatureHasher(n_features=8), "FeatureHasher")
    """
    _int(hasher.n_features, what, "n_features", 1, _INT32_MAX)


def check_target_encoder(encoder: Any, what: str) -> None:
    """Check a fitted ``TargetEncoder``: one encoding per feature (per feature and class for
    a multiclass target).

    ``transform`` allocates its output uninitialised, one column per feature (times the
    classes), and fills one column per encoding: with fewer encodings the rest of the
    output was whatever memory the process had freed there before (another request's data,
    in a server).

    Example:
        >>> from sklearn.preprocessing import TargetEncoder
        >>> m = TargetEncoder().fit([["a"], ["b"]] * 5, [0.0, 1.0] * 5)
        >>> check_target_encoder(m, "TargetEncoder")
    """
    width = _width(encoder, what)
    kind = encoder.target_type_
    if kind not in ("binary", "multiclass", "continuous"):
        raise _refuse(f"{what}: target_type_ is {kind!r}")
    per_feature = len(encoder.classes_) if kind == "multiclass" else 1
    encodings = encoder.encodings_
    if not isinstance(encodings, list) or len(encodings) != width * per_feature:
        n = len(encodings) if isinstance(encodings, list) else type(encodings).__name__
        raise _refuse(
            f"{what}: encodings_ holds {n} encodings, not {width * per_feature} "
            f"({width} features, {per_feature} per feature)"
        )


# -- stochastic gradient descent ---------------------------------------------------------


def check_sgd(estimator: Any, what: str) -> None:
    """Check the weights ``partial_fit`` continues from in a fitted ``SGD*``, ``Perceptron``
    or ``PassiveAggressive*`` model: ``_standard_coef`` and ``_average_coef`` have the shape
    of ``coef_``.

    ``partial_fit`` on a loaded model hands them to the compiled SGD loop, which updates
    as many weights of each as the input has features (``coef_``'s width, which
    ``partial_fit`` checks): a short one corrupted the heap (SIGABRT).

    Example:
        >>> from sklearn.linear_model import SGDRegressor
        >>> m = SGDRegressor(average=True).fit([[0.0], [1.0]], [0.0, 1.0])
        >>> check_sgd(m, "SGDRegressor")
    """
    shape = np.shape(estimator.coef_)  # a sparse matrix once sparsify() ran
    if len(shape) not in (1, 2):
        raise _refuse(f"{what}: coef_ has shape {shape}")
    for name in ("_standard_coef", "_average_coef"):
        weights = getattr(estimator, name, None)  # private names; None: not averaged
        if weights is None:
            continue
        weights = _array(weights, what, name, dtypes=_FLOATS)
        # a binary classifier keeps one row of coef_ as a vector
        if weights.ndim not in (1, 2) or weights.shape[-1:] != shape[-1:]:
            raise _refuse(f"{what}: {name} has shape {weights.shape}, coef_ {shape}")
        if weights.size != math.prod(shape):
            raise _refuse(f"{what}: {name} has shape {weights.shape}, coef_ {shape}")


# -- support vector machines -------------------------------------------------------------


def check_libsvm(estimator: Any, what: str) -> None:
    """Check a fitted libsvm model (``SVC``, ``NuSVC``, ``SVR``, ``NuSVR``, ``OneClassSVM``).

    Each prediction hands libsvm the stored arrays as raw pointers: it takes the number of
    support vectors from ``support_``, the number of classes from ``_n_support``, and reads
    that many rows, coefficients, intercepts and probability parameters from the others
    (with a precomputed kernel, ``support_`` indexes the columns of the input row).

    Example:
        >>> from sklearn.svm import SVR
        >>> check_libsvm(SVR().fit([[0.0], [1.0], [2.0]], [0.0, 1.0, 2.0]), "SVR")
    """
    import scipy.sparse as sp

    for name in ("_impl", "_sparse_kernels"):  # class attributes libsvm's types come from
        if name in vars(estimator) and vars(estimator)[name] != getattr(type(estimator), name):
            raise _refuse(f"{what}: {name} is {vars(estimator)[name]!r}, not its class's")
    classifier = estimator._impl in ("c_svc", "nu_svc")
    kernel = estimator.kernel
    precomputed = callable(kernel) or (isinstance(kernel, str) and kernel == "precomputed")
    sparse = estimator._sparse
    if not isinstance(sparse, bool | np.bool_):
        raise _refuse(f"{what}: _sparse is {sparse!r}")
    if sparse and precomputed:
        # scikit-learn refuses to fit this: libsvm would index the input by stored values
        raise _refuse(f"{what}: a precomputed kernel on sparse support vectors")
    n_class = len(estimator.classes_) if classifier else 2  # libsvm: regression has 2
    if n_class < 2:
        raise _refuse(f"{what}: classes_ has {n_class} classes")
    pairs = n_class * (n_class - 1) // 2

    fit_shape = estimator.shape_fit_
    if (
        not isinstance(fit_shape, tuple)
        or not fit_shape
        or not all(_is_int(n) and n >= 0 for n in fit_shape)
    ):
        raise _refuse(f"{what}: shape_fit_ is {fit_shape!r}")
    n_train = int(fit_shape[0])
    vectors = estimator.support_vectors_
    if sparse:
        if not sp.issparse(vectors) or vectors.format != "csr":
            raise _refuse(f"{what}: support_vectors_ is not a CSR matrix")
        check_sparse_matrix(vectors, f"{what}: support_vectors_")
        n_sv = int(vectors.shape[0])
        if vectors.shape[1] != _width(estimator, what):
            raise _refuse(f"{what}: support_vectors_ has {vectors.shape[1]} columns")
    elif precomputed:
        _array(vectors, what, "support_vectors_", ndim=2, dtypes=_F64)
        n_sv = len(estimator.support_)  # libsvm keeps only the indices
    else:
        width = _width(estimator, what)
        _array(vectors, what, "support_vectors_", ndim=2, dtypes=_F64)
        if vectors.shape[1] != width:
            raise _refuse(f"{what}: support_vectors_ has {vectors.shape[1]} columns, not {width}")
        n_sv = int(vectors.shape[0])
    if not callable(kernel):
        width = _width(estimator, what)
        if len(fit_shape) != 2 or fit_shape[1] != width:
            raise _refuse(f"{what}: shape_fit_ is {fit_shape}, for {width} features")
    support = _array(estimator.support_, what, "support_", dtypes=(np.dtype(np.int32),))
    if support.shape != (n_sv,):
        raise _refuse(f"{what}: support_ has shape {support.shape}, for {n_sv} support vectors")
    _within(support, 0, n_train, what, "support_")  # rows of the training data (kernel)

    counts = _array(estimator._n_support, what, "_n_support", dtypes=(np.dtype(np.int32),))
    if counts.shape != (n_class,):
        raise _refuse(f"{what}: _n_support has shape {counts.shape}, not ({n_class},)")
    if classifier and ((counts < 0).any() or int(counts.sum()) != n_sv):
        raise _refuse(f"{what}: _n_support {counts.tolist()} does not split {n_sv} vectors")

    dual = estimator._dual_coef_
    if sparse:
        data = dual.data if sp.issparse(dual) else None
        if data is None or _array(data, what, "_dual_coef_.data", dtypes=_F64).shape != (
            (n_class - 1) * n_sv,
        ):
            raise _refuse(f"{what}: _dual_coef_ is not {n_class - 1} x {n_sv} coefficients")
    else:
        _array(dual, what, "_dual_coef_", dtypes=_F64, shape=(n_class - 1, n_sv))
        if not dual.flags.c_contiguous:
            raise _refuse(f"{what}: _dual_coef_ is not C-contiguous")
    _array(estimator._intercept_, what, "_intercept_", dtypes=_F64, shape=(pairs,))
    prob_a = _array(estimator._probA, what, "_probA", ndim=1, dtypes=_F64)
    prob_b = _array(estimator._probB, what, "_probB", ndim=1, dtypes=_F64)
    sizes = (prob_a.size, prob_b.size)
    probability = getattr(estimator, "_effective_probability", False)
    if sizes != (pairs, pairs) and (sizes != (0, 0) or probability):
        raise _refuse(
            f"{what}: _probA and _probB hold {sizes[0]} and {sizes[1]} values, not "
            f"{pairs} each" + ("" if probability else " or none")
        )


# -- clustering ---------------------------------------------------------------------------


def check_kmeans(estimator: Any, what: str) -> None:
    """Check a fitted ``KMeans``, ``MiniBatchKMeans`` or ``BisectingKMeans``.

    The compiled assignment kernel reads as many columns of each centre as the input has,
    and runs on ``_n_threads`` OpenMP threads (a negative count aborted the process; one of
    100000 crashed ``MiniBatchKMeans.partial_fit``: at most ``MAX_THREADS``).
    ``MiniBatchKMeans.partial_fit`` adds each centre's weight to ``_counts`` unchecked (a
    short one corrupted the heap: SIGABRT, SIGSEGV).

    Example:
        >>> from sklearn.cluster import KMeans
        >>> check_kmeans(KMeans(2, n_init=1).fit([[0.0], [1.0], [5.0]]), "KMeans")
    """
    width = _width(estimator, what)
    n_clusters = _int(estimator.n_clusters, what, "n_clusters", 1)
    _array(
        estimator.cluster_centers_,
        what,
        "cluster_centers_",
        dtypes=_FLOATS,
        shape=(n_clusters, width),
    )
    threads = _int(estimator._n_threads, what, "_n_threads", 1)
    if threads > MAX_THREADS:
        raise InvalidInput(
            f"model.skops: {what}: _n_threads is {threads}, above {MAX_THREADS}, the most "
            "OpenMP threads Loopline lets a model start",
            field=FIELD,
            hint=f"refit with OMP_NUM_THREADS set to at most {MAX_THREADS}",
        )
    if hasattr(estimator, "_counts"):  # MiniBatchKMeans: partial_fit adds to one per centre
        _array(estimator._counts, what, "_counts", dtypes=_FLOATS, shape=(n_clusters,))
    if hasattr(estimator, "_X_mean"):
        _array(estimator._X_mean, what, "_X_mean", dtypes=_FLOATS, shape=(width,))
    if hasattr(estimator, "_bisecting_tree"):
        _check_bisecting_tree(estimator._bisecting_tree, n_clusters, width, what)


def check_hdbscan(estimator: Any, what: str) -> None:
    """Check the single-linkage tree of a fitted ``HDBSCAN``: row ``i`` joins two of the
    ``n_samples + i`` nodes before it (the samples, then one node per earlier row).

    ``dbscan_clustering`` hands the tree to compiled code that uses each row's nodes as
    positions in a union-find of ``2 * rows + 1`` entries, unchecked: a node of 10**9
    crashed the process (SIGSEGV).

    Example:
        >>> from sklearn.cluster import HDBSCAN
        >>> m = HDBSCAN(min_cluster_size=2, copy=True).fit([[0.0], [0.1], [5.0], [5.1]])
        >>> check_hdbscan(m, "HDBSCAN")
    """
    tree = getattr(estimator, "_single_linkage_tree_", None)  # a private name
    if tree is None:
        return
    tree = _array(tree, what, "_single_linkage_tree_", ndim=1)
    n_samples = tree.size + 1
    limit = n_samples + np.arange(tree.size)  # the nodes before each row
    for field in ("left_node", "right_node"):
        nodes = tree[field]
        if nodes.dtype.kind not in "iu":
            raise _refuse(f"{what}: _single_linkage_tree_ {field} holds {nodes.dtype}")
        bad = np.flatnonzero((nodes < 0) | (nodes >= limit))
        if bad.size:
            row = int(bad[0])
            raise _refuse(
                f"{what}: _single_linkage_tree_ row {row} joins node {int(nodes[row])}, "
                f"outside [0, {int(limit[row])})"
            )


def _check_bisecting_tree(root: Any, n_clusters: int, width: int, what: str) -> None:
    """A binary tree of at most ``2 * n_clusters - 1`` nodes, each centre of the model's
    width (prediction stacks the two children's centres at every inner node)."""
    from sklearn.cluster._bisect_k_means import _BisectingTree

    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if not isinstance(node, _BisectingTree):
            raise _refuse(f"{what}: a node of _bisecting_tree is a {type(node).__name__}")
        if id(node) in seen or len(seen) >= 2 * n_clusters - 1:
            raise _refuse(
                f"{what}: _bisecting_tree reaches a node twice or has more than "
                f"{2 * n_clusters - 1} nodes"
            )
        seen.add(id(node))
        center = _array(node.center, what, "a _bisecting_tree centre", dtypes=_FLOATS)
        if center.shape not in ((width,), (1, width)):  # (1, width): the root, fitted sparse
            raise _refuse(f"{what}: a _bisecting_tree centre has shape {center.shape}")
        if (node.left is None) != (node.right is None):
            raise _refuse(f"{what}: a _bisecting_tree node has one child")
        if node.left is not None:
            stack.extend((node.left, node.right))


# -- nearest neighbours -------------------------------------------------------------------


def check_neighbors(estimator: Any, what: str) -> None:
    """Check a fitted nearest-neighbours model (``KNeighbors*``, ``RadiusNeighbors*``,
    ``NearestNeighbors``, ``LocalOutlierFactor``, ...).

    Brute-force search reads as many columns of each stored row in ``_fit_X`` as the input
    has, and class counting writes at column ``_y[row]`` of a buffer of ``len(classes_)``.
    (``KDTree`` and ``BallTree`` indexes are checked in ``sklearn_trees``.)

    Example:
        >>> from sklearn.neighbors import KNeighborsClassifier
        >>> m = KNeighborsClassifier(1, algorithm="brute").fit([[0.0], [1.0]], [0, 1])
        >>> check_neighbors(m, "KNeighborsClassifier")
    """
    import scipy.sparse as sp

    method = estimator._fit_method
    if method not in ("brute", "kd_tree", "ball_tree"):
        raise _refuse(f"{what}: _fit_method is {method!r}")
    width = _width(estimator, what)
    n = _int(estimator.n_samples_fit_, what, "n_samples_fit_", 1)
    rows = estimator._fit_X
    precomputed = isinstance(estimator.metric, str) and estimator.metric == "precomputed"
    if sp.issparse(rows):
        if method != "brute":
            raise _refuse(f"{what}: sparse _fit_X with a {method} index")
        check_sparse_matrix(rows, f"{what}: _fit_X")
    else:
        _array(rows, what, "_fit_X", ndim=2)
    # with a precomputed metric the rows are training distances: one column per row
    expected = (n, n if precomputed else width)
    if rows.shape != expected or (precomputed and width != n):
        raise _refuse(f"{what}: _fit_X has shape {rows.shape}, not {expected}")
    if method != "brute" and np.asarray(estimator._tree.data).shape != rows.shape:
        raise _refuse(f"{what}: _fit_X and its {method} index hold different rows")
    if not precomputed:
        for name in ("effective_metric_params_", "metric_params"):
            _check_metric_params(getattr(estimator, name, None), width, what, name)
    if hasattr(estimator, "_y"):
        _check_neighbor_labels(estimator, n, what)


def _check_metric_params(params: Any, width: int, what: str, name: str) -> None:
    """Weights a distance reads one per feature (SciPy's Mahalanobis reads VI unchecked)."""
    if not isinstance(params, dict):
        return
    for key, shape in (("w", (width,)), ("V", (width,)), ("VI", (width, width))):
        if key in params and np.shape(params[key]) != shape:
            raise _refuse(f"{what}: {name}[{key!r}] has shape {np.shape(params[key])}, not {shape}")


def _check_neighbor_labels(estimator: Any, n: int, what: str) -> None:
    labels = _array(estimator._y, what, "_y")
    if labels.ndim not in (1, 2) or labels.shape[0] != n:
        raise _refuse(f"{what}: _y has shape {labels.shape}, for {n} rows")
    if not hasattr(estimator, "classes_"):
        return  # a regressor: _y holds targets, not positions
    _array(labels, what, "_y", integer=True)
    if getattr(estimator, "outputs_2d_", False):
        classes = estimator.classes_
        if labels.ndim != 2 or not isinstance(classes, list) or len(classes) != labels.shape[1]:
            raise _refuse(f"{what}: _y has shape {labels.shape} for {len(classes)} outputs")
        for k, known in enumerate(classes):
            _within(labels[:, k], 0, len(known), what, f"_y[:, {k}]")
    else:
        if labels.ndim != 1:
            raise _refuse(f"{what}: _y has shape {labels.shape}, not ({n},)")
        _within(labels, 0, len(estimator.classes_), what, "_y")


# -- polynomial features ------------------------------------------------------------------


def check_polynomial_features(transformer: Any, what: str) -> None:
    """Check a fitted ``PolynomialFeatures``: its degree is at most
    :data:`MAX_POLYNOMIAL_DEGREE`, and ``_n_out_full`` counts the terms it gives.

    On dense input ``transform`` allocates ``_n_out_full`` columns uninitialised and fills
    one per term: with more columns than terms the rest of the output was whatever memory
    the process had freed there before (another request's data, in a server).

    Example:
        >>> from sklearn.preprocessing import PolynomialFeatures
        >>> check_polynomial_features(PolynomialFeatures(3).fit([[0.0, 1.0]]), "poly")
    """
    width = _width(transformer, what)
    degree = transformer.degree
    # private names of scikit-learn >= 1.0; a degree is an int or (min, max)
    default = degree[-1] if isinstance(degree, tuple) and degree else degree
    top = _degree(
        getattr(transformer, "_max_degree", default), what, "_max_degree", MAX_POLYNOMIAL_DEGREE
    )
    interaction_only = transformer.interaction_only
    include_bias = transformer.include_bias
    for name, flag in (("interaction_only", interaction_only), ("include_bias", include_bias)):
        if not isinstance(flag, bool | np.bool_):
            raise _refuse(f"{what}: {name} is {flag!r}")
    if not hasattr(transformer, "_n_out_full"):
        return  # a scikit-learn that sizes its output otherwise
    if interaction_only:  # products of distinct features: i of them, i <= degree
        terms = sum(math.comb(width, i) for i in range(1, min(top, width) + 1))
    else:  # monomials of degree 1 to top in width variables
        terms = math.comb(width + top, top) - 1
    terms += 1 if include_bias else 0
    stored = transformer._n_out_full
    if not _is_int(stored) or stored != terms:
        raise _refuse(
            f"{what}: _n_out_full is {stored!r}, its {width} features and degree {top} give {terms}"
        )


# -- splines ------------------------------------------------------------------------------


def check_bspline(spline: Any, what: str) -> None:
    """Check a SciPy ``BSpline`` as its constructor would (skops does not call it): SciPy's
    compiled evaluation trusts ``k``, the knots ``t`` and the coefficients ``c`` to agree
    (a negative ``k`` aborted the process, short coefficients were read past their end).

    Example:
        >>> from scipy.interpolate import BSpline
        >>> check_bspline(BSpline([0.0, 0.0, 1.0, 1.0], [1.0, 2.0], 1), "spline")
    """
    k = _degree(spline.k, what, "k", MAX_SPLINE_DEGREE)
    knots = _array(spline._t, what, "t", ndim=1, dtypes=_F64)
    n = knots.size - k - 1  # the number of coefficients the knots define
    if n < k + 1:
        raise _refuse(f"{what}: {knots.size} knots for degree {k}, not at least {2 * k + 2}")
    if not np.isfinite(knots).all() or (knots[1:] < knots[:-1]).any():
        raise _refuse(f"{what}: its knots are not finite and non-decreasing")
    if knots[n] <= knots[k]:
        raise _refuse(f"{what}: its knots span an empty interval")
    coefficients = _array(
        spline._c, what, "c", dtypes=(np.dtype(np.float64), np.dtype(np.complex128))
    )
    if coefficients.ndim < 1 or coefficients.shape[0] < n:
        raise _refuse(f"{what}: c has shape {coefficients.shape}, not ({n}, ...)")
    extrapolate = spline.extrapolate
    if not (isinstance(extrapolate, bool | np.bool_) or extrapolate == "periodic"):
        raise _refuse(f"{what}: extrapolate is {extrapolate!r}")
    _int(spline.axis, what, "axis", 0, coefficients.ndim - 1)


def check_spline_transformer(transformer: Any, what: str) -> None:
    """Check a fitted ``SplineTransformer``: one spline per feature, each of the
    transformer's degree, with the knots and coefficients ``fit`` gives it.

    Example:
        >>> from sklearn.preprocessing import SplineTransformer
        >>> m = SplineTransformer(n_knots=3, degree=2).fit([[0.0], [1.0], [2.0]])
        >>> check_spline_transformer(m, "SplineTransformer")
    """
    from scipy.interpolate import BSpline

    width = _width(transformer, what)
    splines = transformer.bsplines_
    if not isinstance(splines, list) or len(splines) != width:
        raise _refuse(f"{what}: bsplines_ is not a list of {width} splines")
    degree = _degree(transformer.degree, what, "degree", MAX_SPLINE_DEGREE)
    total = _int(transformer.n_features_out_, what, "n_features_out_", 0)
    if not transformer.include_bias:
        total += width  # transform drops the last spline of each feature
    if total % width:
        raise _refuse(f"{what}: n_features_out_ is not a whole number of splines per feature")
    per_feature = total // width
    periodic = transformer.extrapolation == "periodic"
    # fit wraps the first `degree` coefficients around for periodic splines
    knots = per_feature + degree + 1 + (degree if periodic else 0)
    extrapolate = transformer.extrapolation in ("periodic", "continue")
    for i, spline in enumerate(splines):
        name = f"{what}: bsplines_[{i}]"
        if not isinstance(spline, BSpline):
            raise _refuse(f"{name} is a {type(spline).__name__}")
        check_bspline(spline, name)
        if spline.k != degree:
            raise _refuse(f"{name} has degree {spline.k}, the transformer {degree}")
        if spline._t.shape != (knots,):
            raise _refuse(f"{name} has {spline._t.size} knots, not {knots}")
        if spline._c.shape != (knots - degree - 1, per_feature):
            raise _refuse(
                f"{name}: c has shape {spline._c.shape}, not {(knots - degree - 1, per_feature)}"
            )
        if spline.extrapolate != extrapolate:
            raise _refuse(f"{name}: extrapolate is {spline.extrapolate!r}, not {extrapolate}")


# -- sparse matrices ----------------------------------------------------------------------


def check_sparse_matrix(matrix: Any, what: str) -> None:
    """Check the structure of a SciPy sparse matrix: SciPy's compiled routines (products,
    ``toarray``, sums) follow its index arrays without bounds checks, and loading it checks
    only their lengths. skops stores CSR, CSC, BSR, COO and DIA (SciPy's ``save_npz``
    formats; LIL and DOK it can neither save nor load), and the file, not the type it names
    and the caller trusts, decides which of them is built.

    Example:
        >>> import scipy.sparse as sp
        >>> check_sparse_matrix(sp.csr_matrix([[0.0, 1.0]]), "matrix")
    """
    if hasattr(matrix, "check_format"):  # the compressed formats: CSR, CSC, BSR
        try:
            matrix.check_format(full_check=True)
        except ValueError as exc:
            raise _refuse(f"{what}: {exc}") from exc
    elif getattr(matrix, "format", None) == "coo":
        n_rows, n_cols = matrix.shape
        _within(matrix.row, 0, n_rows, what, "row")
        _within(matrix.col, 0, n_cols, what, "col")
    elif getattr(matrix, "format", None) == "dia":
        _check_dia(matrix, what)


def _check_dia(matrix: Any, what: str) -> None:
    """No offset of a DIA matrix, added to its number of rows and columns, overflows the
    offsets' integer type.

    SciPy's compiled product with a vector and its ``sum`` compute ``rows + offset`` and
    differences of such bounds in that type: an offset near its limit (2**31 - 1 for the
    int32 offsets of any matrix smaller than that) overflowed it, and the loop then read
    and wrote far outside ``data`` (SIGSEGV). Diagonals merely outside the shape, which
    SciPy accepts and skips, still pass.
    """
    n_rows, n_cols = (_int(n, what, "shape", 0) for n in matrix.shape)
    offsets = _array(matrix.offsets, what, "offsets", ndim=1, integer=True)
    data = _array(matrix.data, what, "data", ndim=2)
    if data.shape[0] != offsets.size:
        raise _refuse(f"{what}: data holds {data.shape[0]} diagonals, offsets {offsets.size}")
    margin = int(np.iinfo(offsets.dtype).max) - n_rows - n_cols
    if margin < 0:
        raise _refuse(f"{what}: shape {matrix.shape} overflows offsets of {offsets.dtype}")
    _within(offsets, -margin, margin + 1, what, "offsets")


# -- the walk -----------------------------------------------------------------------------


def check_arrays(model: Any, found: Sequence[Any] | None = None) -> None:
    """Check every estimator, spline and sparse matrix in ``model`` (``found``: the objects
    :func:`~loopline.training.flavors.sklearn_trees.walk` gives for it, if already listed).

    Raises InvalidInput naming the estimator and the attribute when one would make
    compiled code read or write outside its arrays.

    Example:
        >>> from sklearn.pipeline import make_pipeline
        >>> from sklearn.preprocessing import OneHotEncoder
        >>> from sklearn.svm import SVC
        >>> pipe = make_pipeline(OneHotEncoder(), SVC()).fit([["a"], ["b"]], [0, 1])
        >>> check_arrays(pipe)
    """
    try:
        _check_all(list(walk(model)) if found is None else found)
    except (AttributeError, TypeError, ValueError, IndexError, KeyError) as exc:
        # a part the prediction code needs is missing or of the wrong kind
        raise _refuse(f"an estimator in it is incomplete: {type(exc).__name__}: {exc}") from exc


def _check_all(found: Sequence[Any]) -> None:
    import scipy.sparse as sp
    from scipy.interpolate import BSpline
    from sklearn.cluster import HDBSCAN
    from sklearn.cluster._kmeans import _BaseKMeans
    from sklearn.ensemble._gb import BaseGradientBoosting
    from sklearn.feature_extraction import DictVectorizer, FeatureHasher
    from sklearn.feature_extraction.text import CountVectorizer, HashingVectorizer
    from sklearn.linear_model._stochastic_gradient import BaseSGD
    from sklearn.neighbors._base import NeighborsBase
    from sklearn.preprocessing import (
        MultiLabelBinarizer,
        OneHotEncoder,
        PolynomialFeatures,
        SplineTransformer,
        TargetEncoder,
    )
    from sklearn.svm._base import BaseLibSVM

    # (types, whether one is in use, its check); the first type that matches decides
    checks: list[tuple[Any, Callable[[Any], bool], Callable[[Any, str], None]]] = [
        (BSpline, _always, check_bspline),
        (sp.sparray | sp.spmatrix, _always, check_sparse_matrix),
        # stateless: transform uses n_features without being fitted
        (FeatureHasher | HashingVectorizer, _always, check_feature_hasher),
        # what their predict asks for before it searches
        (NeighborsBase, lambda obj: hasattr(obj, "_fit_method"), check_neighbors),
        (BaseLibSVM, _fitted, check_libsvm),
        (_BaseKMeans, _fitted, check_kmeans),
        (HDBSCAN, _fitted, check_hdbscan),
        (OneHotEncoder, _fitted, check_one_hot_encoder),
        (DictVectorizer | CountVectorizer, _fitted, check_vocabulary),
        (SplineTransformer, _fitted, check_spline_transformer),
        (PolynomialFeatures, _fitted, check_polynomial_features),
        (TargetEncoder, _fitted, check_target_encoder),
        (MultiLabelBinarizer, _fitted, check_multilabel_binarizer),
        (BaseSGD, _fitted, check_sgd),
    ]
    checked = (BaseGradientBoosting, *(kind for kind, _, _ in checks))
    boosting = []
    for obj in found:
        if not isinstance(obj, checked):  # most objects: arrays, trees, other estimators
            continue
        if isinstance(obj, BaseGradientBoosting):
            if _fitted(obj):
                boosting.append(obj)
            continue
        for kind, in_use, check in checks:
            if isinstance(obj, kind):
                if in_use(obj):
                    check(obj, type(obj).__name__)
                break
    # last: this check runs init_, which has passed its own checks by then
    for obj in boosting:
        check_gradient_boosting(obj, type(obj).__name__)


def _always(obj: Any) -> bool:
    return True
