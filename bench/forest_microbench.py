"""Per-call latency of scikit-learn forests vs ferry's compiled forest, one thread.

    .venv/bin/python bench/forest_microbench.py [--dataset iris|digits] [--calls 200]

Prints the median seconds per call of ``predict_proba`` against the compiled function
(automatic choice, and each traversal forced) for several batch sizes, after checking the
compiled answers are bit-identical.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

BATCHES = (1, 8, 64, 256, 1000)


def _pin_threads() -> None:
    # Before numpy loads: BLAS/OpenMP pools read these once, at import.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"


def _fit(dataset: str, n_estimators: int) -> tuple[Any, Any]:
    from sklearn.datasets import load_digits, load_iris
    from sklearn.ensemble import RandomForestClassifier

    X, y = (load_iris if dataset == "iris" else load_digits)(return_X_y=True)
    model = RandomForestClassifier(n_estimators=n_estimators, random_state=0).fit(X, y)
    return model, X


def _median_times(contenders: dict[str, Callable[[], object]], calls: int) -> dict[str, float]:
    import statistics

    # Rounds of back-to-back calls per contender, rotating: each call runs warm (as in a busy
    # server) and a burst of load from a neighbour is spread over all contenders.
    rounds = 5
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, call in contenders.items():
            call()
            for _ in range(max(1, calls // rounds)):
                start = time.perf_counter()
                call()
                samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(times) for name, times in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=("iris", "digits"), default="iris")
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    _pin_threads()
    import numpy as np

    from ferry.models.forest import CompiledForest, compile_forest

    model, X = _fit(args.dataset, args.trees)
    compiled = compile_forest(model)
    assert isinstance(compiled, CompiledForest)
    rng = np.random.default_rng(0)
    print(f"{args.dataset} RandomForestClassifier({args.trees}), median of {args.calls} calls")
    print(
        f"{'rows':>5} {'sklearn':>10} {'compiled':>10} {'levels':>10} {'trees':>10} {'speedup':>8}"
    )
    for rows in BATCHES:
        batch = X[rng.integers(0, len(X), rows)] + rng.normal(0.0, 0.1, (rows, X.shape[1]))
        expected = model.predict_proba(batch)
        for walk in ("auto", "levels", "trees"):
            assert np.array_equal(compiled(batch, walk=walk), expected), (rows, walk)
        t = _median_times(
            {
                "sklearn": lambda b=batch: model.predict_proba(b),
                "compiled": lambda b=batch: compiled(b),
                "levels": lambda b=batch: compiled(b, walk="levels"),
                "trees": lambda b=batch: compiled(b, walk="trees"),
            },
            args.calls,
        )
        cells = " ".join(
            f"{t[k] * 1e6:>8.0f}us" for k in ("sklearn", "compiled", "levels", "trees")
        )
        print(f"{rows:>5} {cells} {t['sklearn'] / t['compiled']:>7.1f}x")


if __name__ == "__main__":
    main()
