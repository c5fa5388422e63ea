"""The flavor boundary: how one family of models is saved, loaded and asked to predict.

Example:
    >>> from loopline.training.flavors import get_flavor
    >>> get_flavor("sklearn").libraries
    ('scikit-learn', 'skops')
"""

from __future__ import annotations

import importlib.metadata
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    from loopline.training.signature import ModelSignature


class LibraryVersionWarning(UserWarning):
    """A model was saved with another version of its library than the one installed.

    Predictions may differ (or loading may fail later); the message names each library,
    the version recorded in the model's manifest and the one installed.
    """


@dataclass(frozen=True)
class SavedModel:
    """What :meth:`Flavor.save` wrote: the files and the facts needed to load them.

    ``files`` are POSIX paths relative to the model folder; ``model_class`` is the
    ``module.QualName`` of the saved object; ``options`` is JSON-ready data the flavor reads
    back in :meth:`Flavor.load` (e.g. the class labels of a classifier). A flavor whose
    loader checks types lists under ``options["untrusted_types"]`` the types it will refuse
    unless the caller trusts them (informative only: the loader checks the bytes again).
    """

    files: tuple[str, ...]
    model_class: str
    options: dict[str, Any] = field(default_factory=dict)


InputKind = Literal["array", "frame"]
#: What a model predicts: a class, or a number.
ModelTask = Literal["classification", "regression"]


@dataclass(frozen=True)
class Predictor:
    """How to call a loaded model.

    ``input_kind`` says what ``predict`` wants: ``"array"`` - a 2-D numpy array in signature
    order (the fast path), or ``"frame"`` - a pandas DataFrame with the signature's
    columns. ``predict_proba`` is None when the model has no class probabilities.
    """

    predict: Callable[[Any], Any]
    predict_proba: Callable[[Any], Any] | None
    input_kind: InputKind = "array"


class Flavor(ABC):
    """A way to save and load one family of models without pickle.

    A subclass must:

    * set ``name`` (recorded in the manifest and the registry) and ``libraries`` (the
      distributions whose installed versions are recorded at save time and compared at
      load time);
    * :meth:`handles` - say whether it saves a given model object, without importing its
      library (look at the class's module), so detection stays cheap;
    * :meth:`save` - write the model into an empty folder in the library's own portable
      format (never pickle) and return a :class:`SavedModel`;
    * :meth:`load` - rebuild the model from **already verified bytes** (``files`` maps each
      relative path of :attr:`SavedModel.files` to its content): it must not read the
      folder again, must not unpickle, and must raise
      :class:`~loopline.errors.IntegrityError` or :class:`~loopline.errors.InvalidInput`
      for content it refuses (naming what it refused);
    * :meth:`predictor` - return a :class:`Predictor` for the loaded model.

    The conformance suite in ``tests/training/test_flavors.py`` runs over every flavor:
    save -> load round trip with equal predictions, files listed exactly, no pickle, refused
    content, detection.
    """

    name: ClassVar[str]
    libraries: ClassVar[tuple[str, ...]]

    @abstractmethod
    def handles(self, model: Any) -> bool:
        """Whether this flavor saves ``model`` (checked without importing the library)."""

    @abstractmethod
    def save(self, model: Any, folder: Path) -> SavedModel:
        """Write ``model`` into the empty ``folder``; return what was written."""

    @abstractmethod
    def load(
        self, files: Mapping[str, bytes], saved: SavedModel, *, trusted_types: Sequence[str] = ()
    ) -> Any:
        """Rebuild the model from verified bytes (``trusted_types``: extra types to accept)."""

    @abstractmethod
    def predictor(
        self,
        model: Any,
        saved: SavedModel,
        signature: ModelSignature | None,
        example: list[dict[str, Any]] | None,
    ) -> Predictor:
        """How to call ``model``; ``example`` rows may be used to probe it once."""

    def fitted_columns(self, model: Any, saved: SavedModel) -> list[str] | None:
        """The column names ``model`` was fitted on, in its order, or None when it was
        fitted on unnamed columns (a bare array). The default reads scikit-learn's
        ``feature_names_in_``, which XGBoost's scikit-learn wrappers keep too.

        Example:
            >>> from loopline.training.flavors import get_flavor
            >>> get_flavor("sklearn").fitted_columns(object(), SavedModel((), "x")) is None
            True
        """
        names = getattr(model, "feature_names_in_", None)
        return None if names is None else [str(n) for n in names]

    def fitted_width(self, model: Any, saved: SavedModel) -> int | None:
        """How many columns ``model`` was fitted on, or None when it does not say. The
        default reads scikit-learn's ``n_features_in_``, which XGBoost's scikit-learn
        wrappers keep too. With :meth:`fitted_columns` None, a known width means a model
        fitted on unnamed columns: only their position says which value is which.

        Example:
            >>> from loopline.training.flavors import get_flavor
            >>> get_flavor("sklearn").fitted_width(object(), SavedModel((), "x")) is None
            True
        """
        width = getattr(model, "n_features_in_", None)
        return width if type(width) is int else None

    def task(self, model: Any, saved: SavedModel) -> ModelTask | None:
        """``classification`` or ``regression`` for a model that says which it is, else
        None (a clusterer, a ranker, a bare booster). The default asks scikit-learn's
        estimator tags, which a Pipeline takes from its last step.

        Example:
            >>> from sklearn.linear_model import LinearRegression
            >>> from loopline.training.flavors import get_flavor
            >>> get_flavor("sklearn").task(LinearRegression(), SavedModel((), "x"))
            'regression'
        """
        if not hasattr(model, "__sklearn_tags__"):  # not an estimator: the tags would raise
            return None
        from sklearn.base import is_classifier, is_regressor

        if is_classifier(model):
            return "classification"
        return "regression" if is_regressor(model) else None

    def library_versions(self) -> dict[str, str]:
        """The installed versions of :attr:`libraries` (``"not installed"`` when absent).

        Example:
            >>> from loopline.training.flavors import get_flavor
            >>> "scikit-learn" in get_flavor("sklearn").library_versions()
            True
        """
        return {dist: installed_version(dist) for dist in self.libraries}


def installed_version(dist: str) -> str:
    """The installed version of distribution ``dist``, or ``"not installed"``.

    Example:
        >>> installed_version("numpy") != "not installed"
        True
    """
    if dist == "python":
        return ".".join(map(str, sys.version_info[:3]))
    # The same import can come from another distribution (xgboost-cpu installs `xgboost`).
    for name in (dist, *_ALTERNATIVE_DISTS.get(dist, ())):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "not installed"


_ALTERNATIVE_DISTS: dict[str, tuple[str, ...]] = {"xgboost": ("xgboost-cpu",)}


def class_path(obj: Any) -> str:
    """``module.QualName`` of an object's class.

    Example:
        >>> class_path(1.5)
        'builtins.float'
    """
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def defined_in(model: Any, package: str) -> bool:
    """Whether ``model``'s class, or one of its bases, comes from top-level ``package``.

    Example:
        >>> defined_in(1.5, "builtins")
        True
    """
    return any(c.__module__.split(".", 1)[0] == package for c in type(model).__mro__)
