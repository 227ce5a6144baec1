"""Find a user's predictor class in a ``.py`` file.

The file is imported under a private module name, so that a file called ``types.py`` or
``model.py`` never shadows a module of the same name, with its folder (or the spec's
``python_path``) on ``sys.path`` so that it can import its neighbours.

Cortex's structured logger (``from cortex_internal.lib.log import logger as cortex_logger``,
as its docs showed it) is provided when no ``cortex_internal`` package is installed: a
``ferry.predictor`` logger, so its lines go where ferry's go, at the API's ``log_level``.
"""

from __future__ import annotations

import importlib.util
import inspect
import itertools
import logging
import sys
from pathlib import Path
from types import ModuleType

from ferry.errors import ModelLoadError
from ferry.models.loaders.load_error import first_line, install_hint

__all__ = ["DEFAULT_CLASS", "find_class", "import_file"]

DEFAULT_CLASS = "PythonPredictor"  # Cortex's name, used when none is given


def find_class(path: Path, class_name: str | None, python_path: str | None) -> type:
    """The predictor class ``class_name`` (or the file's only one) from ``path``."""
    module = import_file(path, python_path)
    candidates = _predictor_classes(module)
    if class_name is None:
        class_name = DEFAULT_CLASS if DEFAULT_CLASS in candidates else _only(path, candidates)
    found = getattr(module, class_name, None)
    if not isinstance(found, type):
        raise ModelLoadError(
            f"{path.name}: no class {class_name!r}; "
            f"classes with a predict method: {', '.join(candidates) or 'none'}"
        )
    return found


def import_file(path: Path, python_path: str | None) -> ModuleType:
    """Import ``path`` as a module; any failure is one ModelLoadError naming the file."""
    search = str(Path(python_path).resolve() if python_path else path.resolve().parent)
    if search not in sys.path:
        sys.path.insert(0, search)
    _cortex_logger_module()
    name = f"_ferry_predictor_{''.join(c if c.isalnum() else '_' for c in path.stem)}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ModelLoadError(f"{path.name}: not an importable Python file")
    module = importlib.util.module_from_spec(spec)
    # Registered before running so that pickle and dataclasses can find the module.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[name]
        raise ModelLoadError(
            f"{path.name}: importing it raised {type(error).__name__}: {first_line(error)}"
            + install_hint(error, Path(search))
        ) from error
    return module


def _cortex_logger_module() -> None:
    if "cortex_internal" in sys.modules or importlib.util.find_spec("cortex_internal"):
        return
    names = ("cortex_internal", "cortex_internal.lib", "cortex_internal.lib.log")
    modules = [ModuleType(name) for name in names]
    for parent, child in itertools.pairwise(modules):
        parent.__path__ = []  # a package, so that the next name imports from it
        setattr(parent, child.__name__.rsplit(".", 1)[1], child)
    modules[-1].logger = logging.getLogger("ferry.predictor")  # type: ignore[attr-defined]
    for module in modules:
        sys.modules[module.__name__] = module


def _predictor_classes(module: ModuleType) -> list[str]:
    return [
        name
        for name, value in vars(module).items()
        if inspect.isclass(value)
        and value.__module__ == module.__name__
        and callable(getattr(value, "predict", None))
    ]


def _only(path: Path, candidates: list[str]) -> str:
    if len(candidates) == 1:
        return candidates[0]
    raise ModelLoadError(
        f"{path.name}: name the predictor class (file.py:ClassName); classes with a "
        f"predict method: {', '.join(candidates) or 'none'}"
    )
