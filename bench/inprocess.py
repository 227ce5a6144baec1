"""In-process limit: the model's own predict on the same rows, timed in one process.

Run pinned like a server: ``taskset -c 1 .venv/bin/python bench/inprocess.py rf [SECONDS]``.
Prints one JSON object: rows/s for 1-row and 1000-row calls, for predict alone and for
predict with the JSON decode + encode a server must do (orjson, and the stdlib json).

``inprocess.py MODEL SECONDS 1000`` measures only the 1000-row limit with orjson: the
benchmark runs that right before and right after ferry's own 1000-row run, so that the
two are compared on the same minute of a machine whose speed drifts (docs/benchmarks.md).
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
    only = int(sys.argv[3]) if len(sys.argv) > 3 else None
    model = joblib.load(MODELS / f"{name}.joblib")
    out: dict[str, dict[str, float]] = {}
    for n in (1, 1000) if only is None else (only,):
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

        if only is not None:
            out[str(n)] = {"orjson_rows_s": rate(with_orjson, n, seconds)}
            continue
        out[str(n)] = {
            "predict_rows_s": rate(raw, n, seconds),
            "orjson_rows_s": rate(with_orjson, n, seconds),
            "json_rows_s": rate(with_json, n, seconds),
        }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
