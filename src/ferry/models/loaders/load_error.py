"""One readable line for a model that cannot be loaded: the file, what failed, and why.

The full traceback stays on ``__cause__`` for the log; the CLI prints only the line.
"""

from __future__ import annotations

from pathlib import Path

from ferry.errors import ModelLoadError

__all__ = ["first_line", "install_hint", "load_error"]


def load_error(path: Path, what: str, error: BaseException) -> ModelLoadError:
    """``model.json: not an XGBoost model (XGBoostError: ...)``; raise it ``from error``."""
    return ModelLoadError(f"{path.name}: {what} ({type(error).__name__}: {first_line(error)})")


def first_line(error: BaseException) -> str:
    """The first non-empty line of an exception's message (frameworks append C++ traces)."""
    for line in str(error).splitlines():
        if line.strip():
            return line.strip()
    return type(error).__name__


def install_hint(error: BaseException, project: Path | None) -> str:
    """``"; ..."`` telling how to install a module user code imports, or ``""``.

    Cortex installed a project's ``requirements.txt`` into its image; ferry serves from the
    active environment, so a missing package is the common first failure of a Cortex
    project run with ferry.
    """
    if not isinstance(error, ModuleNotFoundError) or not error.name:
        return ""
    package = error.name.partition(".")[0]
    requirements = project / "requirements.txt" if project is not None else None
    if requirements is not None and requirements.is_file():
        return f"; {package!r} is not installed in this environment: pip install -r {requirements}"
    return f"; {package!r} is not installed in this environment (pip install it)"
