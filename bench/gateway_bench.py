"""Gateway choice by measurement: one `ferry serve` replica direct vs behind each proxy.

Trains an iris RandomForest (20 trees), starts one replica (1 worker, no access log)
pinned to the replica core, and drives single-row POSTs with wrk pinned to the load
core, straight to the replica and through each proxy, at each concurrency. Targets:

- ``ferry``: the local cluster's gateway as it runs (ferry.runtime.local.nginx_conf and
  its routes file; nginx with the routes in Lua, decision 0010);
- ``nginx-static``: plain nginx with the route written in its config (an upstream with
  least_conn and keep-alive, an exact location), the gateway before decision 0010;
- ``haproxy``: the equivalent in HAProxy (leastconn, keep-alive, path rewrite).

Each proxy runs one worker/thread pinned to --proxy-cpu (default: the load core, so that
it does not take CPU from the model server). Targets are measured in interleaved rounds.

    .venv/bin/python bench/gateway_bench.py [--seconds 10] [--connections 16,64] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import joblib

from ferry.runtime.base import ApiRoute, RoutingTable
from ferry.runtime.local.nginx_conf import GatewayLayout, GatewayOptions, render, render_routes

BODY = "[[5.1, 3.5, 1.4, 0.2]]"
LOAD_CPU, REPLICA_CPU = "0", "1"
HAPROXY_CFG = """global
    nbthread 1
    maxconn 4096
    pidfile {prefix}/haproxy.pid
defaults
    mode http
    timeout connect 5s
    timeout client 65s
    timeout server 65s
    option http-keep-alive
    http-reuse always
frontend gateway
    bind 127.0.0.1:{port}
    acl is_iris path /iris
    http-request return status 404 content-type application/json string "{{}}" if !is_iris
    use_backend iris if is_iris
backend iris
    balance leastconn
    http-request set-path /predict
    server r1 127.0.0.1:{upstream} maxconn 1024
"""


NGINX_STATIC_CFG = """daemon off;
{user}worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/temp;
    proxy_temp_path {prefix}/temp;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_next_upstream error http_503 non_idempotent;
    proxy_buffering off;
    upstream iris {{
        least_conn;
        server 127.0.0.1:{upstream} max_conns=1024;
        keepalive 64;
        keepalive_requests 100000;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = /iris {{ proxy_pass http://iris/predict; }}
        location / {{ return 404 '{{}}'; }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            answer = httpx.post(url, content=BODY, headers={"content-type": "application/json"})
            if answer.is_success:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not answer")


def train(scratch: Path) -> Path:
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    iris = load_iris()
    model = RandomForestClassifier(n_estimators=20, random_state=0).fit(iris.data, iris.target)
    path = scratch / "iris.joblib"
    joblib.dump(model, path)
    return path


def start_replica(model: Path, port: int, scratch: Path) -> subprocess.Popen[bytes]:
    argv = ["taskset", "-c", REPLICA_CPU, sys.executable, "-m", "ferry", "serve", str(model)]
    argv += ["--port", str(port), "--workers", "1", "--no-access-log"]
    log = open(scratch / "replica.log", "wb")  # noqa: SIM115 - lives as long as the process
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def start_ferry(upstream: int, port: int, scratch: Path, cpu: str) -> subprocess.Popen[bytes]:
    layout = GatewayLayout(scratch / f"ferry-{cpu}")
    for path in (layout.prefix, layout.error_log.parent, layout.temp):
        path.mkdir(parents=True, exist_ok=True)
    options = GatewayOptions(
        port=port, user="root" if os.geteuid() == 0 else None, access_log=False
    )
    table = RoutingTable(apis=(ApiRoute("iris", "/iris", (f"127.0.0.1:{upstream}",)),))
    layout.routes.write_text(render_routes(table))
    layout.conf.write_text(render(layout, options).replace("daemon on;", "daemon off;"))
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    argv = ["taskset", "-c", cpu, nginx, "-p", f"{layout.prefix}/", "-e", str(layout.error_log)]
    return subprocess.Popen([*argv, "-c", str(layout.conf)], start_new_session=True)


def start_nginx_static(
    upstream: int, port: int, scratch: Path, cpu: str
) -> subprocess.Popen[bytes]:
    prefix = scratch / f"nginx-static-{cpu}"
    (prefix / "temp").mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf.write_text(NGINX_STATIC_CFG.format(prefix=prefix, port=port, upstream=upstream, user=user))
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    argv = ["taskset", "-c", cpu, nginx, "-p", f"{prefix}/", "-e", str(prefix / "error.log")]
    return subprocess.Popen([*argv, "-c", str(conf)], start_new_session=True)


def start_haproxy(upstream: int, port: int, scratch: Path, cpu: str) -> subprocess.Popen[bytes]:
    prefix = scratch / f"haproxy-{cpu}"
    prefix.mkdir(parents=True, exist_ok=True)
    conf = prefix / "haproxy.cfg"
    conf.write_text(HAPROXY_CFG.format(prefix=prefix, port=port, upstream=upstream))
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    argv = ["taskset", "-c", cpu, haproxy, "-db", "-f", str(conf)]
    return subprocess.Popen(argv, start_new_session=True)


def run_wrk(url: str, connections: int, seconds: int, script: Path) -> dict[str, float]:
    argv = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s"]
    argv += ["--timeout", "10s", "--latency", "-s", str(script), url]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    return {
        "req_s": float(rps.group(1)) if rps else 0.0,
        "p99_ms": float(p99.group(1)) * scale[p99.group(2)] if p99 else 0.0,
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(map(int, errors.groups())) if errors else 0,
    }


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def measure(args: argparse.Namespace, scratch: Path) -> list[dict[str, object]]:
    """Interleaved rounds (direct, ferry, nginx-static, haproxy, direct, ...) so that load
    from other work on the machine hits every target alike; the median round is reported."""
    script = scratch / "post.lua"
    script.write_text(
        f"wrk.method = 'POST'\nwrk.body = '{BODY}'\n"
        "wrk.headers['Content-Type'] = 'application/json'\n"
    )
    replica_port = free_port()
    processes = [start_replica(train(scratch), replica_port, scratch)]
    urls = {"direct": f"http://127.0.0.1:{replica_port}/predict"}
    try:
        starters = (
            ("ferry", start_ferry),
            ("nginx-static", start_nginx_static),
            ("haproxy", start_haproxy),
        )
        for name, starter in starters:
            port = free_port()
            processes.append(starter(replica_port, port, scratch, args.proxy_cpu))
            urls[name] = f"http://127.0.0.1:{port}/iris"
        samples: dict[tuple[str, int], list[dict[str, float]]] = {}
        for url in urls.values():
            wait_http(url)
        for round_ in range(args.rounds):
            for connections in args.connections:
                for name, url in urls.items():
                    run_wrk(url, connections, 2, script)  # warm-up
                    result = run_wrk(url, connections, args.seconds, script)
                    samples.setdefault((name, connections), []).append(result)
                    print(json.dumps({"round": round_, "target": name, "c": connections, **result}))
    finally:
        for process in reversed(processes):
            stop(process)
    return [median_row(name, c, runs) for (name, c), runs in samples.items()]


def median_row(name: str, connections: int, runs: list[dict[str, float]]) -> dict[str, object]:
    ordered = sorted(runs, key=lambda r: r["req_s"])
    middle = ordered[len(ordered) // 2]
    return {
        "target": name,
        "connections": connections,
        **middle,
        "rounds_req_s": [r["req_s"] for r in runs],
    }


def table(rows: list[dict[str, object]]) -> str:
    direct = {r["connections"]: float(str(r["req_s"])) for r in rows if r["target"] == "direct"}
    lines = ["| target | c | req/s (median) | % of direct | p99 ms | errors | rounds req/s |"]
    lines.append("|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: (str(r["connections"]), str(r["target"]))):
        share = 100 * float(str(r["req_s"])) / (direct.get(r["connections"]) or 1)
        errors = int(str(r["non2xx"])) + int(str(r["socket_errors"]))
        rounds = " / ".join(f"{float(x):.0f}" for x in r["rounds_req_s"])  # type: ignore[attr-defined]
        lines.append(
            f"| {r['target']} | {r['connections']} | {float(str(r['req_s'])):.0f} "
            f"| {share:.0f}% | {float(str(r['p99_ms'])):.1f} | {errors} | {rounds} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", default="16,64")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--proxy-cpu", default=LOAD_CPU, help="core the proxies are pinned to")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    args.connections = [int(c) for c in args.connections.split(",")]
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is needed (bench/setup.sh)")
    with tempfile.TemporaryDirectory(prefix="ferry-gateway-bench-") as scratch:
        rows = measure(args, Path(scratch))
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
