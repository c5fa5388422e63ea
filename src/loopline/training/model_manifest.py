"""The manifest of a saved model: ``loopline-model.json``, next to the model's files.

It records the flavor, the class of the saved object, the library versions that made it
(python, numpy and the flavor's libraries), the signature, an input example and, for every
file, its BLAKE3 digest and size. The registry keeps the manifest's own digest, which
anchors the whole chain: manifest -> file digests -> bytes.

Example:
    >>> from loopline.training.flavors import SavedModel
    >>> m = Manifest("sklearn", SavedModel(("model.skops",), "sklearn.X"), {"numpy": "2.0.0"},
    ...              None, None, (ManifestFile("model.skops", "ab" * 32, 10),), 0.0)
    >>> Manifest.from_bytes(m.to_bytes(), "demo").files[0].path
    'model.skops'
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from loopline.core.artifact_paths import clean_path
from loopline.core.artifacts import check_digest
from loopline.errors import InvalidInput
from loopline.training.flavors import SavedModel
from loopline.training.signature import ModelSignature

MANIFEST_FILE = "loopline-model.json"
FORMAT = 1
#: At most this many example rows are kept in the manifest.
MAX_EXAMPLE_ROWS = 20


@dataclass(frozen=True)
class ManifestFile:
    """One file of a saved model: relative path, BLAKE3 digest, size in bytes.

    Example:
        >>> ManifestFile("model.txt", "ab" * 32, 3).size
        3
    """

    path: str
    digest: str
    size: int


@dataclass(frozen=True)
class Manifest:
    """Everything ``loopline-model.json`` says about a saved model.

    Example:
        >>> # Manifest.from_bytes(Path("model/loopline-model.json").read_bytes(), "model").flavor
    """

    flavor: str
    saved: SavedModel
    library_versions: dict[str, str]
    signature: ModelSignature | None
    input_example: list[dict[str, Any]] | None
    files: tuple[ManifestFile, ...]
    created: float
    loopline_version: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data, as written to ``loopline-model.json``.

        Example:
            >>> # manifest.to_dict()["library_versions"]["scikit-learn"]
        """
        return {
            "format": FORMAT,
            "flavor": self.flavor,
            "model_class": self.saved.model_class,
            "options": self.saved.options,
            "library_versions": self.library_versions,
            "signature": None if self.signature is None else self.signature.to_dict(),
            "input_example": self.input_example,
            "files": [{"path": f.path, "digest": f.digest, "size": f.size} for f in self.files],
            "created": self.created,
            "loopline_version": self.loopline_version,
        }

    def to_bytes(self) -> bytes:
        """The manifest as canonical JSON bytes (sorted keys, indented).

        Example:
            >>> # Path("loopline-model.json").write_bytes(manifest.to_bytes())
        """
        return orjson.dumps(
            self.to_dict(),
            option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY,
        )

    @classmethod
    def from_bytes(cls, data: bytes, ref: str) -> Manifest:
        """Parse a manifest; InvalidInput naming ``ref`` when it is malformed.

        Example:
            >>> Manifest.from_bytes(b"{}", "models:/x/1")  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            loopline.errors.InvalidInput: the manifest of models:/x/1 is malformed: ...
        """
        try:
            raw = orjson.loads(data)
            if raw.get("format") != FORMAT:
                raise ValueError(f"format {raw.get('format')!r} is not {FORMAT}")
            files = tuple(
                ManifestFile(
                    clean_path(str(f["path"]), field="files"),
                    check_digest(str(f["digest"])),
                    int(f["size"]),
                )
                for f in raw["files"]
            )
            signature = raw.get("signature")
            return cls(
                flavor=str(raw["flavor"]),
                saved=SavedModel(
                    tuple(f.path for f in files),
                    str(raw["model_class"]),
                    dict(raw.get("options") or {}),
                ),
                library_versions={str(k): str(v) for k, v in dict(raw["library_versions"]).items()},
                signature=None if signature is None else ModelSignature.from_dict(signature),
                input_example=raw.get("input_example"),
                files=files,
                created=float(raw.get("created") or 0.0),
                loopline_version=str(raw.get("loopline_version") or ""),
            )
        except (
            orjson.JSONDecodeError,
            KeyError,
            TypeError,
            ValueError,
            AttributeError,
            InvalidInput,
        ) as exc:
            raise InvalidInput(
                f"the manifest of {ref} is malformed: {exc}",
                field=MANIFEST_FILE,
                hint="log the model again with run.log_model(...)",
            ) from exc


def example_rows(example: Any) -> list[dict[str, Any]] | None:
    """The first :data:`MAX_EXAMPLE_ROWS` rows of an input example as JSON-ready dicts.

    Example:
        >>> example_rows([{"x": float("nan")}])
        [{'x': None}]
    """
    if example is None:
        return None
    if type(example).__name__ == "DataFrame":
        records = example.head(MAX_EXAMPLE_ROWS).to_dict(orient="records")
    elif isinstance(example, list | tuple) and all(isinstance(r, Mapping) for r in example):
        records = [dict(r) for r in example[:MAX_EXAMPLE_ROWS]]
    else:
        raise InvalidInput(
            f"input_example must be a DataFrame or a list of row dicts, "
            f"got {type(example).__name__}",
            field="input_example",
            hint="pass X_train.head(5) or [{'age': 31, 'plan': 'pro'}]",
        )
    return [{str(k): _plain(v) for k, v in row.items()} for row in records]


def _plain(value: Any) -> Any:
    if value is None:
        return None
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()  # numpy scalar -> Python
    if isinstance(value, float) and math.isnan(value):
        return None
    if type(value).__name__ in ("NAType", "NaTType"):
        return None
    return value
