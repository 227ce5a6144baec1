"""Call a user's hook with the arguments it declares, by name (Cortex, KServe, LitServe style).

The hook's signature is read once at load; a parameter ferry cannot supply and that has no
default is a load error, not a surprise on the first request.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ferry.errors import ModelLoadError

__all__ = ["Injector", "injector"]


@dataclass(frozen=True, slots=True)
class Injector:
    """A hook and, for each parameter it takes, the name of the value it receives."""

    func: Callable[..., Any]
    arguments: tuple[tuple[str, str], ...]  # (parameter name, value name)

    def __call__(self, values: Mapping[str, Any]) -> Any:
        return self.func(**{param: values[value] for param, value in self.arguments})


def injector(
    func: Callable[..., Any], *, supplies: tuple[str, ...], what: str, first: str | None = None
) -> Injector:
    """Plan how to call ``func`` with some of the values named in ``supplies``.

    ``first``: the value the first parameter gets when its name is none of ``supplies``
    (LitServe's ``predict(self, x)`` receives the payload whatever the parameter is called).
    """
    arguments: list[tuple[str, str]] = []
    for index, param in enumerate(inspect.signature(func).parameters.values()):
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if param.name in supplies and param.kind is not param.POSITIONAL_ONLY:
            arguments.append((param.name, param.name))
        elif index == 0 and first is not None and param.kind is not param.POSITIONAL_ONLY:
            arguments.append((param.name, first))
        elif param.default is param.empty:
            raise ModelLoadError(
                f"{what} takes {param.name!r}, which ferry cannot supply "
                f"(it supplies {', '.join(supplies)})"
            )
    return Injector(func, tuple(arguments))
