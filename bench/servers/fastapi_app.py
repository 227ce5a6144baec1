"""FastAPI + Uvicorn, the typical tutorial recipe.

uvicorn --app-dir bench/servers fastapi_app:app --workers 2   (BENCH_MODEL=model.joblib)
"""

import os

import joblib
import numpy as np
from fastapi import FastAPI

app = FastAPI()
model = joblib.load(os.environ["BENCH_MODEL"])


@app.post("/predict")
def predict(rows: list[list[float]]) -> list[int]:
    return model.predict(np.asarray(rows, dtype=float)).tolist()
