"""Exact fast path for fitted scikit-learn tree models.

A batched server calls the model once per batch, and for a forest of a hundred small trees
scikit-learn spends that call on input validation and one joblib task per tree, not on the
trees themselves. ``compile_forest`` copies the fitted trees into flat arrays once and
returns a predict function that walks every tree for every row with a few NumPy
operations per tree level, or, for large batches, calls each tree's own traversal
directly. Both reproduce scikit-learn's arithmetic step for step so the answers are
bit-identical to ``predict_proba`` (classifiers) or ``predict`` (regressors), computed
sequentially (``n_jobs=None``).
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

__all__ = ["CompiledForest", "compile_forest", "flatten_trees"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]
Walk = Literal["auto", "levels", "trees"]

# The level walk pays a few NumPy calls per level plus a few gathers per (row, tree, level);
# the tree walk pays a fixed few microseconds per tree call plus a cheap compiled step per
# (row, tree, level). These weights, in nanoseconds, come from bench/forest_microbench.py
# on one core and let `_use_level_walk` pick the cheaper walk for each batch size.
_LEVEL_PASS_NS = 5_000.0
_LEVEL_CELL_NS = 8.0
_TREE_CALL_NS = 4_000.0
_TREE_STEP_NS = 4.0

_LEAF = -1


@dataclass(frozen=True)
class _Layout:
    """All trees of a model as one array of nodes, addressed by ``2 * global node id``.

    Even slots hold a node's split feature and threshold; ``children[2 * i]`` and
    ``children[2 * i + 1]`` hold the doubled ids of its left and right child, so one step is
    ``slot = children[slot + went_right]``. Leaves are their own children, so rows that
    reach a leaf early stay there while deeper trees finish.

    The level walk visits trees deepest first (``walk_order``), so at each level the trees
    still descending are a prefix of the work array: ``active[level]`` of them.
    """

    feature: IntArray
    threshold: FloatArray
    children: IntArray
    offsets: IntArray
    values: FloatArray
    walk_order: IntArray
    active: list[int]

    @property
    def depth(self) -> int:
        return len(self.active)

    @property
    def total_depth(self) -> int:
        return sum(self.active)


class CompiledForest:
    """Predict function for one fitted scikit-learn tree model; see ``compile_forest``."""

    def __init__(
        self, trees: Sequence[Any], layout: _Layout, *, averaged: bool, allow_nan: bool | None
    ) -> None:
        self._trees: list[Any] | None = list(trees) or None
        self._trees_blob: bytes | None = None
        self._model_file: Path | None = None
        self._n_trees = len(layout.offsets)
        self._layout = layout
        self._averaged = averaged
        # None until the trees are restored: only they know (see from_model_file).
        self._allow_nan = allow_nan
        self._n_features = int(trees[0].n_features) if trees else 0

    @classmethod
    def from_model_file(
        cls, layout: _Layout, *, n_features: int, averaged: bool, model_file: Path
    ) -> CompiledForest:
        """A forest flattened from a model file read without scikit-learn (``models.lean``).

        Its scikit-learn trees, needed only by NaN batches (and then by large batches),
        are restored by reading ``model_file`` normally on first use; whether the model
        accepts NaN at all is asked of them then.
        """
        forest = cls([], layout, averaged=averaged, allow_nan=None)
        forest._n_features = n_features
        forest._model_file = model_file
        return forest

    def rebind(self, model_file: Path) -> None:
        """Restore trees from ``model_file`` (same content, wherever it now lives)."""
        if self._model_file is not None:
            self._model_file = model_file

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the flat arrays as they are and the scikit-learn trees as opaque bytes.

        Unpickling then needs only NumPy: the trees (and with them scikit-learn) are
        restored on first use, which only NaN batches and, once restored, large batches
        make. A forest whose trees were never loaded keeps pointing at its model file.
        See ``ferry.models.compiled``.
        """
        state = dict(self.__dict__)
        if state["_trees_blob"] is None and state["_trees"] is not None:
            state["_trees_blob"] = pickle.dumps(state["_trees"], protocol=5)
        state["_trees"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("_model_file", None)
        self.__dict__.update(state)

    @property
    def trees_loaded(self) -> bool:
        """False for a forest read back from a pickle until a tree walk first needs them."""
        return self._trees is not None

    def _tree_list(self) -> list[Any]:
        if self._trees is None:
            if self._trees_blob is not None:
                self._trees = pickle.loads(self._trees_blob)  # bytes __getstate__ wrote
            else:
                self._restore_from_model_file()
        assert self._trees is not None
        return self._trees

    def _restore_from_model_file(self) -> None:
        """Read the model file with scikit-learn; it must flatten to exactly our layout."""
        if self._model_file is None:
            raise RuntimeError("this compiled forest has neither its trees nor its model file")
        import joblib

        real = compile_forest(joblib.load(self._model_file))
        if not isinstance(real, CompiledForest) or not _same_layout(real._layout, self._layout):
            raise RuntimeError(
                f"{self._model_file.name} no longer holds the model this server loaded; "
                "restart the server to load the new file"
            )
        self._allow_nan = real._allow_nan
        self._trees = real._trees

    def __call__(self, rows: FloatArray, *, walk: Walk = "auto") -> FloatArray:
        """Return what the source model's ``predict_proba`` / ``predict`` returns for rows.

        ``walk`` forces one traversal ("levels": all trees at once, level by level;
        "trees": tree by tree) for benchmarks and tests; both give the same bits. "auto"
        picks the cheaper for the batch size. Batches with NaN always go tree by tree.
        """
        rows32, has_nan = self._validate(rows)
        if walk == "auto":
            # Until the trees are back from a pickle, the level walk (same bits) serves
            # every NaN-free batch, so a server never imports scikit-learn to predict.
            cheaper = self._use_level_walk(rows32.shape[0])
            walk = "levels" if cheaper or not self.trees_loaded else "trees"
        if walk == "levels" and not has_nan:
            leaves = self._walk_levels(rows32)
        else:
            # Missing values follow each node's learnt direction; the trees' own traversal
            # implements that rule exactly, so NaN batches never take the level walk.
            leaves = self._walk_trees(rows32)
        return self._combine(leaves)

    def _validate(self, rows: FloatArray) -> tuple[NDArray[np.float32], bool]:
        if rows.ndim != 2 or rows.shape[0] == 0 or rows.shape[1] != self._n_features:
            raise ValueError(
                f"expected a non-empty 2-D array with {self._n_features} features, "
                f"got shape {rows.shape}"
            )
        # scikit-learn casts to float32 before checking, so values beyond float32's range
        # become inf and are rejected like inf itself.
        with np.errstate(over="ignore"):
            rows32 = np.ascontiguousarray(rows, dtype=np.float32)
        if np.isfinite(rows32).all():
            return rows32, False
        if self._allow_nan is None:
            self._tree_list()  # restores the trees, which know whether NaN is allowed
        if self._allow_nan and not np.isinf(rows32).any():
            return rows32, True
        allowed = "NaN is allowed, infinity is not" if self._allow_nan else "need finite values"
        raise ValueError(f"input contains NaN or infinity ({allowed})")

    def _use_level_walk(self, n_rows: int) -> bool:
        layout = self._layout
        # (row, tree, level) steps; tree depth stands in for the mean path length in both.
        steps = n_rows * layout.total_depth
        level_walk = layout.depth * _LEVEL_PASS_NS + steps * _LEVEL_CELL_NS
        tree_walk = self._n_trees * _TREE_CALL_NS + steps * _TREE_STEP_NS
        return level_walk < tree_walk

    def _walk_levels(self, rows32: NDArray[np.float32]) -> IntArray:
        layout = self._layout
        n_rows = rows32.shape[0]
        # float32 -> float64 is exact, and comparing in float64 is what the C traversal
        # does when it compares a float32 feature with a float64 threshold.
        flat = rows32.astype(np.float64).ravel()
        row_start = np.tile(np.arange(n_rows, dtype=np.intp) * self._n_features, self._n_trees)
        slot = np.repeat(2 * layout.offsets[layout.walk_order], n_rows)
        for n_active in layout.active:
            cells = slot[: n_active * n_rows]
            went_right = flat[layout.feature[cells] + row_start[: cells.size]]
            went_right = went_right > layout.threshold[cells]
            cells[:] = layout.children[cells + went_right]
        leaves = np.empty((self._n_trees, n_rows), dtype=np.intp)
        leaves[layout.walk_order] = (slot >> 1).reshape(self._n_trees, n_rows)
        return leaves

    def _walk_trees(self, rows32: NDArray[np.float32]) -> IntArray:
        leaves = np.empty((self._n_trees, rows32.shape[0]), dtype=np.intp)
        for i, tree in enumerate(self._tree_list()):
            leaves[i] = tree.apply(rows32)
        leaves += self._layout.offsets[:, np.newaxis]
        return leaves

    def _combine(self, leaves: IntArray) -> FloatArray:
        per_tree: FloatArray = self._layout.values[leaves]
        if not self._averaged:
            single: FloatArray = per_tree[0]
            return single
        # scikit-learn adds tree outputs one by one into zeros, then divides. accumulate is
        # strictly sequential, where np.sum may switch to pairwise summation; the final
        # "+ 0.0" turns a -0.0 total into the +0.0 that starting from zeros gives.
        np.add.accumulate(per_tree, axis=0, out=per_tree)
        total: FloatArray = per_tree[-1] + 0.0
        total /= self._n_trees
        return total


def compile_forest(estimator: object) -> Callable[[FloatArray], FloatArray] | None:
    """Compile a fitted scikit-learn tree model into an exact, faster predict function.

    Supports single-output ``RandomForestClassifier``, ``ExtraTreesClassifier``,
    ``DecisionTreeClassifier`` (the function returns ``predict_proba(X)``) and
    ``RandomForestRegressor``, ``ExtraTreesRegressor``, ``DecisionTreeRegressor`` (it
    returns ``predict(X)``), bit for bit as scikit-learn computes them with ``n_jobs=None``.
    The function takes a 2-D float array and raises ``ValueError`` for a wrong shape, for
    infinity, and for NaN unless the model accepts missing values.

    Returns None for anything else: other types or subclasses, unfitted or multi-output
    models, scikit-learn older than 1.4 (its trees stored counts, not fractions).
    """
    kind = _supported_kind(estimator)
    if kind is None:
        return None
    model: Any = estimator
    averaged = hasattr(model, "estimators_")
    members = list(model.estimators_) if averaged else [model]
    if not members or not all(_is_plain_tree(m, kind) for m in members):
        return None
    n_values = int(model.n_classes_) if kind == "classifier" else 1
    trees = [m.tree_ for m in members]
    layout = flatten_trees(trees, n_values, squeeze=kind == "regressor")
    from sklearn.utils import get_tags

    # Forests validate input with their first tree's rule, so ask the trees.
    allow_nan = bool(get_tags(members[0]).input_tags.allow_nan)
    return CompiledForest(trees, layout, averaged=averaged, allow_nan=allow_nan)


def _supported_kind(estimator: object) -> str | None:
    """'classifier' or 'regressor' for a model this module reproduces exactly, else None."""
    if not type(estimator).__module__.startswith("sklearn.") or not _sklearn_at_least(1, 4):
        return None
    from sklearn import ensemble, tree

    # An exact type match: a subclass may override predict and we could not tell.
    kinds: dict[type, str] = {
        ensemble.RandomForestClassifier: "classifier",
        ensemble.ExtraTreesClassifier: "classifier",
        tree.DecisionTreeClassifier: "classifier",
        ensemble.RandomForestRegressor: "regressor",
        ensemble.ExtraTreesRegressor: "regressor",
        tree.DecisionTreeRegressor: "regressor",
    }
    kind = kinds.get(type(estimator))
    model: Any = estimator
    fitted = hasattr(model, "estimators_") or hasattr(model, "tree_")
    if kind is None or not fitted or getattr(model, "n_outputs_", None) != 1:
        return None
    return kind


def _is_plain_tree(member: Any, kind: str) -> bool:
    from sklearn import tree

    types = (
        (tree.DecisionTreeClassifier, tree.ExtraTreeClassifier)
        if kind == "classifier"
        else (tree.DecisionTreeRegressor, tree.ExtraTreeRegressor)
    )
    exact = type(member) in types
    return exact and getattr(member, "n_outputs_", None) == 1 and hasattr(member, "tree_")


def _sklearn_at_least(major: int, minor: int) -> bool:
    try:
        import sklearn
    except ImportError:
        return False
    found = re.match(r"(\d+)\.(\d+)", sklearn.__version__)
    return found is not None and (int(found[1]), int(found[2])) >= (major, minor)


def flatten_trees(trees: Sequence[Any], n_values: int, *, squeeze: bool) -> _Layout:
    """All ``trees`` (scikit-learn ``Tree`` objects or anything with the same arrays)."""
    sizes = [int(t.node_count) for t in trees]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.intp)
    total = int(offsets[-1])
    feature = np.zeros(2 * total, dtype=np.intp)
    threshold = np.zeros(2 * total, dtype=np.float64)
    children = np.zeros(2 * total, dtype=np.intp)
    values = np.empty((total, n_values), dtype=np.float64)
    depths = []
    for tree, start in zip(trees, offsets[:-1].tolist(), strict=True):
        left = np.asarray(tree.children_left, dtype=np.intp)
        right = np.asarray(tree.children_right, dtype=np.intp)
        own = np.arange(left.size, dtype=np.intp)
        is_leaf = left == _LEAF
        slots = 2 * (own + start)
        feature[slots] = np.where(is_leaf, 0, tree.feature)
        threshold[slots] = tree.threshold
        children[slots] = 2 * (np.where(is_leaf, own, left) + start)
        children[slots + 1] = 2 * (np.where(is_leaf, own, right) + start)
        values[start : start + left.size] = tree.value[:, 0, :n_values]
        depths.append(_depth(left, right))
    if squeeze:
        values = values[:, 0].copy()
    walk_order = np.argsort(-np.asarray(depths, dtype=np.intp), kind="stable").astype(np.intp)
    active = [sum(d > level for d in depths) for level in range(max(depths))]
    return _Layout(feature, threshold, children, offsets[:-1], values, walk_order, active)


def _same_layout(a: _Layout, b: _Layout) -> bool:
    arrays = ("feature", "threshold", "children", "offsets", "values", "walk_order")
    same = all(np.array_equal(getattr(a, name), getattr(b, name)) for name in arrays)
    return same and a.active == b.active


def _depth(left: IntArray, right: IntArray) -> int:
    """Edges on the longest root-to-leaf path, from the structure itself."""
    level = np.array([0], dtype=np.intp)
    depth = 0
    while True:
        level = level[left[level] != _LEAF]
        if level.size == 0:
            return depth
        level = np.concatenate([left[level], right[level]])
        depth += 1
