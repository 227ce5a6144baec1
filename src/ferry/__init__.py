"""ferry: turn a trained model into a fast, production-grade HTTP service in one command."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
