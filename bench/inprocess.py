"""In-process limit: the model's own predict on the same rows, timed in one process.

Run pinned like a server: ``taskset -c 1 .venv/bin/python bench/inprocess.py rf``.
Prints one JSON object: rows/s for 1-row and 1000-row calls, for predict alone and for
predict with the JSON decode + encode a server must do (orjson, and the stdlib json).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import joblib
import numpy as np
import orjson

MODELS = Path(__file__).resolve().parent / ".work" / "models"


def rate(fn, n_rows: int, seconds: float) -> float:  # type: ignore[no-untyped-def]
    fn()  # warm
    calls, t0 = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return calls * n_rows / elapsed


def main() -> int:
    name = sys.argv[1]
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 2.0
    model = joblib.load(MODELS / f"{name}.joblib")
    out: dict[str, dict[str, float]] = {}
    for n in (1, 1000):
        body = (MODELS / f"{name}_rows{n}.json").read_bytes()
        x = np.asarray(orjson.loads(body), dtype=float)

        def raw(x=x):  # type: ignore[no-untyped-def]
            return model.predict(x)

        def with_orjson(body=body):  # type: ignore[no-untyped-def]
            rows = np.asarray(orjson.loads(body), dtype=float)
            return orjson.dumps(model.predict(rows), option=orjson.OPT_SERIALIZE_NUMPY)

        def with_json(body=body):  # type: ignore[no-untyped-def]
            rows = np.asarray(json.loads(body), dtype=float)
            return json.dumps(model.predict(rows).tolist()).encode()

        out[str(n)] = {
            "predict_rows_s": rate(raw, n, seconds),
            "orjson_rows_s": rate(with_orjson, n, seconds),
            "json_rows_s": rate(with_json, n, seconds),
        }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
