"""Lean first read: a tree-model pickle served without importing its framework.

The compiled cache (``ferry.models.compiled``) spares every *later* start on a model file
the scikit-learn import; this module spares the first one. A pickled random forest is,
apart from a few class references, plain dicts and NumPy arrays: the trees' nodes and
values are arrays in each ``Tree``'s pickled state. So ferry first reads the file *dry*:
an unpickler that resolves NumPy (and joblib's array wrapper) for real but turns every
other class reference into an inert stand-in that only records what it was given. If the
file turns out to hold exactly a model the fast path reproduces (a single-output
scikit-learn forest or tree of the installed scikit-learn version, or an XGBoost
scikit-learn wrapper), the model is built from what was recorded; anything else (a
Pipeline, a custom class, another scikit-learn version, a compressed file joblib cannot
read here) returns None and the caller unpickles normally. Nothing a stand-in stands for
is ever executed.

Same answers: a forest read this way is flattened by the same code from the same arrays
scikit-learn itself would restore, and is checked against the real model whenever the
real trees are needed (a batch with NaN, which only scikit-learn's own traversal
answers). XGBoost models are unpickled for real, once the dry read has shown that the
file needs nothing but XGBoost and NumPy, with XGBoost imported without its
scikit-learn integration (see ``compiled.import_xgboost``).
"""

from __future__ import annotations

import importlib.metadata
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ferry.models.compiled import Frozen, FrozenForest, freeze, import_xgboost

__all__ = ["read_lean"]

_log = logging.getLogger(__name__)

# Classes a dry read resolves for real: NumPy rebuilds arrays, joblib's wrapper reads them
# from the file, and these few builtins are plain containers.
_REAL_MODULES = ("numpy", "joblib")
_BUILTINS = "bytearray bytes complex dict float frozenset int list object range set slice str tuple"
_REAL_GLOBALS = {("builtins", name) for name in _BUILTINS.split()} | {
    ("copyreg", "_reconstructor"),
    ("collections", "OrderedDict"),
}

_SKLEARN_TREE = ("sklearn.tree._tree", "Tree")
_FOREST_KINDS = {
    "RandomForestClassifier": "classifier",
    "ExtraTreesClassifier": "classifier",
    "DecisionTreeClassifier": "classifier",
    "RandomForestRegressor": "regressor",
    "ExtraTreesRegressor": "regressor",
    "DecisionTreeRegressor": "regressor",
}
_MEMBER_KINDS = {
    "classifier": {"DecisionTreeClassifier", "ExtraTreeClassifier"},
    "regressor": {"DecisionTreeRegressor", "ExtraTreeRegressor"},
}
_XGBOOST_GLOBALS = {
    ("xgboost.sklearn", "XGBClassifier"),
    ("xgboost.sklearn", "XGBRegressor"),
    ("xgboost.core", "Booster"),
}
_NODE_FIELDS = ("left_child", "right_child", "feature", "threshold")


class _Stub:
    """An inert stand-in for a class a dry read does not import; it records its input."""

    origin: ClassVar[tuple[str, str]] = ("", "")

    def __new__(cls, *args: Any, **kwargs: Any) -> _Stub:
        stub = object.__new__(cls)
        stub.__dict__["_lean_args"] = args
        return stub

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.__dict__["_lean_state"] = state

    @property
    def state(self) -> dict[str, Any]:
        state = self.__dict__.get("_lean_state")
        if isinstance(state, tuple) and state and isinstance(state[0], dict):
            state = state[0]  # (dict, slots) from classes with __slots__
        return state if isinstance(state, dict) else {}

    @property
    def args(self) -> tuple[Any, ...]:
        args: tuple[Any, ...] = self.__dict__.get("_lean_args", ())
        return args


def read_lean(path: Path) -> Frozen | None:
    """The frozen form of the model in ``path``, read without its framework, or None."""
    found = _dry_read(path)
    if found is None:
        return None
    root, origins = found
    try:
        if origins and origins <= _XGBOOST_GLOBALS:
            return _xgboost(path)
        if origins and all(module.startswith("sklearn.") for module, _ in origins):
            return _forest(root, path)
    except Exception as error:  # an optimisation must never stop a model from loading
        _log.info("%s: lean read failed (%s); reading it normally", path.name, error)
    return None


def _dry_read(path: Path) -> tuple[Any, set[tuple[str, str]]] | None:
    """The unpickled object graph with stand-ins, and the classes they stand for."""
    try:
        from joblib.numpy_pickle import NumpyUnpickler
        from joblib.numpy_pickle_utils import _validate_fileobject_and_memmap
    except ImportError:
        return None
    origins: set[tuple[str, str]] = set()
    stubs: dict[tuple[str, str], type[_Stub]] = {}

    class DryUnpickler(NumpyUnpickler):  # type: ignore[misc]
        def find_class(self, module: str, name: str) -> Any:
            if module.split(".")[0] in _REAL_MODULES or (module, name) in _REAL_GLOBALS:
                return super().find_class(module, name)
            origin = (module, name)
            if not _may_build(origin):
                # Pickles name their outer class first: a large model of another kind is
                # declined before its arrays are read.
                raise _DeclinedError(origin)
            origins.add(origin)
            if origin not in stubs:
                stubs[origin] = type(name, (_Stub,), {"origin": origin})
            return stubs[origin]

    try:
        with (
            path.open("rb") as file,
            _validate_fileobject_and_memmap(file, str(path), None) as (stream, _),
        ):
            root = DryUnpickler(str(path), stream, True).load()
    except _DeclinedError as declined:
        _log.debug("%s: no lean read for %s.%s", path.name, *declined.args[0])
        return None
    except Exception as error:  # not ours to judge: the normal read reports it
        _log.debug("%s: no dry read (%s)", path.name, error)
        return None
    return root, origins


class _DeclinedError(Exception):
    """The pickle names a class no lean read builds."""


def _may_build(origin: tuple[str, str]) -> bool:
    module, name = origin
    if origin in _XGBOOST_GLOBALS or origin == _SKLEARN_TREE:
        return True
    members = _MEMBER_KINDS["classifier"] | _MEMBER_KINDS["regressor"]
    return module.startswith("sklearn.") and (name in _FOREST_KINDS or name in members)


def _forest(root: Any, path: Path) -> FrozenForest | None:
    from ferry.models.forest import CompiledForest, flatten_trees

    if not isinstance(root, _Stub) or not _is_sklearn(root, _FOREST_KINDS):
        return None
    state = root.state
    if not _same_sklearn(state):
        return None
    kind = _FOREST_KINDS[root.origin[1]]
    averaged = "estimators_" in state
    members = list(state.get("estimators_") or []) if averaged else [root]
    if state.get("n_outputs_") != 1 or not members:
        return None
    if not all(_is_member(member, kind) for member in members):
        return None
    trees = [_LeanTree.of(member.state["tree_"]) for member in members]
    lean_trees = [tree for tree in trees if tree is not None]
    if len(lean_trees) != len(trees) or len({t.n_features for t in lean_trees}) != 1:
        return None
    n_values = int(state["n_classes_"]) if kind == "classifier" else 1
    layout = flatten_trees(lean_trees, n_values, squeeze=kind == "regressor")
    forest = CompiledForest.from_model_file(
        layout, n_features=lean_trees[0].n_features, averaged=averaged, model_file=path
    )
    classes = state.get("classes_")
    names = state.get("feature_names_in_")
    return FrozenForest(
        kind=root.origin[1],
        forest=forest,
        n_features_in_=int(state["n_features_in_"]),
        feature_names_in_=names if isinstance(names, np.ndarray) else None,
        classes_=classes if kind == "classifier" and isinstance(classes, np.ndarray) else None,
    )


def _is_sklearn(stub: _Stub, names: dict[str, str] | set[str]) -> bool:
    module, name = stub.origin
    return module.startswith("sklearn.") and name in names


def _is_member(member: Any, kind: str) -> bool:
    if not isinstance(member, _Stub) or not _is_sklearn(member, _MEMBER_KINDS[kind]):
        return False
    state = member.state
    tree = state.get("tree_")
    return (
        state.get("n_outputs_") == 1
        and isinstance(tree, _Stub)
        and tree.origin == _SKLEARN_TREE
        and _same_sklearn(state)
    )


def _same_sklearn(state: dict[str, Any]) -> bool:
    """Pickled by the installed scikit-learn, 1.4 or newer (whose trees store fractions).

    The same version means the pickled tree state is exactly what the installed
    scikit-learn would restore; any other is left to scikit-learn itself.
    """
    installed = _installed_sklearn()
    if installed is None:
        return False
    found = re.match(r"(\d+)\.(\d+)", installed)
    recent = found is not None and (int(found[1]), int(found[2])) >= (1, 4)
    return recent and state.get("_sklearn_version") == installed


def _installed_sklearn() -> str | None:
    try:
        return importlib.metadata.version("scikit-learn")
    except importlib.metadata.PackageNotFoundError:
        return None


@dataclass(frozen=True)
class _LeanTree:
    """The parts of a pickled ``sklearn.tree._tree.Tree`` that the flattening reads."""

    n_features: int
    node_count: int
    children_left: np.ndarray[Any, Any]
    children_right: np.ndarray[Any, Any]
    feature: np.ndarray[Any, Any]
    threshold: np.ndarray[Any, Any]
    value: np.ndarray[Any, Any]

    @classmethod
    def of(cls, tree: _Stub) -> _LeanTree | None:
        # Tree.__reduce__ gives (Tree, (n_features, n_classes, n_outputs), state).
        state = tree.state
        nodes = state.get("nodes")
        values = state.get("values")
        count = state.get("node_count")
        if not tree.args or not isinstance(nodes, np.ndarray) or nodes.dtype.names is None:
            return None
        if not isinstance(values, np.ndarray) or not isinstance(count, int):
            return None
        if not set(_NODE_FIELDS) <= set(nodes.dtype.names) or values.ndim != 3:
            return None
        if nodes.shape != (count,) or values.shape[0] != count or count == 0:
            return None
        return cls(
            n_features=int(tree.args[0]),
            node_count=count,
            children_left=nodes["left_child"],
            children_right=nodes["right_child"],
            feature=nodes["feature"],
            threshold=nodes["threshold"],
            value=values,
        )


def _xgboost(path: Path) -> Frozen | None:
    """Unpickle an XGBoost wrapper for real, XGBoost imported without scikit-learn."""
    import_xgboost()
    import joblib

    estimator = joblib.load(path)
    return freeze(estimator)
