"""The local cluster's figures (issue 3), measured on real processes in a scratch state dir.

(a) throughput through the nginx gateway vs straight to the replica, same single-row
    workload (an iris RandomForest served from a joblib file via ``model_path``, one
    replica). wrk pinned to core 0 (with the gateway, as bench/gateway_bench.py does), the
    replica pinned to core 1 (``taskset -p`` on the pid that ``ferry describe`` reports);
    interleaved rounds, medians. Target: gateway >= 85% of direct.
(b) time from ``ferry deploy`` of an iris model to its first 200 through the gateway, cold
    (no control plane running: deploy starts it, in a new state dir each run) and warm
    (control plane and gateway up, a new API each run). The gateway is polled every 20 ms
    from the moment ``ferry deploy`` is spawned. Cold runs come in two kinds: a model file
    ferry has never seen (an empty model cache: the replica reads the pickle lean, without
    scikit-learn) and one it has served before (its compiled form is cached, see
    docs/models.md). Every run uses a scratch ``XDG_CACHE_HOME``, so runs do not depend on
    the user's cache. Target < 3 s.
(c) failed requests (non-2xx + socket errors, as wrk counts them) through the gateway
    during a rolling update under load (a changed ``config`` value redeployed while wrk
    runs) and during a SIGKILL of one of two replicas under load.

Only the public CLI is used (``python -m ferry`` with FERRY_STATE_DIR / FERRY_GATEWAY_PORT
and ``--output json``). Prints a table and writes docs/benchmarks-cluster.md.

    .venv/bin/python bench/cluster_bench.py [--seconds 5] [--rounds 3] [--connections 32]
    .venv/bin/python bench/cluster_bench.py --only deploy --cold 5 --warm 5   # (b) alone
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks-cluster.md"
LOAD_CPU, REPLICA_CPU = "0", "1"
BODY = "[[5.1, 3.5, 1.4, 0.2]]"
JSON = {"content-type": "application/json"}

LUA = """\
wrk.method = "POST"
wrk.body = 'BODY'
wrk.headers["Content-Type"] = "application/json"
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) non2xx = 0 end
function response(status, headers, body)
  if status < 200 or status > 299 then non2xx = non2xx + 1 end
end
function done(summary, latency, requests)
  local n = 0
  for _, t in ipairs(threads) do n = n + (t:get("non2xx") or 0) end
  local e = summary.errors
  io.write(string.format('WRK_JSON {"requests": %d, "duration_us": %d, "non2xx": %d, ' ..
    '"connect": %d, "read": %d, "write": %d, "timeout": %d, "p50_ms": %.3f, ' ..
    '"p99_ms": %.3f}\\n', summary.requests, summary.duration, n, e.connect, e.read,
    e.write, e.timeout, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
""".replace("BODY", BODY)


def spec(name: str, replicas: int = 1, marker: str = "v1") -> str:
    return f"""\
- name: {name}
  kind: RealtimeAPI
  predictor:
    type: python
    model_path: model.joblib
    config:
      marker: {marker}
  autoscaling:
    min_replicas: {replicas}
    max_replicas: {replicas}
  update_strategy:
    max_surge: 1
    max_unavailable: 0
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


class Cluster:
    """One local cluster under a scratch state dir, driven through ``python -m ferry``.

    ``cache`` is the XDG cache home of every ferry process (model files and their compiled
    forms live under it); ``state`` names the state dir, so several clusters can share a
    scratch dir and its trained model."""

    def __init__(self, scratch: Path, state: str = "state", cache: str = "cache") -> None:
        self.scratch = scratch
        self.state = scratch / state
        self.port = free_port()
        self.gateway = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "FERRY_STATE_DIR": str(self.state),
            "FERRY_GATEWAY_PORT": str(self.port),
            "XDG_CACHE_HOME": str(scratch / cache),
        }
        self.model = scratch / "model.joblib"

    def project(self, name: str, replicas: int = 1, marker: str = "v1") -> Path:
        path = self.scratch / name
        path.mkdir(exist_ok=True)
        if not (path / "model.joblib").exists():
            os.link(self.model, path / "model.joblib")
        (path / "ferry.yaml").write_text(spec(name, replicas, marker))
        return path

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "ferry", *args]

    def ferry(self, *args: str, cwd: Path | None = None) -> str:
        out = subprocess.run(
            self.argv(*args), cwd=cwd or self.scratch, env=self.env,
            capture_output=True, text=True, timeout=180, check=False,
        )  # fmt: skip
        if out.returncode != 0:
            raise RuntimeError(f"ferry {' '.join(args)}: {out.stdout[-500:]} {out.stderr[-500:]}")
        return out.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ferry(*args, "--output", "json"))

    def describe(self, name: str) -> dict[str, Any]:
        return dict(self.json("describe", name))

    def ready(self, name: str) -> list[dict[str, Any]]:
        return [r for r in self.describe(name)["replica_list"] if r["state"] == "ready"]

    def nginx_processes(self) -> tuple[str, str]:
        """The gateway's master pid and its workers' pids (a reload replaces the workers)."""
        master = (self.state / "runtime" / "gateway" / "nginx.pid").read_text().strip()
        children = Path(f"/proc/{master}/task/{master}/children").read_text().strip()
        return master, children


def train(path: Path) -> None:
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    x, y = load_iris(return_X_y=True)
    joblib.dump(RandomForestClassifier(n_estimators=20, random_state=0).fit(x, y), path)


def wrk_argv(url: str, connections: int, seconds: float, script: Path) -> list[str]:
    return [
        "taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s",
        "--timeout", "10s", "-s", str(script), url,
    ]  # fmt: skip


def parse_wrk(returncode: int, stdout: str, stderr: str) -> dict[str, Any]:
    found = re.search(r"^WRK_JSON (.*)$", stdout, re.M)
    if returncode != 0 or not found:
        raise RuntimeError(f"wrk failed ({returncode}): {stdout[-300:]} {stderr[-300:]}")
    result = dict(json.loads(found.group(1)))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["failed"] = sum(result[k] for k in ("non2xx", "connect", "read", "write", "timeout"))
    return result


def run_wrk(url: str, connections: int, seconds: float, script: Path) -> dict[str, Any]:
    argv = wrk_argv(url, connections, seconds, script)
    out = subprocess.run(argv, capture_output=True, text=True, check=False)
    return parse_wrk(out.returncode, out.stdout, out.stderr)


class WrkInBackground:
    """wrk running until ``stop`` (SIGINT: wrk stops and still prints its summary)."""

    def __init__(self, url: str, connections: int, script: Path, limit: float = 120) -> None:
        self._process = subprocess.Popen(
            wrk_argv(url, connections, limit, script),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.started = time.perf_counter()

    def stop(self) -> dict[str, Any]:
        self._process.send_signal(signal.SIGINT)
        out, err = self._process.communicate(timeout=30)
        return parse_wrk(self._process.returncode, out, err)


def pin(pids: list[int], cpu: str) -> None:
    for pid in pids:
        subprocess.run(["taskset", "-a", "-p", "-c", cpu, str(pid)], capture_output=True)


def gateway_pids(state: Path) -> list[int]:
    out = subprocess.run(["pgrep", "-f", "nginx"], capture_output=True, text=True).stdout
    mine = []
    for pid in map(int, out.split()):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            if str(state) in cmdline:
                mine.append(pid)
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
                mine.extend(int(c) for c in children)
        except OSError:
            continue
    return sorted(set(mine))


def first_prediction(cluster: Cluster, name: str, project: Path) -> dict[str, Any]:
    """Spawn ``ferry deploy`` and poll the gateway until the API answers 200."""
    url = f"{cluster.gateway}/{name}"
    load_before = load_average()
    start, wall = time.perf_counter(), time.time()
    deploy = subprocess.Popen(
        cluster.argv("deploy", "."), cwd=project, env=cluster.env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    first: float | None = None
    with httpx.Client(timeout=2) as http:
        while time.perf_counter() - start < 60:
            try:
                if http.post(url, content=BODY, headers=JSON).status_code == 200:
                    first = time.perf_counter() - start
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.02)
    out, err = deploy.communicate(timeout=120)
    returned = time.perf_counter() - start
    if deploy.returncode != 0:
        raise RuntimeError(f"deploy of {name} failed: {out[-300:]} {err[-300:]}")
    phases: dict[str, float] = {"load_before": load_before}
    for event in cluster.json("describe", name, "--events", "50")["events"]:
        message = str(event["message"])
        if message.startswith("deployed revision") and "request_s" not in phases:
            phases["request_s"] = float(event["at"]) - wall  # the CLI's request arrived
        if message.startswith("starting replica") and "replica_started_s" not in phases:
            phases["replica_started_s"] = float(event["at"]) - wall
        if message.startswith("status live") and "live_s" not in phases:
            phases["live_s"] = float(event["at"]) - wall
    return {"first_200_s": first, "deploy_returned_s": returned, **phases}


def cold_deploys(scratch: Path, runs: int) -> dict[str, list[dict[str, Any]]]:
    """``runs`` cold deploys of a model file ferry has never seen (a new state dir and an
    empty model cache each time), each followed by one of the same file with its compiled
    form cached (a new state dir, the cache the run before filled)."""
    found: dict[str, list[dict[str, Any]]] = {"new": [], "cached": []}
    for run in range(runs):
        for kind in ("new", "cached"):
            cluster = Cluster(scratch, state=f"state-cold{run}-{kind}", cache=f"cache-cold{run}")
            name = f"iris-cold{run}-{kind}"
            try:
                found[kind].append(first_prediction(cluster, name, cluster.project(name)))
            finally:
                cluster.ferry("cluster", "down")
    return found


def spread(values: list[float | None]) -> dict[str, Any]:
    """Median, min and max of the runs that reached a first 200 (and how many did not)."""
    reached = sorted(v for v in values if v is not None)
    if not reached:
        return {"median": None, "min": None, "max": None, "missed": len(values), "all": values}
    return {
        "median": statistics.median(reached), "min": reached[0], "max": reached[-1],
        "missed": len(values) - len(reached), "all": values,
    }  # fmt: skip


def bench_throughput(
    cluster: Cluster, script: Path, seconds: float, rounds: int, connections: int
) -> dict[str, Any]:
    project = cluster.project("iris")
    cluster.ferry("deploy", ".", cwd=project)
    (replica,) = cluster.ready("iris")
    pin([int(replica["pid"])], REPLICA_CPU)
    pin(gateway_pids(cluster.state), LOAD_CPU)
    urls = {
        "direct": f"http://{replica['address'].removeprefix('http://')}/predict",
        "gateway": f"{cluster.gateway}/iris",
    }
    for url in urls.values():
        answer = httpx.post(url, content=BODY, headers=JSON)
        assert answer.status_code == 200, (url, answer.status_code, answer.text)
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in urls}
    loads = []
    for _ in range(rounds):
        for target, url in urls.items():
            run_wrk(url, connections, 1, script)  # warm-up
            runs[target].append(run_wrk(url, connections, seconds, script))
            loads.append(load_average())
    rps = {k: statistics.median(r["rps"] for r in v) for k, v in runs.items()}
    p99 = {k: statistics.median(r["p99_ms"] for r in v) for k, v in runs.items()}
    failed = {k: sum(r["failed"] for r in v) for k, v in runs.items()}
    return {
        "urls": urls, "rps": rps, "p99_ms": p99, "failed": failed,
        "ratio": rps["gateway"] / rps["direct"], "runs": runs, "load": loads,
    }  # fmt: skip


def bench_rolling_update(cluster: Cluster, script: Path, connections: int) -> dict[str, Any]:
    project = cluster.project("iris-ha", replicas=2)
    cluster.ferry("deploy", ".", cwd=project)
    before = {r["id"] for r in cluster.ready("iris-ha")}
    revision = cluster.describe("iris-ha")["running_revision"]
    load = WrkInBackground(f"{cluster.gateway}/iris-ha", connections, script)
    try:
        time.sleep(3)
        cluster.project("iris-ha", replicas=2, marker="v2")
        started = time.perf_counter()
        cluster.ferry("deploy", ".", cwd=project)
        done = None
        while time.perf_counter() - started < 60:
            listed = cluster.describe("iris-ha")["replica_list"]
            ready = [r for r in listed if r["state"] == "ready"]
            if not {r["id"] for r in listed} & before and len(ready) == 2:
                done = time.perf_counter() - started
                break
            time.sleep(0.5)
        time.sleep(3)  # and a little steady state after the last old replica is gone
    finally:
        result = load.stop()
    after = cluster.describe("iris-ha")
    return {
        "wrk": result,
        "rollout_s": done,
        "load_s": time.perf_counter() - load.started,
        "revision_changed": after["running_revision"] != revision,
        "replicas_replaced": not ({r["id"] for r in after["replica_list"]} & before),
    }


def bench_reload(cluster: Cluster, script: Path, connections: int) -> dict[str, Any]:
    """Load on iris-ha while an unrelated API is deployed and deleted (routes change)."""
    before = {r["id"] for r in cluster.ready("iris-ha")}
    nginx = cluster.nginx_processes()
    load = WrkInBackground(f"{cluster.gateway}/iris-ha", connections, script)
    try:
        time.sleep(3)
        cluster.ferry("deploy", ".", cwd=cluster.project("iris-other"))
        time.sleep(2)
        cluster.ferry("delete", "iris-other", "--yes")
        time.sleep(3)
    finally:
        result = load.stop()
    return {
        "wrk": result,
        "load_s": time.perf_counter() - load.started,
        "iris_ha_untouched": {r["id"] for r in cluster.ready("iris-ha")} == before,
        "nginx_untouched": cluster.nginx_processes() == nginx,
    }


def bench_sigkill(cluster: Cluster, script: Path, connections: int) -> dict[str, Any]:
    ready = cluster.ready("iris-ha")
    assert len(ready) == 2, ready
    victim = ready[0]
    load = WrkInBackground(f"{cluster.gateway}/iris-ha", connections, script)
    try:
        time.sleep(4)
        in_flight_before = cluster.describe("iris-ha")["replica_list"]
        os.kill(int(victim["pid"]), signal.SIGKILL)
        killed_at = time.perf_counter()
        back = None
        while time.perf_counter() - killed_at < 45:
            pids = {r["pid"] for r in cluster.ready("iris-ha")}
            if len(pids) == 2 and victim["pid"] not in pids:
                back = time.perf_counter() - killed_at
                break
            time.sleep(0.5)
        time.sleep(3)
    finally:
        result = load.stop()
    return {
        "wrk": result,
        "replaced_s": back,
        "load_s": time.perf_counter() - load.started,
        "in_flight_seen": {r["id"]: r["in_flight"] for r in in_flight_before},
        "victim": victim["id"],
    }


def machine() -> dict[str, Any]:
    cpu = re.search(r"^model name\s*:\s*(.*)$", Path("/proc/cpuinfo").read_text(), re.M)
    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True)
    return {
        "cpu": cpu.group(1) if cpu else "",
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "nginx": (nginx.stderr or nginx.stdout).strip(),
    }


def fmt_s(value: float | None) -> str:
    return "not reached" if value is None else f"{value:.2f} s"


def fmt_spread(summary: dict[str, Any]) -> str:
    if summary["median"] is None:
        return "not reached"
    text = f"{summary['median']:.2f} s ({summary['min']:.2f}-{summary['max']:.2f})"
    return text + (f", {summary['missed']} not reached" if summary["missed"] else "")


def deploy_summary(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """(b) by kind: the first-200 and deploy-returned spreads."""
    kinds = {
        "cold, model never seen": results["cold"]["new"],
        "cold, compiled form cached": results["cold"]["cached"],
        "warm": results["warm"],
    }
    return {
        kind: {
            "first_200": spread([run["first_200_s"] for run in runs]),
            "returned": spread([run["deploy_returned_s"] for run in runs]),
            "runs": runs,
        }
        for kind, runs in kinds.items()
    }


def deploy_rows(results: dict[str, Any]) -> list[tuple[str, str, str, bool]]:
    rows = []
    for kind, summary in deploy_summary(results).items():
        first = summary["first_200"]
        met = first["median"] is not None and first["max"] < 3 and not first["missed"]
        label = f"deploy -> first 200, {kind} (median, min-max of {len(summary['runs'])})"
        rows.append((label, "< 3 s", fmt_spread(first), met))
    return rows


def deploy_details(results: dict[str, Any]) -> list[str]:
    lines = [
        "- (b) Clock starts when `ferry deploy` is spawned; the gateway is polled every 20 ms "
        "until the API answers 200. Cold: no control plane runs, `ferry deploy` starts it "
        "(and the gateway) in a new state dir; warm: the control plane is up with another API "
        "deployed, each run deploys a new API. Per run: first 200 / `ferry deploy` returned / "
        "the CLI's deploy request reached the control plane / `starting replica` (seconds "
        "after the spawn) / 1-min load average before the run:"
    ]
    for kind, summary in deploy_summary(results).items():
        runs = "; ".join(
            f"{fmt_s(run['first_200_s'])} / {fmt_s(run['deploy_returned_s'])} / "
            f"{run.get('request_s', float('nan')):.2f} / "
            f"{run.get('replica_started_s', float('nan')):.2f} / {run['load_before']:.1f}"
            for run in summary["runs"]
        )
        returned = fmt_spread(summary["returned"])
        after = spread(
            [
                run["first_200_s"] - run["request_s"]
                if run["first_200_s"] is not None and "request_s" in run
                else None
                for run in summary["runs"]
            ]
        )
        lines.append(
            f"  - {kind}: {runs}. `ferry deploy` returned after {returned}; first 200 "
            f"{fmt_spread(after)} after the deploy request reached the control plane."
        )
    return lines


def report(results: dict[str, Any], command: str) -> str:
    t = results["throughput"]
    roll, kill, reload = results["rolling"], results["sigkill"], results["reload"]
    victim_in_flight = kill["in_flight_seen"].get(
        kill["victim"], results["failure_connections"] // 2
    )
    loads = results["loads"]
    rows = [
        (f"gateway throughput vs direct (c{results['connections']})", ">= 85%",
         f"{t['ratio']:.0%} ({t['rps']['gateway']:.0f} vs {t['rps']['direct']:.0f} req/s)",
         t["ratio"] >= 0.85),
        *deploy_rows(results),
        ("failed requests, rolling update under load", "0",
         f"{roll['wrk']['failed']} of {roll['wrk']['requests']}", roll["wrk"]["failed"] == 0),
        ("failed requests, SIGKILL of 1 of 2 replicas",
         f"only in-flight ones (<= {victim_in_flight})",
         f"{kill['wrk']['failed']} of {kill['wrk']['requests']}",
         kill["wrk"]["failed"] <= victim_in_flight),
        ("failed requests, other API deployed and deleted", "0",
         f"{reload['wrk']['failed']} of {reload['wrk']['requests']}",
         reload["wrk"]["failed"] == 0),
    ]  # fmt: skip
    table = ["| figure | target | measured | met |", "| --- | --- | --- | --- |"]
    table += [f"| {a} | {b} | {c} | {'yes' if d else '**no**'} |" for a, b, c, d in rows]
    m = results["machine"]
    lines = [
        "# Local cluster benchmarks",
        "",
        "Issue 3's figures for the local cluster (control plane, `ferry serve` replicas, nginx",
        "gateway), measured by `bench/cluster_bench.py` on real processes in a scratch state",
        "dir, through the public CLI only. The machine is shared and noisy: read the ratios.",
        "",
        f"- Run: {results['started']} UTC, total {results['total_s']:.0f} s.",
        f"- Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, {m['nginx']}.",
        f"- Command: `{command}`",
        f"- Load average (1 min) during the run: at start {loads[0]:.2f}, median "
        f"{statistics.median(loads):.2f}, max {max(loads):.2f} (2 cores: above 2 means other",
        "  work shared the machine).",
        "",
        "## Targets",
        "",
        *table,
        "",
        "## Details",
        "",
        f"- (a) Single-row iris RandomForest (20 trees, joblib, `model_path`), one replica "
        f"pinned to core {REPLICA_CPU}; wrk (1 thread, {results['connections']} connections, "
        f"{results['seconds']:g} s runs after 1 s warm-up) and the nginx gateway pinned to core "
        f"{LOAD_CPU}; {results['rounds']} interleaved rounds, medians. direct "
        f"{t['rps']['direct']:.0f} req/s (p99 {t['p99_ms']['direct']:.1f} ms), gateway "
        f"{t['rps']['gateway']:.0f} req/s (p99 {t['p99_ms']['gateway']:.1f} ms); per round: "
        + ", ".join(
            f"{d['rps']:.0f}/{g['rps']:.0f}"
            for d, g in zip(t["runs"]["direct"], t["runs"]["gateway"], strict=True)
        )
        + " (direct/gateway). Failed requests in these runs: "
        f"{t['failed']['direct']} direct, {t['failed']['gateway']} gateway.",
        *deploy_details(results),
        f"- (c) Rolling update: API with 2 replicas (max_surge 1, max_unavailable 0), wrk "
        f"{results['failure_connections']} connections through the gateway for "
        f"{roll['load_s']:.0f} s (until 3 s after the rollout finished); after 3 s the "
        "predictor `config` is changed and `ferry deploy` run again. New revision running: "
        f"{roll['revision_changed']}, all replicas replaced: {roll['replicas_replaced']} "
        f"(after {fmt_s(roll['rollout_s'])}). wrk: {roll['wrk']['requests']} requests, "
        f"non-2xx {roll['wrk']['non2xx']}, socket errors connect {roll['wrk']['connect']} / "
        f"read {roll['wrk']['read']} / write {roll['wrk']['write']} / timeout "
        f"{roll['wrk']['timeout']}.",
        f"- (c) SIGKILL: same API, wrk {results['failure_connections']} connections for "
        f"{kill['load_s']:.0f} s; after 4 s one of the two replicas is killed with SIGKILL. "
        "A new process for it (new pid) ready after "
        f"{fmt_s(kill['replaced_s'])}. wrk: {kill['wrk']['requests']} requests, non-2xx "
        f"{kill['wrk']['non2xx']}, socket errors connect {kill['wrk']['connect']} / read "
        f"{kill['wrk']['read']} / write {kill['wrk']['write']} / timeout "
        f"{kill['wrk']['timeout']}. At most {results['failure_connections']} requests can be in "
        "flight in total (wrk's connections), so about half of that on the killed replica; "
        f"in-flight gauges read just before the kill: {kill['in_flight_seen']}.",
        f"- (c) Another API deployed and deleted: same API and load "
        f"({reload['load_s']:.0f} s); after 3 s an unrelated API "
        "is deployed, then deleted, which changes the gateway's routes twice (read by the "
        "running nginx, no reload: docs/decisions/0010-routes-in-the-gateway.md); nginx's "
        f"master and workers the same throughout ({reload['nginx_untouched']}); the "
        "replicas serving the load are untouched "
        f"({reload['iris_ha_untouched']}). wrk: {reload['wrk']['requests']} requests, "
        f"non-2xx {reload['wrk']['non2xx']}, socket errors connect {reload['wrk']['connect']}"
        f" / read {reload['wrk']['read']} / write {reload['wrk']['write']} / timeout "
        f"{reload['wrk']['timeout']}.",
        "",
        "## Reading the figures",
        "",
        "- (a) On a 2-core machine wrk and nginx share core 0, so every cycle the gateway "
        "spends is taken from the load generator: the ratio is a lower bound, and it moves "
        "with the machine's load (docs/decisions/0004-gateway.md measured nginx at 66% of "
        "direct at c16 and 102% at c64 with the same pinning).",
        "- (b) Replicas are forked from the control plane's zygote (docs/decisions/"
        "0008-zygote.md): warm, the zygote has `ferry serve` and scikit-learn imported, so "
        "a replica is ready ~0.2 s after `starting replica` and the clock is mostly the "
        "`ferry deploy` command's own start-up (~0.5 s of imports). Cold, `ferry deploy` "
        "starts the control plane, which starts the zygote; the replica is forked once "
        "`ferry serve`'s modules are in (under a second), while the zygote's second stage "
        "still imports scikit-learn, SciPy and pandas (~2 s alone on this machine). Neither "
        "kind of model file needs them: one ferry has never seen is read lean (its pickle's "
        "arrays, without scikit-learn; docs/models.md), one it has served before comes "
        "from the compiled cache. On 2 cores every process of a cold "
        "start (the CLI, the control plane, both zygote stages, the replica) competes with "
        "whatever else runs: compare the load averages per run.",
        "- (c) A wrk `read` error is a connection the gateway closed without an answer; "
        "wrk reconnects and carries on. The gateway retries a request on another replica "
        "when the connection to the first fails (`proxy_next_upstream error ... "
        "non_idempotent` in the gateway's nginx config), which is why a SIGKILL can cost "
        "fewer requests than were in flight on the killed replica.",
        "",
    ]
    return "\n".join(lines)


def warm_deploys(cluster: Cluster, runs: int) -> list[dict[str, Any]]:
    """``runs`` deploys of a new API each on the running cluster, each deleted after."""
    found = []
    for run in range(runs):
        name = f"iris-warm{run}"
        found.append(first_prediction(cluster, name, cluster.project(name)))
        cluster.ferry("delete", name, "--yes")
    return found


def print_deploys(results: dict[str, Any]) -> int:
    for kind, summary in deploy_summary(results).items():
        first, returned = summary["first_200"], summary["returned"]
        print(f"{kind}: first 200 {fmt_spread(first)}; deploy returned {fmt_spread(returned)}")
        print("   ", [round(v, 2) if v is not None else None for v in first["all"]])
    print("\n".join(deploy_details(results)))
    print(json.dumps({k: results[k] for k in ("cold", "warm")}, default=str))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64, help="wrk connections for (a)")
    parser.add_argument(
        "--failure-connections", type=int, default=32, help="wrk connections for (c)"
    )
    parser.add_argument("--warm", type=int, default=3, help="warm deploys to time")
    parser.add_argument("--cold", type=int, default=3, help="cold deploys to time, per kind")
    parser.add_argument(
        "--only", choices=["all", "deploy"], default="all", help="deploy: (b) only, no doc"
    )
    parser.add_argument("--no-doc", action="store_true", help="do not write the doc")
    args = parser.parse_args()
    for tool in ("wrk", "taskset", "nginx"):
        if shutil.which(tool) is None:
            print(f"{tool} is needed (bench/setup.sh)", file=sys.stderr)
            return 2
    command = " ".join([".venv/bin/python bench/cluster_bench.py", *sys.argv[1:]])
    begin = time.perf_counter()
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()),
        "machine": machine(),
        "seconds": args.seconds,
        "rounds": args.rounds,
        "connections": args.connections,
        "failure_connections": args.failure_connections,
        "loads": [load_average()],
    }
    scratch = Path(tempfile.mkdtemp(prefix="ferry-cluster-bench-"))
    cluster = Cluster(scratch)
    script = scratch / "post.lua"
    script.write_text(LUA)
    try:
        train(cluster.model)
        print("(b) cold deploys ...", flush=True)
        results["cold"] = cold_deploys(scratch, args.cold)
        results["loads"].append(load_average())
        if args.only == "deploy":
            cluster.ferry("deploy", ".", cwd=cluster.project("iris"))
            results["warm"] = warm_deploys(cluster, args.warm)
            return print_deploys(results)
        print("(a) throughput ...", flush=True)
        results["throughput"] = bench_throughput(
            cluster, script, args.seconds, args.rounds, args.connections
        )
        results["loads"] += results["throughput"]["load"]
        print("(b) warm deploys ...", flush=True)
        results["warm"] = warm_deploys(cluster, args.warm)
        results["loads"] += [run["load_before"] for run in results["warm"]]
        cluster.ferry("delete", "iris", "--yes")
        print("(c) rolling update under load ...", flush=True)
        results["rolling"] = bench_rolling_update(cluster, script, args.failure_connections)
        results["loads"].append(load_average())
        print("(c) gateway reloads only, under load ...", flush=True)
        results["reload"] = bench_reload(cluster, script, args.failure_connections)
        results["loads"].append(load_average())
        print("(c) SIGKILL under load ...", flush=True)
        results["sigkill"] = bench_sigkill(cluster, script, args.failure_connections)
        results["loads"].append(load_average())
    finally:
        try:
            cluster.ferry("cluster", "down")
        except Exception as error:  # still report what was measured
            print(f"cluster down failed: {error}", file=sys.stderr)
        left = subprocess.run(["pgrep", "-f", str(scratch)], capture_output=True, text=True)
        if left.stdout.strip():
            print(f"left behind: {left.stdout.split()}", file=sys.stderr)
        shutil.rmtree(scratch, ignore_errors=True)
    results["total_s"] = time.perf_counter() - begin
    text = report(results, command)
    table = text.split("## Targets", 1)[1].split("## Details", 1)[0]
    print(table.strip())
    print(json.dumps({k: v for k, v in results.items() if k != "throughput"}, default=str))
    if not args.no_doc:
        DOC.write_text(text)
        print(f"wrote {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
