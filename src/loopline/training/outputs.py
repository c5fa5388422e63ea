"""Step outputs as typed, content-addressed artifacts: a safe format for each kind of value.

=============================  ==============  ==========================================
value                          type            bytes
=============================  ==============  ==========================================
None, bool, int, float, str,   ``json``        JSON (NaN and +/-inf round-trip, dict
and lists/dicts of those                       keys in their order)
``pandas.DataFrame``           ``parquet``     Parquet (pyarrow), index kept
``pandas.Series``              ``series``      Parquet of a one-column frame; the name
                                               (text, number, Timestamp, tuple) in its
                                               metadata
``numpy.ndarray`` (not object) ``npy``         ``.npy`` without pickle
a numpy scalar (``float32``..) ``npscalar``    ``.npy`` of a 0-d array: the dtype is kept
``bytes``                      ``bytes``       as is
``bytearray``                  ``bytearray``   as is
scikit-learn, XGBoost and      ``model``       the model flavor's own format (skops,
LightGBM models                                UBJSON, LightGBM text): a JSON manifest
                                               of flavor, class, options and file digests
tuple / list / dict holding    ``tuple``,      a JSON manifest of the items' types and
any of the above               ``list``,       digests (dict keys in their order); each
                               ``dict``        item is its own artifact
=============================  ==============  ==========================================

A stored value loads back as what the step returned: the same types (a ``numpy.float32``
stays one, a ``float`` stays a ``float``) and a dict's keys in the same order - a cache hit
gives the next step exactly what a run would. Nothing is ever pickled: a value of any
other type (a lambda, an open file, an object of your own class) is refused with
:class:`~loopline.errors.InvalidInput` naming the step and the type, with a hint; so is a
subclass of a type above (a namedtuple, an ``OrderedDict``, an ``IntEnum``), which would
come back as the plain type. Models are saved and loaded by
:mod:`loopline.training.flavors` (the registry's flavors), so a step's model loads the
same way as a registered one.

The digest of an output is the BLAKE3 digest of its bytes, so the same value produces the
same digest and downstream steps hit the cache.

Example:
    >>> import tempfile
    >>> from loopline.core.artifacts import open_artifact_store
    >>> store = open_artifact_store(tempfile.mkdtemp())
    >>> out = store_value({"auc": 0.9}, store, step="evaluate")
    >>> out.type, load_value(out, store)
    ('json', {'auc': 0.9})
"""

from __future__ import annotations

import io
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loopline.core.artifacts import ArtifactStore
from loopline.errors import InvalidInput

_COMPOSITES = ("tuple", "list", "dict")
_JSON_SCALARS = (bool, int, float, str)


@dataclass(frozen=True)
class StoredOutput:
    """Where a stored value lives (``digest``) and how to read it back (``type``).

    Example:
        >>> StoredOutput("ab" * 32, "json").type
        'json'
    """

    digest: str
    type: str


def is_json(value: Any) -> bool:
    """Whether ``value`` is made only of JSON types (no tuples, str keys).

    Example:
        >>> is_json({"a": [1, None]}), is_json((1,))
        (True, False)
    """
    if value is None or isinstance(value, bool | int | str):
        return True
    if isinstance(value, float):
        return True
    if type(value) is list:
        return all(is_json(v) for v in value)
    if type(value) is dict:
        return all(isinstance(k, str) and is_json(v) for k, v in value.items())
    return False


def _exact_json(value: Any) -> bool:
    """Whether ``value`` is made only of JSON types themselves, not subclasses (an IntEnum
    or a numpy float64 would load back as a plain int or float), with ``str`` keys."""
    kind = type(value)
    if value is None or kind in _JSON_SCALARS:
        return True
    if kind is list:
        return all(_exact_json(v) for v in value)
    if kind is dict:
        return all(type(k) is str and _exact_json(v) for k, v in value.items())
    return False


def _encode_ordered(value: Any) -> bytes:
    """JSON bytes with dict keys in their order (an output must load back as it was)."""
    return json.dumps(value, separators=(",", ":"), allow_nan=True).encode()


def encode_json(value: Any) -> bytes:
    """Canonical JSON bytes (sorted keys, no spaces); NaN and infinities allowed.

    Example:
        >>> encode_json({"b": 1, "a": [1.5, None]})
        b'{"a":[1.5,null],"b":1}'
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=True).encode()


def _flavor(value: Any) -> Any:
    """The model flavor that saves ``value``, or None (flavors look at the class only)."""
    module = type(value).__module__.split(".", 1)[0]
    if module not in ("sklearn", "xgboost", "lightgbm") and not _has_sklearn_base(value):
        return None
    from loopline.training.flavors import FLAVORS

    for flavor in FLAVORS.values():
        if flavor.handles(value):
            return flavor
    return None


def _has_sklearn_base(value: Any) -> bool:
    if "sklearn" not in sys.modules:
        return False
    from sklearn.base import BaseEstimator

    return isinstance(value, BaseEstimator)


def _store_model(flavor: Any, value: Any, store: ArtifactStore) -> StoredOutput:
    with tempfile.TemporaryDirectory(prefix="loopline-model-") as tmp:
        folder = Path(tmp)
        saved = flavor.save(value, folder)
        files = {rel: store.put_file(folder / rel) for rel in saved.files}
    manifest = {
        "flavor": flavor.name,
        "model_class": saved.model_class,
        "options": saved.options,
        "files": files,
        "libraries": flavor.library_versions(),
    }
    return StoredOutput(store.put_bytes(encode_json(manifest)), "model")


def _load_model(data: bytes, store: ArtifactStore) -> Any:
    from loopline.training.flavors import get_flavor
    from loopline.training.flavors.base import SavedModel

    manifest = json.loads(data)
    flavor = get_flavor(manifest["flavor"])
    files = {rel: store.get_bytes(digest) for rel, digest in manifest["files"].items()}
    saved = SavedModel(tuple(manifest["files"]), manifest["model_class"], manifest["options"])
    return flavor.load(files, saved)


def _unstorable(value: Any, step: str, detail: str = "") -> InvalidInput:
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    return InvalidInput(
        f"step {step!r} returned a {kind}, which has no safe storage format{detail}",
        field=step,
        hint="return a DataFrame, a numpy array, bytes, a JSON value (dict/list/str/number), "
        "a scikit-learn/XGBoost/LightGBM model, or a tuple/list/dict of those; "
        "Loopline never pickles",
    )


def _encode_leaf(value: Any, step: str) -> tuple[str, bytes] | None:
    """(type, bytes) for a value with a format of its own; None for containers to split."""
    if type(value) is bytes:
        return "bytes", value
    if type(value) is bytearray:
        return "bytearray", bytes(value)
    if _exact_json(value):
        return "json", _encode_ordered(value)
    mod = type(value).__module__.split(".", 1)[0]
    if mod == "numpy":
        import numpy as np

        if isinstance(value, np.generic | np.ndarray):
            buf = io.BytesIO()
            try:  # a scalar as a 0-d array: its dtype (float32, int8...) comes back
                np.save(buf, np.asarray(value), allow_pickle=False)
            except ValueError as exc:
                raise _unstorable(value, step, f" (dtype {value.dtype})") from exc
            return ("npscalar" if isinstance(value, np.generic) else "npy"), buf.getvalue()
    if mod == "pandas":
        import pandas as pd

        if isinstance(value, pd.DataFrame):
            return "parquet", _parquet(value, step)
        if isinstance(value, pd.Series):
            name = _SERIES_NAME_KEY, _series_name(value.name, step)
            return "series", _parquet(value.to_frame(name=_SERIES_COLUMN), step, name)
    return None


#: A Series is stored as a one-column frame of this column; its name (any label: a row of
#: ``df.iloc[i]`` is named by its index label, an int or a Timestamp) goes in the file's
#: metadata, since Parquet column names are text.
_SERIES_COLUMN = "__series__"
_SERIES_NAME_KEY = b"loopline.series_name"


def _series_name(name: Any, step: str) -> bytes:
    """A Series name as tagged JSON: None, text, numbers, bools, times and tuples of them."""
    import numpy as np
    import pandas as pd

    def tag(v: Any) -> Any:
        if isinstance(v, np.generic):
            v = v.item()
        if v is None or isinstance(v, str | bool | int | float):
            return ["v", v]
        if isinstance(v, pd.Timestamp):
            return ["ts", v.isoformat()]
        if isinstance(v, tuple):
            return ["tuple", [tag(x) for x in v]]
        raise InvalidInput(
            f"step {step!r} returned a Series named {v!r} ({type(v).__name__}), a name that "
            "cannot be stored",
            field=step,
            hint="rename the Series (series.rename('name')) or return series.to_frame()",
        )

    # allow_nan: a NaN label is a float like any other
    return json.dumps(tag(name), allow_nan=True).encode()


def _series_name_back(data: bytes) -> Any:
    import pandas as pd

    def untag(t: list[Any]) -> Any:
        kind, v = t
        if kind == "ts":
            return pd.Timestamp(v)
        if kind == "tuple":
            return tuple(untag(x) for x in v)
        return v

    return untag(json.loads(data))


def _parquet(frame: Any, step: str, meta: tuple[bytes, bytes] | None = None) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    try:
        if meta is None:
            frame.to_parquet(buf, engine="pyarrow", compression="zstd")
        else:
            table = pa.Table.from_pandas(frame)
            table = table.replace_schema_metadata(
                {**(table.schema.metadata or {}), meta[0]: meta[1]}
            )
            pq.write_table(table, buf, compression="zstd")
    except (pa.ArrowException, ValueError, TypeError) as exc:
        raise InvalidInput(
            f"step {step!r} returned a DataFrame that cannot be stored as Parquet: {exc}",
            field=step,
            hint="give the columns string names and one type each (no mixed object columns)",
        ) from exc
    return buf.getvalue()


def store_value(value: Any, store: ArtifactStore, *, step: str) -> StoredOutput:
    """Store ``value`` in its safe format and return its digest and type.

    Raises :class:`InvalidInput` naming ``step`` and the type when there is no safe format.

    Example:
        >>> import tempfile
        >>> from loopline.core.artifacts import open_artifact_store
        >>> store = open_artifact_store(tempfile.mkdtemp())
        >>> store_value(b"raw", store, step="s").type
        'bytes'
    """
    leaf = _encode_leaf(value, step)
    if leaf is None and (flavor := _flavor(value)) is not None:
        return _store_model(flavor, value, store)
    if leaf is not None:
        kind, data = leaf
        return StoredOutput(store.put_bytes(data), kind)
    if type(value) in (tuple, list):
        items = [store_value(v, store, step=step) for v in value]
        manifest: Any = [[o.type, o.digest] for o in items]
        kind = "tuple" if type(value) is tuple else "list"
    elif type(value) is dict and all(type(k) is str for k in value):
        stored = {k: store_value(v, store, step=step) for k, v in value.items()}
        manifest = {k: [o.type, o.digest] for k, o in stored.items()}
        kind = "dict"
    else:
        raise _subclass(value, step) or _unstorable(value, step, _subclass_detail(value))
    return StoredOutput(store.put_bytes(_encode_ordered(manifest)), kind)


def _subclass_detail(value: Any) -> str:
    """What to add to the refusal of a value that is almost storable."""
    if isinstance(value, memoryview):
        return "; return bytes(value)"
    if isinstance(value, dict):
        keys = sorted({type(k).__name__ for k in value if type(k) is not str})
        if keys:
            return f"; its keys must be str, not {', '.join(keys)}"
    return ""


def _subclass(value: Any, step: str) -> InvalidInput | None:
    """A subclass of a storable type (a namedtuple, an OrderedDict, an IntEnum) is refused:
    it would load back as its base type, so a cache hit would differ from a run."""
    for base in (*_JSON_SCALARS, bytes, tuple, list, dict):
        if isinstance(value, base) and type(value) is not base:
            kind = f"{type(value).__module__}.{type(value).__qualname__}"
            name = base.__name__
            extra = " or value._asdict()" if base is tuple else ""
            return InvalidInput(
                f"step {step!r} returned a {kind}, a subclass of {name}: it would load back "
                f"as a plain {name}, so a cached step would not return what it returned",
                field=step,
                hint=f"return {name}(value){extra}; Loopline stores the built-in types "
                "exactly and never pickles",
            )
    return None


def load_value(output: StoredOutput, store: ArtifactStore) -> Any:
    """Read a stored value back (verified against its digest).

    Example:
        >>> import tempfile
        >>> from loopline.core.artifacts import open_artifact_store
        >>> store = open_artifact_store(tempfile.mkdtemp())
        >>> load_value(store_value((1, "a"), store, step="s"), store)
        (1, 'a')
    """
    data = store.get_bytes(output.digest)
    kind = output.type
    if kind == "json":
        return json.loads(data)
    if kind == "bytes":
        return data
    if kind == "bytearray":
        return bytearray(data)
    if kind in ("npy", "npscalar"):
        import numpy as np

        array = np.load(io.BytesIO(data), allow_pickle=False)
        return array[()] if kind == "npscalar" else array
    if kind in ("parquet", "series"):
        import pandas as pd

        if kind == "parquet":
            return pd.read_parquet(io.BytesIO(data), engine="pyarrow")
        import pyarrow.parquet as pq

        table = pq.read_table(io.BytesIO(data))
        series = table.to_pandas().iloc[:, 0]
        name = (table.schema.metadata or {}).get(_SERIES_NAME_KEY)
        if name is not None:
            return series.rename(_series_name_back(name))
        # stored before the name went to the metadata: a text name, or none
        return series.rename(None) if table.column_names[0] == _SERIES_COLUMN else series
    if kind == "model":
        return _load_model(data, store)
    if kind in _COMPOSITES:
        manifest = json.loads(data)
        if kind == "dict":
            return {k: load_value(StoredOutput(d, t), store) for k, (t, d) in manifest.items()}
        items = [load_value(StoredOutput(d, t), store) for t, d in manifest]
        return tuple(items) if kind == "tuple" else items
    raise InvalidInput(
        f"artifact {output.digest} has unknown output type {kind!r}",
        field="output_type",
        hint="it was written by a newer Loopline; upgrade loopline",
    )


def child(output: StoredOutput, key: str | int, store: ArtifactStore) -> StoredOutput | None:
    """The stored item ``key`` of a tuple/list/dict output, or None for other types.

    Lets ``handle[0]`` of a step that returned a tuple depend on that item's digest only.

    Example:
        >>> import tempfile
        >>> from loopline.core.artifacts import open_artifact_store
        >>> store = open_artifact_store(tempfile.mkdtemp())
        >>> child(store_value((1, b"x"), store, step="s"), 1, store).type
        'bytes'
    """
    if output.type not in _COMPOSITES:
        return None
    manifest = json.loads(store.get_bytes(output.digest))
    try:
        kind, digest = manifest[key]
    except (KeyError, IndexError, TypeError) as exc:
        raise InvalidInput(
            f"the output has no item {key!r}", field="key", hint="check the index or key"
        ) from exc
    return StoredOutput(digest, kind)


def pick(value: Any, path: tuple[str | int, ...]) -> Any:
    """``value[path[0]][path[1]]...``, with an error naming the missing key.

    Example:
        >>> pick({"a": [1, 2]}, ("a", 1))
        2
    """
    for key in path:
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError) as exc:
            raise InvalidInput(
                f"the output has no item {key!r}", field="key", hint="check the index or key"
            ) from exc
    return value
