"""BentoML service (1.2+ style): a class with a model from the BentoML model store.

BENTOML_HOME=bench/.work/bentoml BENCH_MODEL_NAME=rf bentoml serve bentoml_service:Classifier
"""

import os

import bentoml
import numpy as np

NAME = os.environ.get("BENCH_MODEL_NAME", "rf")
FLAVOR = bentoml.xgboost if NAME == "xgb" else bentoml.sklearn


@bentoml.service(workers=2)
class Classifier:
    def __init__(self) -> None:
        self.model = FLAVOR.load_model(f"ferry_bench_{NAME}:latest")

    @bentoml.api
    def predict(self, rows: np.ndarray) -> np.ndarray:
        return self.model.predict(rows)
