"""The local cluster's runtime: replicas as supervised processes behind ferry's own nginx.

``LocalBackend`` is imported on first use, so the zygote (``zygote``), which imports a
module of this package at start-up, does not pay for the backend's own imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["LocalBackend"]

if TYPE_CHECKING:
    from ferry.runtime.local.backend import LocalBackend


def __getattr__(name: str) -> object:
    if name == "LocalBackend":
        from ferry.runtime.local.backend import LocalBackend

        return LocalBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
