"""Train the benchmark models and write every format the contenders need.

Run with the main venv: ``.venv/bin/python bench/models.py``. Idempotent; ``--force`` retrains.

Writes under bench/.work/models/:
  rf.joblib, xgb.joblib            the models (joblib), served by ferry, Flask, FastAPI, LitServe
  rf_rows.json, xgb_rows.json      1000 request rows per model and the model's own predictions
  xgb.json                         XGBoost native file (MLServer's XGBoost runtime loads this)
  mlflow/rf, mlflow/xgb            MLflow model dirs (saved inside the mlflow venv)
  mlserver/<name>/                 MLServer settings.json + model-settings.json per variant
  ../bentoml/                      BentoML model store (BENTOML_HOME), saved in the bentoml venv
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
WORK = BENCH / ".work"
MODELS = WORK / "models"
ENVS = BENCH / ".envs"
BENTOML_HOME = WORK / "bentoml"
N_ROWS = 1000


def train(force: bool) -> None:
    import joblib
    import numpy as np
    from sklearn.datasets import load_iris, make_classification
    from sklearn.ensemble import RandomForestClassifier
    from xgboost import XGBClassifier

    MODELS.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    if force or not (MODELS / "rf.joblib").exists():
        x, y = load_iris(return_X_y=True)
        rf = RandomForestClassifier(n_estimators=100, random_state=0).fit(x, y)
        joblib.dump(rf, MODELS / "rf.joblib")
        # request rows: iris rows with a little noise, rounded like a client would send them
        idx = rng.integers(0, len(x), N_ROWS)
        rows = np.round(x[idx] + rng.normal(0, 0.1, (N_ROWS, x.shape[1])), 2)
        _write_rows("rf", rows, rf.predict(rows))
    if force or not (MODELS / "xgb.joblib").exists():
        x, y = make_classification(n_samples=2000, n_features=10, random_state=0)
        xgbm = XGBClassifier(n_estimators=100, max_depth=6, random_state=0).fit(x, y)
        joblib.dump(xgbm, MODELS / "xgb.joblib")
        xgbm.save_model(MODELS / "xgb.json")
        x2, _ = make_classification(n_samples=N_ROWS, n_features=10, random_state=1)
        rows = np.round(x2, 4)
        _write_rows("xgb", rows, xgbm.predict(rows))


def _write_rows(name: str, rows, preds) -> None:  # type: ignore[no-untyped-def]
    doc = {"rows": rows.tolist(), "predictions": [int(p) for p in preds]}
    (MODELS / f"{name}_rows.json").write_text(json.dumps(doc))
    # the bare rows as the wrk Lua scripts read them: one request body per file
    (MODELS / f"{name}_rows1.json").write_text(json.dumps(rows[:1].tolist()))
    (MODELS / f"{name}_rows1000.json").write_text(json.dumps(rows.tolist()))


# ------------------------------------------------------------------ peer formats
MLFLOW_EXPORT = """
import sys, joblib, mlflow.sklearn, mlflow.xgboost
src, dst, flavor = sys.argv[1:4]
model = joblib.load(src)
if flavor == "xgboost":
    mlflow.xgboost.save_model(model, dst)
else:
    # MLflow's default sklearn format is skops; the tree storage has to be trusted explicitly
    mlflow.sklearn.save_model(model, dst, skops_trusted_types=["sklearn.tree._tree.Tree"])
"""

BENTOML_EXPORT = """
import sys, joblib, bentoml
src, name, flavor = sys.argv[1:4]
model = joblib.load(src)
(bentoml.xgboost if flavor == "xgboost" else bentoml.sklearn).save_model(name, model)
"""


def export_mlflow(force: bool) -> None:
    py = ENVS / "mlflow" / "bin" / "python"
    if not py.exists():
        print("models: mlflow venv missing, skipping MLflow model dirs")
        return
    for name, flavor in (("rf", "sklearn"), ("xgb", "xgboost")):
        dst = MODELS / "mlflow" / name
        if (dst / "MLmodel").exists() and not force:
            continue
        if dst.exists():
            subprocess.run(["rm", "-rf", str(dst)], check=True)
        dst.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [str(py), "-c", MLFLOW_EXPORT, str(MODELS / f"{name}.joblib"), str(dst), flavor],
            check=True,
        )


def export_bentoml(force: bool) -> None:
    py = ENVS / "bentoml" / "bin" / "python"
    if not py.exists():
        print("models: bentoml venv missing, skipping the BentoML model store")
        return
    marker = BENTOML_HOME / ".ferry-bench-done"
    if marker.exists() and not force:
        return
    env = {
        "BENTOML_HOME": str(BENTOML_HOME),
        "BENTOML_DO_NOT_TRACK": "True",
        "PATH": "/usr/bin:/bin",
    }
    for name, flavor in (("rf", "sklearn"), ("xgb", "xgboost")):
        subprocess.run(
            [
                str(py),
                "-c",
                BENTOML_EXPORT,
                str(MODELS / f"{name}.joblib"),
                f"ferry_bench_{name}",
                flavor,
            ],
            check=True,
            env=env,
        )
    marker.touch()


def export_mlserver() -> None:
    """Model settings for MLServer: per model, with and without adaptive batching.

    The server settings (ports) are written by the runner at start time; here only the
    model-settings.json files, which are static.
    """
    impl = {
        "rf": ("mlserver_sklearn.SKLearnModel", "rf.joblib"),
        "xgb": ("mlserver_xgboost.XGBoostModel", "xgb.json"),
    }
    for name, (implementation, uri) in impl.items():
        for batching in (False, True):
            d = MODELS / "mlserver" / f"{name}{'-batch' if batching else ''}" / name
            d.mkdir(parents=True, exist_ok=True)
            settings: dict[str, object] = {
                "name": name,
                "implementation": implementation,
                "parameters": {"uri": str(MODELS / uri)},
            }
            if batching:
                settings["max_batch_size"] = 64
                settings["max_batch_time"] = 0.005
            (d / "model-settings.json").write_text(json.dumps(settings, indent=2))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--force", action="store_true", help="retrain and re-export everything")
    args = ap.parse_args()
    train(args.force)
    export_mlserver()
    export_mlflow(args.force)
    export_bentoml(args.force)
    print(f"models: ready in {MODELS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
