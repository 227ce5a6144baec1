"""Flask + Gunicorn: the hand-written recipe most users start from.

gunicorn -w 2 -b 127.0.0.1:PORT --chdir bench/servers flask_app:app   (BENCH_MODEL=model.joblib)
"""

import os

import joblib
import numpy as np
from flask import Flask, jsonify, request

app = Flask(__name__)
model = joblib.load(os.environ["BENCH_MODEL"])


@app.post("/predict")
def predict():
    rows = request.get_json()
    return jsonify(model.predict(np.asarray(rows, dtype=float)).tolist())
