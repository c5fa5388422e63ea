"""A model flavor whose models never answer in time, for the hung-model fault test.

:class:`Sleeper` is a model whose ``predict`` sleeps for ``seconds`` (an hour by default:
as good as forever for a test) before answering zeros. :class:`HangFlavor` saves it as one
small JSON file and loads it back, like any flavor; :func:`install` puts the flavor first
in :data:`loopline.training.flavors.FLAVORS`, in the test process (to log the model) and in
the ``loopline serve`` process (to load it: see :data:`SERVE_WITH_HANG_FLAVOR`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from loopline.training.flavors import FLAVORS, Flavor, Predictor, SavedModel
from loopline.training.flavors.base import class_path

NAME = "test-hang"
FILE = "hang.json"
ROOT = Path(__file__).resolve().parents[2]
#: ``python -c`` code that installs the flavor, then runs the ``loopline`` CLI on sys.argv.
SERVE_WITH_HANG_FLAVOR = (
    f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
    "from tests.e2e.hang_flavor import install; install(); "
    "from loopline.cli.main import main; main()"
)


class Sleeper:
    """A model that takes ``seconds`` to predict anything."""

    def __init__(self, seconds: float = 3600.0) -> None:
        self.seconds = seconds

    def predict(self, rows: Any) -> list[int]:
        time.sleep(self.seconds)
        return [0] * len(rows)


class HangFlavor(Flavor):
    """Saves a :class:`Sleeper` as ``hang.json``."""

    name = NAME
    libraries = ()

    def handles(self, model: Any) -> bool:
        return isinstance(model, Sleeper)

    def save(self, model: Any, folder: Path) -> SavedModel:
        (folder / FILE).write_text(json.dumps({"seconds": model.seconds}))
        return SavedModel((FILE,), class_path(model))

    def load(
        self, files: Mapping[str, bytes], saved: SavedModel, *, trusted_types: Sequence[str] = ()
    ) -> Any:
        return Sleeper(float(json.loads(files[FILE])["seconds"]))

    def predictor(
        self,
        model: Any,
        saved: SavedModel,
        signature: Any,
        example: list[dict[str, Any]] | None,
    ) -> Predictor:
        return Predictor(model.predict, None, "frame")


def install() -> None:
    """Put the flavor first in the flavor registry (detection goes in order)."""
    if NAME in FLAVORS:
        return
    others = dict(FLAVORS)
    FLAVORS.clear()
    FLAVORS[NAME] = HangFlavor()
    FLAVORS.update(others)


def uninstall() -> None:
    """Take the flavor out of the registry again."""
    FLAVORS.pop(NAME, None)
