"""Array checks of scikit-learn's predicting estimators: gradient boosting, SGD linear
models, libsvm models, k-means and HDBSCAN clustering, nearest neighbours.

Their compiled ``predict`` (or ``partial_fit``) reads stored centres, support vectors,
training rows, weights and trees as wide and as long as other stored numbers say, so each
check holds those numbers to what ``fit`` gives. One group of :mod:`.sklearn_arrays`,
apart from the transformers (:mod:`.sklearn_transformer_arrays`).

Example:
    >>> from sklearn.linear_model import SGDClassifier
    >>> check_sgd(SGDClassifier().fit([[0.0], [1.0]], [0, 1]), "SGDClassifier")
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from loopline.errors import InvalidInput
from loopline.training.flavors.sklearn_array_primitives import (
    _F64,
    _FLOATS,
    _array,
    _int,
    _is_int,
    _refuse,
    _width,
    _within,
)
from loopline.training.flavors.sklearn_scipy_arrays import check_sparse_matrix
from loopline.training.flavors.sklearn_trees import FIELD

#: The most OpenMP threads a model may ask for. ``KMeans`` models keep the thread count of
#: the machine that fitted them (``_n_threads``: its CPUs, or OMP_NUM_THREADS), and
#: ``MiniBatchKMeans.partial_fit`` starts that many: 100000 crashed the process (SIGSEGV),
#: 32768 made libgomp end it ("Thread creation failed"), 2**31 - 1 too ("Out of memory").
MAX_THREADS = 4096


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
