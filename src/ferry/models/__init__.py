"""Model artifacts: fetching (file, http, s3) into a cache, framework detection, loaders.

Importing this package loads no ML framework: loaders import theirs when a model is loaded.
"""

from ferry.models.base import LoadedModel, ModelSource
from ferry.models.detect import detect_framework
from ferry.models.fetch import fetch
from ferry.models.source import open_source

__all__ = ["LoadedModel", "ModelSource", "detect_framework", "fetch", "open_source"]
