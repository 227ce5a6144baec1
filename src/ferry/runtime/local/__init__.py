"""The local cluster's runtime: replicas as supervised processes behind ferry's own nginx."""

from __future__ import annotations

from ferry.runtime.local.backend import LocalBackend

__all__ = ["LocalBackend"]
