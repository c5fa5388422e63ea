"""Turning what a user logs as an artifact into bytes or files: folders, dicts, figures.

Example:
    >>> encode_dict({"a": 1}, "config.json")
    b'{\\n  "a": 1\\n}'
"""

from __future__ import annotations

import io
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
    (``artifact_path/folder/...``).

    Example:
        >>> # collect_files("model", "out")  -> [(Path("model/w.bin"), "out/model/w.bin")]
    """
    src = Path(path)
    if src.is_file():
        files = [(src, src.name)]
    elif src.is_dir():
        files = [
            (f, f.relative_to(src.parent).as_posix()) for f in sorted(src.rglob("*")) if f.is_file()
        ]
        _refuse_links_out(src, [f for f, _ in files])
    else:
        raise InvalidInput(
            f"{src} does not exist", field="path", hint="pass an existing file or folder"
        )
    prefix = check_artifact_path(artifact_path).strip("/") + "/" if artifact_path else ""
    return [(file, prefix + rel) for file, rel in files]


def _refuse_links_out(folder: Path, files: list[Path]) -> None:
    """Refuse a symlink in ``folder`` that leads outside it (e.g. to ~/.ssh/id_rsa).

    Logging a folder must store that folder; a link inside it to elsewhere would copy
    files the user did not mean to publish. Links that stay inside are fine.
    """
    root = folder.resolve()
    for file in files:
        target = file.resolve()
        if not target.is_relative_to(root):
            raise InvalidInput(
                f"{file} is a symlink to {target}, outside the logged folder {folder}",
                field="path",
                hint="copy the file into the folder, or log it on its own with log_artifact",
            )


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
