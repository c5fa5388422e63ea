"""Which modules are the user's own code, for a step's cache key.

:func:`loopline.training.step_globals.read_globals` follows the functions and classes of
the user's own code into what they read, and the attributes read from its modules; those
of libraries stay out, so a library upgrade does not rerun steps. The user's own code is
the step's top-level package and the top-level modules and packages in the same folder
(``config.py`` beside ``churn_pipeline.py``), never one in a ``site-packages`` or
``dist-packages`` folder or in a library or standard-library folder of ``sysconfig``.
A flow run as ``python -m pkg.flow`` is the module ``__main__`` of the package ``pkg``:
its own code is ``__main__`` and ``pkg``, as when ``pkg.flow`` is imported.
"""

from __future__ import annotations

import functools
import sys
import sysconfig
import types
from pathlib import Path
from typing import Any

# The sysconfig paths that hold installed libraries and the standard library.
_LIBRARY_PATHS = ("purelib", "platlib", "stdlib", "platstdlib")


class OwnCode:
    """Which modules are the user's own code for one step: those of the step's top-level
    package, and the top-level modules and packages in the same folder as that package
    (``config.py`` beside ``churn_pipeline.py``) - never one installed as a library or of
    the standard library, wherever the step's file is.

    The step's folder is found once per step, when a module of another top-level
    package is first met; each such package is looked at once per step.

    Example:
        >>> own = OwnCode(OwnCode.__init__)  # a function of loopline.training.own_code
        >>> own("loopline.errors"), own("json"), own("numpy")
        (True, False, False)
    """

    def __init__(self, fn: types.FunctionType) -> None:
        module = fn.__module__
        self.root = module.split(".", 1)[0] if isinstance(module, str) and module else None
        # ``python -m pkg.flow``: the step's module is __main__, its package ``pkg``.
        self.package = _main_package() if self.root == "__main__" else None
        self.known: dict[str, bool] = {}

    @functools.cached_property
    def home(self) -> Path | None:
        """The folder of the step's top-level package or module (None: no file, or a
        library's)."""
        if self.root is None:
            return None
        # A flow run with -m: its package's folder, as when it is imported (``python -m
        # flow``, a top-level module, is not imported under its name: __main__'s file).
        top = self.package if self.package in sys.modules else self.root
        return _home(sys.modules.get(top))

    def __call__(self, module_name: object) -> bool:
        """Whether the module named ``module_name`` is the user's own code."""
        if self.root is None or type(module_name) is not str or not module_name:
            return False
        top = module_name.split(".", 1)[0]
        if top == self.root or top == self.package:
            return True
        own = self.known.get(top)
        if own is None:
            home = self.home
            own = self.known[top] = home is not None and _home(sys.modules.get(top)) == home
        return own


def _main_package() -> str | None:
    """The top-level package (or module) ``__main__`` was run as with ``python -m``
    (``pkg`` for ``python -m pkg.flow``), from its ``__spec__``; None for a script or a
    prompt."""
    main = sys.modules.get("__main__")
    spec = vars(main).get("__spec__") if isinstance(main, types.ModuleType) else None
    name = getattr(spec, "name", None)  # a ModuleSpec's: the standard library's attribute
    if type(name) is not str or not name or name == "__main__":
        return None
    return name.split(".", 1)[0]


def _home(module: Any) -> Path | None:
    """The folder holding the top-level module or package ``module`` (symlinks resolved);
    None when it has no file or lies in a library or standard-library folder."""
    if not isinstance(module, types.ModuleType):
        return None
    space = vars(module)  # not getattr: a module __getattr__ may run any code
    file, path = space.get("__file__"), space.get("__path__")
    if isinstance(file, str):
        return _folder(file, 2 if path is not None else 1)  # a package: its folder's
    entries = list(path) if path is not None else []  # a namespace package: its one folder
    if len(entries) != 1 or not isinstance(entries[0], str):
        return None
    return _folder(entries[0], 1)


@functools.lru_cache(maxsize=1024)
def _folder(path: str, up: int) -> Path | None:
    """The folder ``up`` levels above ``path`` (symlinks resolved), None when it is a
    library or standard-library folder. Kept per process: resolving a path reads the
    file system at each level."""
    folder = Path(path).resolve().parents[up - 1]
    if {"site-packages", "dist-packages"} & set(folder.parts):
        return None
    if any(folder.is_relative_to(lib) for lib in _library_folders()):
        return None
    return folder


@functools.lru_cache(maxsize=1)
def _library_folders() -> tuple[Path, ...]:
    """The folders of installed libraries and of the standard library, for this
    environment and the installation it was made from (a venv's base)."""
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    schemes = [sysconfig.get_paths()] + [
        sysconfig.get_paths(vars={"base": p, "platbase": p, "installed_base": p,
                                  "installed_platbase": p})
        for p in sorted(prefixes)
    ]  # fmt: skip
    found = {Path(paths[name]).resolve() for paths in schemes for name in _LIBRARY_PATHS}
    return tuple(sorted(found))
