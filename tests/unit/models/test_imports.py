"""Native boosters load without scikit-learn (or pandas, for LightGBM) in a fresh process.

The frameworks import scikit-learn only for their wrapper classes; a server serving a
native booster must not pay for it, and must answer exactly what the booster answers.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
import pytest
import xgboost
from sklearn import datasets
from sklearn.base import ClassifierMixin

from ferry.models.imports import import_lean

Array = np.ndarray[Any, Any]

_FRESH = """
import json, sys
from pathlib import Path
from typing import Any
import numpy as np
from ferry.config import ModelSpec
from ferry.models.base import ModelSource
from ferry.types import Rows

path, framework = Path(sys.argv[1]), sys.argv[2]
spec = ModelSpec(uri=str(path), framework=framework, predict_proba=True)
source = ModelSource(spec=spec, path=path, framework=framework, name="m", load_after_fork=False)
model = source.load()
rows = np.asarray(json.loads(sys.argv[3]), dtype=np.float64)
out = model.predict_rows(Rows(rows)).values
loaded = {name: name in sys.modules for name in ("sklearn", "pandas")}
print(json.dumps({"outputs": out.tolist(), "loaded": loaded}))
"""


def _booster(tmp_path: Path, framework: str) -> tuple[Path, Array, Array]:
    X, y = datasets.load_breast_cancer(return_X_y=True)
    rows = X[::7]
    if framework == "xgboost":
        booster = xgboost.train(
            {"objective": "binary:logistic", "max_depth": 3}, xgboost.DMatrix(X, y), 20
        )
        path = tmp_path / "model.ubj"
        booster.save_model(path)
        expected = booster.inplace_predict(rows)
    else:
        params = {"objective": "binary", "verbose": -1, "num_leaves": 7}
        lgb_booster = lightgbm.train(params, lightgbm.Dataset(X, y), 20)
        path = tmp_path / "model.txt"
        lgb_booster.save_model(path)
        expected = lgb_booster.predict(rows)
    return path, rows, np.asarray(expected)


@pytest.mark.parametrize("framework", ["xgboost", "lightgbm"])
def test_a_native_booster_is_served_without_scikit_learn(tmp_path: Path, framework: str) -> None:
    path, rows, expected = _booster(tmp_path, framework)
    data = json.dumps(rows.tolist())
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_FRESH), str(path), framework, data],
        capture_output=True,
        text=True,
        check=True,
    )
    answer = json.loads(result.stdout)
    assert answer["loaded"]["sklearn"] is False
    if framework == "lightgbm":
        assert answer["loaded"]["pandas"] is False
    got = np.asarray(answer["outputs"])
    assert got.shape == (len(rows), 2)
    assert got[:, 1].tolist() == expected.tolist()


def test_an_integration_already_loaded_is_not_hidden() -> None:
    # This process imported scikit-learn (above): the framework comes back whole.
    module = import_lean("xgboost")
    assert module is xgboost
    assert issubclass(xgboost.XGBClassifier, ClassifierMixin)
