"""The compiled-model cache: restart a server on a known tree model without its framework.

Unpickling a scikit-learn forest imports scikit-learn, which imports SciPy and pandas:
about two seconds before the first prediction, in every server start and every new
replica. Yet once ferry has compiled the forest (``ferry.models.forest``) it needs none of
that: the compiled form is plain NumPy arrays. So the first start of a server on a model
file stores a *frozen* copy of what the fast path uses, keyed by the file's sha256, under
``<cache dir>/compiled/``; every later start on the same file reads it back in
milliseconds and never imports scikit-learn. XGBoost's scikit-learn wrappers are frozen
the same way: the booster in XGBoost's own UBJSON format plus the few wrapper attributes
the fast path reads, loaded into a bare ``Booster`` (XGBoost without its scikit-learn
integration imports in a fraction of the time).

Same answers: a frozen model carries exactly what the fast path used (the compiled trees or
the booster, ``classes_``, ``n_features_in_``, ``feature_names_in_``), so it predicts what
the fast path predicts, which is bit for bit what the estimator predicts. An entry records
the framework version that wrote it and is ignored after an upgrade; an unreadable entry is
ignored and rewritten; a cache that cannot be written only costs the speed-up.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ferry.models.cache import file_sha256, write_atomic
from ferry.models.imports import import_lean

__all__ = [
    "FORMAT",
    "Frozen",
    "FrozenBooster",
    "FrozenForest",
    "entry_path",
    "freeze",
    "import_xgboost",
    "lookup",
    "store",
]

FORMAT = 1
"""Bumped whenever the frozen classes change shape, so older entries are not read."""

_log = logging.getLogger(__name__)


@dataclass
class FrozenForest:
    """A fitted scikit-learn tree model reduced to its compiled form (see ``forest``)."""

    kind: str
    forest: Any  # ferry.models.forest.CompiledForest
    n_features_in_: int
    feature_names_in_: np.ndarray[Any, Any] | None
    classes_: np.ndarray[Any, Any] | None
    n_outputs_: int = 1
    framework: str = "sklearn"
    package: str = "scikit-learn"
    written_by: str | None = None  # the package's version when stored


@dataclass
class FrozenBooster:
    """An ``XGBClassifier``/``XGBRegressor`` reduced to its booster and wrapper attributes."""

    kind: str
    raw: bytes
    n_features_in_: int
    feature_names_in_: np.ndarray[Any, Any] | None
    classes_: np.ndarray[Any, Any] | None
    n_classes_: int
    objective: str
    iteration_range: tuple[int, int]
    missing: float
    n_jobs: int | None = None
    framework: str = "xgboost"
    package: str = "xgboost"
    written_by: str | None = None  # the package's version when stored
    _booster: Any = field(default=None, repr=False, compare=False)

    def booster(self) -> Any:
        """The ``xgboost.Booster``, built from ``raw`` on first use."""
        if self._booster is None:
            xgboost = import_xgboost()
            self._booster = xgboost.Booster(model_file=bytearray(self.raw))
            if self.n_jobs is not None:
                self._booster.set_param({"nthread": self.n_jobs})
        return self._booster

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {"n_jobs": self.n_jobs}

    def set_params(self, **params: Any) -> FrozenBooster:
        """Only ``n_jobs``, which is what a worker sets to share the cores."""
        if "n_jobs" in params:
            self.n_jobs = params["n_jobs"]
            if self._booster is not None and self.n_jobs is not None:
                self._booster.set_param({"nthread": self.n_jobs})
        return self

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_booster"] = None
        return state


Frozen = FrozenForest | FrozenBooster


def freeze(estimator: object) -> Frozen | None:
    """The frozen form of ``estimator`` when the fast path covers it, else None."""
    module = type(estimator).__module__
    try:
        if module.startswith("sklearn."):
            return _freeze_forest(estimator)
        if module.startswith("xgboost."):
            return _freeze_booster(estimator)
    except Exception:  # an optimisation must never stop a model from loading
        _log.warning("could not freeze %s; it loads from its file each time", type(estimator))
    return None


def lookup(entry: Path) -> Frozen | None:
    """The frozen model stored at ``entry`` (see ``entry_path``), if a usable one exists."""
    try:
        data = entry.read_bytes()
    except OSError:
        return None
    try:
        frozen = pickle.loads(data)  # written by store(), in the user's cache
    except Exception as error:
        _log.warning("ignoring unreadable compiled cache entry %s: %s", entry, error)
        return None
    if not isinstance(frozen, FrozenForest | FrozenBooster):
        return None
    if frozen.written_by != _version(frozen.package):
        return None
    return frozen


def store(entry: Path, frozen: Frozen) -> Path | None:
    """Write ``frozen`` at ``entry``; returns it, or None if it cannot be written."""
    frozen.written_by = _version(frozen.package)
    try:
        write_atomic(entry, pickle.dumps(frozen, protocol=5))
    except OSError as error:
        _log.info("compiled cache entry %s not written: %s", entry, error)
        return None
    return entry


def entry_path(cache_dir: Path, model_file: Path) -> Path:
    """Where the frozen form of ``model_file``'s content lives (hashes the file once)."""
    digest = hashlib.sha256(f"{file_sha256(model_file)}:{FORMAT}".encode()).hexdigest()
    return cache_dir / "compiled" / f"{digest}.pkl"


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _freeze_forest(estimator: Any) -> FrozenForest | None:
    from ferry.models.forest import CompiledForest, compile_forest

    forest = compile_forest(estimator)
    if not isinstance(forest, CompiledForest):
        return None
    classes = getattr(estimator, "classes_", None)
    return FrozenForest(
        kind=type(estimator).__name__,
        forest=forest,
        n_features_in_=int(estimator.n_features_in_),
        feature_names_in_=getattr(estimator, "feature_names_in_", None),
        classes_=classes if isinstance(classes, np.ndarray) else None,
    )


def _freeze_booster(estimator: Any) -> FrozenBooster | None:
    import xgboost

    if type(estimator) not in (xgboost.XGBClassifier, xgboost.XGBRegressor):
        return None
    from ferry.models.loaders.fast_path import xgboost_iteration_range

    booster = estimator.get_booster()
    classifier = type(estimator) is xgboost.XGBClassifier
    return FrozenBooster(
        kind=type(estimator).__name__,
        raw=bytes(booster.save_raw(raw_format="ubj")),
        n_features_in_=int(estimator.n_features_in_),
        feature_names_in_=getattr(estimator, "feature_names_in_", None),
        classes_=np.asarray(estimator.classes_) if classifier else None,
        n_classes_=int(estimator.n_classes_) if classifier else 0,
        objective=str(estimator.objective),
        iteration_range=xgboost_iteration_range(estimator),
        missing=float(estimator.missing),
        n_jobs=estimator.n_jobs,
    )


def import_xgboost() -> Any:
    """Import XGBoost; without its scikit-learn integration unless scikit-learn is loaded.

    A frozen booster does not use XGBoost's wrapper classes, so a process that has not
    imported scikit-learn (a server starting from the cache) skips it; see
    ``ferry.models.imports``.
    """
    return import_lean("xgboost")
