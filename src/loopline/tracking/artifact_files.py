"""Turning what a user logs as an artifact into bytes or files: folders, dicts, figures.

Example:
    >>> encode_dict({"a": 1}, "config.json")
    b'{\\n  "a": 1\\n}'
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import orjson

from loopline.errors import InvalidInput
from loopline.tracking.validation import check_artifact_path

#: Image formats :func:`render_figure` writes, chosen by the file's extension.
FIGURE_FORMATS = ("png", "svg", "pdf")


def collect_files(path: str | Path, artifact_path: str | None) -> list[tuple[Path, str]]:
    """The files to store for ``path`` and the artifact path each gets inside the run.

    A file keeps its name (``artifact_path/name``); a folder keeps its name and layout
    (``artifact_path/folder/...``). A symlink inside the folder that stays inside it is
    followed (a linked folder's files are stored under the link's name too); one that leads
    outside the folder, or back into a folder that contains it, is refused.

    Example:
        >>> # collect_files("model", "out")  -> [(Path("model/w.bin"), "out/model/w.bin")]
    """
    src = Path(path)
    if src.is_file():
        files = [(src, src.name)]
    elif src.is_dir():
        files = [(f, f.relative_to(src.parent).as_posix()) for f in _folder_files(src)]
    else:
        raise InvalidInput(
            f"{src} does not exist", field="path", hint="pass an existing file or folder"
        )
    prefix = check_artifact_path(artifact_path).strip("/") + "/" if artifact_path else ""
    return [(file, prefix + rel) for file, rel in files]


def _folder_files(folder: Path) -> list[Path]:
    """Every regular file below ``folder``, symlinks followed, sorted; paths go through links.

    ``Path.rglob`` does not enter linked folders, so a folder logged with ``latest ->
    weights`` lost ``latest/``: this walk enters them. Logging a folder must store that
    folder only: a link to elsewhere (e.g. ``~/.ssh``) would publish files the user did not
    mean to, so it is refused rather than skipped, and so is a link to a folder above it,
    which would be walked forever.
    """
    root = folder.resolve()
    found: list[Path] = []
    # (folder as reached, its real path, the real paths of the folders it is inside)
    todo: list[tuple[Path, Path, frozenset[Path]]] = [(folder, root, frozenset())]
    while todo:
        here, real_here, above = todo.pop()
        inside = above | {real_here}
        for entry in here.iterdir():
            real = _link_target(entry) if entry.is_symlink() else real_here / entry.name
            if not real.is_relative_to(root):
                raise InvalidInput(
                    f"{entry} is a symlink to {real}, outside the logged folder {folder}",
                    field="path",
                    hint="copy what it points to into the folder, or log it on its own "
                    "with log_artifact",
                )
            if entry.is_dir():
                if real in inside:
                    raise InvalidInput(
                        f"{entry} is a symlink to {real}, a folder that contains it: the "
                        "folder would repeat forever",
                        field="path",
                        hint="remove the link, or log the folder it points to instead",
                    )
                todo.append((entry, real, inside))
            elif entry.is_file():
                found.append(entry)
    return sorted(found)


def _link_target(link: Path) -> Path:
    """Where ``link`` leads, fully resolved; InvalidInput for a loop of links."""
    try:
        return link.resolve()
    except (RuntimeError, OSError) as exc:  # "Symlink loop" (RuntimeError before 3.13)
        raise InvalidInput(
            f"{link} is a symlink that leads back to itself",
            field="path",
            hint="remove or fix the link",
        ) from exc


def encode_dict(dictionary: Any, artifact_file: str) -> bytes:
    """A dict (or list) as JSON bytes, or YAML when ``artifact_file`` ends .yaml/.yml.

    Example:
        >>> encode_dict({"a": 1}, "c.yaml")
        b'a: 1\\n'
    """
    try:
        if artifact_file.endswith((".yaml", ".yml")):
            import yaml

            return yaml.safe_dump(dictionary, sort_keys=False).encode()
        if non_finite_at(dictionary) is not None:
            # orjson writes null for NaN and the infinities, so the value would be lost
            # unsaid; MLflow's log_dict writes them as Python's json does (NaN, Infinity),
            # which json.loads, pandas and MLflow read back.
            return json.dumps(dictionary, indent=2, allow_nan=True, default=_plain).encode()
        return orjson.dumps(
            dictionary,
            option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS,
        )
    except (TypeError, ValueError) as exc:  # orjson's and yaml's "cannot serialize"
        raise InvalidInput(
            f"cannot store {type(dictionary).__name__} as {artifact_file}: {exc}",
            field="dictionary",
            hint="pass plain dicts, lists, strings and numbers",
        ) from exc


def _plain(value: Any) -> Any:
    """A numpy array or scalar as the list or number json can write."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def non_finite_at(value: Any, path: str = "") -> tuple[str, Any] | None:
    """Where ``value`` (dicts, lists, tuples, floats, numpy floats and arrays) holds its first
    NaN or infinity, and that value; None when it holds none.

    Example:
        >>> non_finite_at({"scores": [0.5, float("nan")]})
        ('scores[1]', nan)
    """
    if isinstance(value, float):  # numpy's float64 too
        return None if value - value == 0 else (path, value)
    if isinstance(value, dict):
        for key, item in value.items():
            found = non_finite_at(item, f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
    elif isinstance(value, list | tuple):
        for n, item in enumerate(value):
            found = non_finite_at(item, f"{path}[{n}]")
            if found is not None:
                return found
    elif getattr(getattr(value, "dtype", None), "kind", "") in ("f", "c"):  # numpy
        import numpy as np

        array = np.asarray(value)
        bad = np.argwhere(~np.isfinite(array))
        if len(bad):  # a 0-d array's (a numpy scalar's) row is empty
            index = tuple(int(i) for i in bad[0])
            return path + "".join(f"[{i}]" for i in index), array[index].item()
    return None


def render_figure(figure: Any, artifact_file: str) -> bytes:
    """A matplotlib figure as PNG (or SVG/PDF, by the extension of ``artifact_file``).

    matplotlib is imported only here; without it this raises :class:`InvalidInput`.

    Example:
        >>> # render_figure(fig, "plots/roc.png")[:4]  -> b'\\x89PNG'
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise InvalidInput(
            "log_figure needs matplotlib, which is not installed",
            field="figure",
            hint="pip install matplotlib",
        ) from exc
    if not isinstance(figure, Figure):
        raise InvalidInput(
            f"log_figure takes a matplotlib Figure, got {type(figure).__name__}",
            field="figure",
            hint="pass plt.gcf() or the fig of fig, ax = plt.subplots()",
        )
    fmt = artifact_file.rsplit(".", 1)[-1].lower() if "." in artifact_file else ""
    if fmt not in FIGURE_FORMATS:
        raise InvalidInput(
            f"{artifact_file!r} must end with .png, .svg or .pdf",
            field="artifact_file",
            hint="e.g. 'plots/roc.png'",
        )
    buf = io.BytesIO()
    figure.savefig(buf, format=fmt)
    return buf.getvalue()
