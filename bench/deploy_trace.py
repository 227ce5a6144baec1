"""Where the time of a ``ferry deploy`` goes: one cold and one warm deploy, traced.

Every ferry process (the CLI, the control plane, the zygote, the replica) appends
timestamps to one file through bench/trace/sitecustomize.py; this prints them relative
to the moment ``ferry deploy`` was spawned, with the first 200 through the gateway.
Uses bench/cluster_bench.py's cluster helpers (scratch state dir and model cache).

    .venv/bin/python bench/deploy_trace.py [--cached]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import cluster_bench as bench  # noqa: E402


def show(trace: Path, start: float, until: float) -> None:
    for line in trace.read_text().splitlines():
        at, pid, event = line.split(" ", 2)
        offset = float(at) - start
        if 0 <= offset <= until:
            print(f"{offset:7.3f} {pid:>7} {event[:110]}")


def traced_deploy(cluster: bench.Cluster, name: str, trace: Path) -> None:
    with trace.open("a") as stream:
        stream.write(f"{time.time():.3f} bench deploy {name}\n")
    start = time.time()
    result = bench.first_prediction(cluster, name, cluster.project(name))
    print(f"--- {name}: {json.dumps({k: round(v, 2) for k, v in result.items()})}")
    show(trace, start, (result["deploy_returned_s"] or 30) + 0.2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cached", action="store_true", help="deploy a model seen before")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="ferry-deploy-trace-"))
    trace = scratch / "trace.log"
    cluster = bench.Cluster(scratch)
    cluster.env["FERRY_TRACE"] = str(trace)
    cluster.env["PYTHONPATH"] = str(HERE / "trace")
    try:
        bench.train(cluster.model)
        if args.cached:  # serve it once, so its compiled form is in the cache
            bench.first_prediction(cluster, "iris-seen", cluster.project("iris-seen"))
            cluster.ferry("cluster", "down")
        traced_deploy(cluster, "iris-cold", trace)
        traced_deploy(cluster, "iris-warm", trace)
    finally:
        cluster.ferry("cluster", "down")
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
