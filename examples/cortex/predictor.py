"""A Cortex PythonPredictor: loads the joblib model named in the API's config."""

from pathlib import Path

import joblib

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
LABELS = ["setosa", "versicolor", "virginica"]


class PythonPredictor:
    def __init__(self, config):
        # relative to this file, so the API works whatever the working directory is
        path = Path(__file__).parent / config["model_path"]
        if not path.exists():
            raise FileNotFoundError(f"{path} not found; run `python train.py` first")
        self.model = joblib.load(path)

    def predict(self, payload, query_params, headers):
        # with server_side_batching every argument is a list, one entry per request
        if isinstance(query_params, list):
            return self._classify(payload)
        return self._classify([payload])[0]

    def _classify(self, records):
        rows = [[record[name] for name in FEATURES] for record in records]
        return [LABELS[int(label)] for label in self.model.predict(rows)]
