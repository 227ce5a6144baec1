"""Import a model framework without the optional integrations a server does not use.

``import xgboost`` and ``import lightgbm`` import scikit-learn (and with it SciPy and
pandas) only to define their scikit-learn wrapper classes: about two seconds of a
server's start on the benchmark machine, for a process that serves a native booster and
never touches the wrappers. When neither the framework nor the integrations are loaded
yet, ``import_lean`` makes the integrations unavailable for the import, so the framework
takes its documented "not installed" branch for them. Once anything in the process has
imported an integration, the framework is imported normally, so a process that uses the
wrappers (a pickled ``XGBClassifier`` read normally, a test suite) gets them whole.

The cost: in that process the framework's wrapper classes lack scikit-learn's mixins,
which is harmless in a server that serves one model through the bare booster.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

__all__ = ["import_lean"]


def import_lean(name: str, *, hide: tuple[str, ...] = ("sklearn",)) -> ModuleType:
    """Import ``name`` with the modules in ``hide`` unavailable, unless already loaded."""
    if name in sys.modules or any(module in sys.modules for module in hide):
        return importlib.import_module(name)
    for module in hide:
        sys.modules[module] = None  # type: ignore[assignment]
    try:
        return importlib.import_module(name)
    finally:
        for module in hide:
            del sys.modules[module]
