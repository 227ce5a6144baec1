"""The compiled-model cache: a model served from its frozen form answers bit for bit the same.

A first load reads the file lean (``ferry.models.lean``) and stores the frozen form; a
second load of the same file must come from the cache (no unpickling). In a fresh process
neither imports scikit-learn. Both give exactly the estimator's own outputs on every batch
size and on NaN, and an unusable entry falls back to reading the file.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import xgboost
from sklearn import datasets
from sklearn.ensemble import ExtraTreesRegressor, RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from ferry.errors import ModelLoadError
from ferry.models import compiled
from ferry.models.base import ModelSource
from ferry.models.compiled import FrozenBooster, FrozenForest
from ferry.models.loaders import load_source
from ferry.models.loaders.pickle import PickleModel
from ferry.types import Rows

from .conftest import MakeSource

Array = np.ndarray[Any, Any]


def _rows(data: Array, n: int, *, nan: bool = False) -> Array:
    rng = np.random.default_rng(n)
    picked = data[rng.integers(0, len(data), n)].copy()
    picked += rng.normal(0, 0.05, picked.shape)  # land between the training points too
    if nan:
        picked[rng.random(picked.shape) < 0.2] = np.nan
    return picked


def _cached_source(make_source: MakeSource, path: Path, cache: Path, **spec: Any) -> ModelSource:
    return dataclasses.replace(make_source(path, "pickle", **spec), compiled_cache=cache)


def _served(model: object) -> object:
    assert isinstance(model, PickleModel)
    return model._model


def _fit(name: str) -> tuple[object, Array]:
    if name == "rf-iris":
        X, y = datasets.load_iris(return_X_y=True)
        return RandomForestClassifier(30, random_state=0).fit(X, y), X
    if name == "rf-nan-cancer":
        X, y = datasets.load_breast_cancer(return_X_y=True)
        X = X.copy()
        X[np.random.default_rng(0).random(X.shape) < 0.1] = np.nan
        return RandomForestClassifier(20, random_state=0).fit(X, y), np.nan_to_num(X)
    if name == "tree-digits":
        X, y = datasets.load_digits(return_X_y=True)
        return DecisionTreeClassifier(random_state=0).fit(X, y), X.astype(np.float64)
    if name == "rf-regressor":
        X, y = datasets.load_diabetes(return_X_y=True)
        return RandomForestRegressor(25, random_state=0).fit(X, y), X
    if name == "extra-regressor":
        X, y = datasets.load_diabetes(return_X_y=True)
        return ExtraTreesRegressor(25, random_state=0).fit(X, y), X
    if name == "xgb-binary":
        X, y = datasets.load_breast_cancer(return_X_y=True)
        return xgboost.XGBClassifier(n_estimators=30, max_depth=4).fit(X, y), X
    if name == "xgb-multi":
        X, y = datasets.load_iris(return_X_y=True)
        return xgboost.XGBClassifier(n_estimators=20, max_depth=3).fit(X, y), X
    if name == "xgb-regressor":
        X, y = datasets.load_diabetes(return_X_y=True)
        return xgboost.XGBRegressor(n_estimators=30, max_depth=4).fit(X, y), X
    raise AssertionError(name)


MODELS = (
    "rf-iris",
    "rf-nan-cancer",
    "tree-digits",
    "rf-regressor",
    "extra-regressor",
    "xgb-binary",
    "xgb-multi",
    "xgb-regressor",
)


CASES = [(name, False) for name in MODELS] + [
    (name, True) for name in MODELS if "regressor" not in name
]


@pytest.mark.parametrize(("name", "proba"), CASES)
def test_the_second_load_serves_the_frozen_form_with_identical_answers(
    tmp_path: Path,
    make_source: MakeSource,
    caplog: pytest.LogCaptureFixture,
    name: str,
    proba: bool,
) -> None:
    estimator, X = _fit(name)
    path = tmp_path / f"{name}.joblib"
    joblib.dump(estimator, path)
    source = _cached_source(make_source, path, tmp_path / "cache", predict_proba=proba)
    plain = load_source(dataclasses.replace(source, compiled_cache=None))
    assert not isinstance(_served(plain), FrozenForest | FrozenBooster)

    caplog.set_level(logging.INFO, logger="ferry.models.loaders.pickle")
    first = load_source(source)
    assert isinstance(_served(first), FrozenForest | FrozenBooster), "read lean"
    assert "compiled form cached" not in caplog.text
    assert list((tmp_path / "cache" / "compiled").iterdir()), "the first load stores an entry"
    second = load_source(source)
    assert isinstance(_served(second), FrozenForest | FrozenBooster)
    assert "compiled form cached" in caplog.text
    assert second.signature == first.signature == plain.signature

    own = estimator.predict_proba if proba else estimator.predict  # type: ignore[attr-defined]
    batches = [_rows(X, n) for n in (1, 7, 64, 1000)]
    if name == "rf-nan-cancer":  # missing values: the trees come back from the entry
        batches.append(_rows(X, 50, nan=True))
    for batch in batches:
        expected = np.asarray(own(batch))
        for model in (plain, first, second):
            got = model.predict_rows(Rows(batch)).values
            assert got.dtype == expected.dtype
            assert got.tobytes() == expected.tobytes(), f"{len(batch)} rows differ"


def test_a_regressor_asked_for_probabilities_still_fails_to_load(
    tmp_path: Path, make_source: MakeSource
) -> None:
    estimator, _ = _fit("rf-regressor")
    path = tmp_path / "reg.joblib"
    joblib.dump(estimator, path)
    load_source(_cached_source(make_source, path, tmp_path / "cache"))  # stores the entry
    with pytest.raises(ModelLoadError, match="has no predict_proba"):
        load_source(_cached_source(make_source, path, tmp_path / "cache", predict_proba=True))


def test_models_without_a_fast_path_are_not_cached(tmp_path: Path, make_source: MakeSource) -> None:
    X, y = datasets.load_iris(return_X_y=True)
    path = tmp_path / "logreg.joblib"
    joblib.dump(LogisticRegression(max_iter=500).fit(X, y), path)
    load_source(_cached_source(make_source, path, tmp_path / "cache"))
    assert not (tmp_path / "cache" / "compiled").exists()


def _from_cache(caplog: pytest.LogCaptureFixture, load: Any) -> bool:
    caplog.clear()
    load()
    return "compiled form cached" in caplog.text


def test_unusable_entries_fall_back_to_the_pickle_and_are_rewritten(
    tmp_path: Path, make_source: MakeSource, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ferry.models.loaders.pickle")
    estimator, X = _fit("rf-iris")
    path = tmp_path / "rf.joblib"
    joblib.dump(estimator, path)
    source = _cached_source(make_source, path, tmp_path / "cache")
    load_source(source)
    (entry,) = (tmp_path / "cache" / "compiled").iterdir()

    entry.write_bytes(b"not a pickle")
    assert not _from_cache(caplog, lambda: load_source(source))
    assert _from_cache(caplog, lambda: load_source(source)), "rewritten by the fallback"

    frozen = compiled.lookup(compiled.entry_path(tmp_path / "cache", path))
    assert frozen is not None
    frozen.written_by = "0.0.1"  # as if written before an upgrade of scikit-learn
    entry.write_bytes(pickle.dumps(frozen))
    assert compiled.lookup(compiled.entry_path(tmp_path / "cache", path)) is None
    assert not _from_cache(caplog, lambda: load_source(source))
    model = load_source(source)
    assert model.predict_rows(Rows(X[:5])).values.tolist() == estimator.predict(X[:5]).tolist()


def test_a_changed_model_file_never_reads_the_old_entry(
    tmp_path: Path, make_source: MakeSource, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ferry.models.loaders.pickle")
    X, y = datasets.load_iris(return_X_y=True)
    path = tmp_path / "rf.joblib"
    joblib.dump(RandomForestClassifier(5, random_state=0).fit(X, y), path)
    load_source(_cached_source(make_source, path, tmp_path / "cache"))
    newer = RandomForestClassifier(7, random_state=1).fit(X, y)
    joblib.dump(newer, path)
    model: Any = None

    def load() -> None:
        nonlocal model
        model = load_source(_cached_source(make_source, path, tmp_path / "cache"))

    assert not _from_cache(caplog, load)
    assert model.predict_rows(Rows(X)).values.tolist() == newer.predict(X).tolist()


def test_an_unwritable_cache_only_costs_the_speed_up(
    tmp_path: Path, make_source: MakeSource
) -> None:
    estimator, X = _fit("rf-iris")
    path = tmp_path / "rf.joblib"
    joblib.dump(estimator, path)
    blocked = tmp_path / "cache"
    blocked.write_text("a file where the cache directory should be")
    model = load_source(_cached_source(make_source, path, blocked))
    assert model.predict_rows(Rows(X[:3])).values.tolist() == estimator.predict(X[:3]).tolist()


_FRESH_PROCESS = """
import dataclasses, json, sys
from pathlib import Path
import numpy as np
from ferry.config import ModelSpec
from ferry.models.base import ModelSource
from ferry.types import Rows

path, cache, proba = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[4] == "proba"
spec = ModelSpec(uri=str(path), framework="pickle", predict_proba=proba)
source = ModelSource(spec=spec, path=path, framework="pickle", name="m",
                     load_after_fork=False, compiled_cache=cache)
model = source.load()
rows = np.asarray(json.loads(sys.argv[3]), dtype=np.float64)
out = model.predict_rows(Rows(rows)).values
loaded = {name: name in sys.modules for name in ("sklearn", "scipy.stats", "pandas")}
print(json.dumps({"outputs": out.tolist(), "dtype": str(out.dtype), "loaded": loaded}))
"""


@pytest.mark.parametrize("cached", [False, True], ids=["first-load", "from-cache"])
@pytest.mark.parametrize("name", ["rf-iris", "rf-regressor", "xgb-binary", "xgb-regressor"])
def test_a_fresh_process_serves_the_model_without_importing_scikit_learn(
    tmp_path: Path, make_source: MakeSource, name: str, cached: bool
) -> None:
    estimator, X = _fit(name)
    path = tmp_path / f"{name}.joblib"
    joblib.dump(estimator, path)
    proba = "regressor" not in name
    if cached:
        load_source(_cached_source(make_source, path, tmp_path / "cache", predict_proba=proba))
    rows = _rows(X, 64)
    script = textwrap.dedent(_FRESH_PROCESS)
    cache, data = str(tmp_path / "cache"), json.dumps(rows.tolist())
    result = subprocess.run(
        [sys.executable, "-c", script, str(path), cache, data, "proba" if proba else "-"],
        capture_output=True,
        text=True,
        check=True,
    )
    answer = json.loads(result.stdout)
    assert answer["loaded"] == {"sklearn": False, "scipy.stats": False, "pandas": False}
    own = estimator.predict_proba if proba else estimator.predict  # type: ignore[attr-defined]
    expected = own(rows)
    assert answer["dtype"] == str(expected.dtype)
    assert answer["outputs"] == expected.tolist()
