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

This module walks the model and hands each object to its check; the checks live by kind
of object: :mod:`.sklearn_predictor_arrays` (gradient boosting, SGD, libsvm, clustering,
nearest neighbours), :mod:`.sklearn_transformer_arrays` (encoders, vectorizers, hashers,
polynomial features, spline transformers) and :mod:`.sklearn_scipy_arrays` (B-splines,
sparse matrices), all built from :mod:`.sklearn_array_primitives`.

Example:
    >>> from sklearn.svm import SVC
    >>> check_arrays(SVC().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1]))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from loopline.training.flavors.sklearn_array_primitives import _fitted, _refuse
from loopline.training.flavors.sklearn_predictor_arrays import (
    check_gradient_boosting,
    check_hdbscan,
    check_kmeans,
    check_libsvm,
    check_neighbors,
    check_sgd,
)
from loopline.training.flavors.sklearn_scipy_arrays import check_bspline, check_sparse_matrix
from loopline.training.flavors.sklearn_transformer_arrays import (
    check_feature_hasher,
    check_multilabel_binarizer,
    check_one_hot_encoder,
    check_polynomial_features,
    check_spline_transformer,
    check_target_encoder,
    check_vocabulary,
)
from loopline.training.flavors.sklearn_trees import walk


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
