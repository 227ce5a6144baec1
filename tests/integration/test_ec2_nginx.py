"""The VM bundle's nginx site in front of a real ``ferry serve``: the OS nginx, no mocks."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ferry.packaging import PackageSpec, render_nginx_site

pytestmark = pytest.mark.integration

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
LIMIT = 64 * 1024


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _nginx_conf(runtime: Path, site: Path) -> str:
    # nginx's workers drop to "nobody" when the master is root; they must still write
    # request bodies into this private temp directory
    user = "user root;\n" if os.geteuid() == 0 else ""
    temp = "\n".join(
        f"    {kind}_temp_path {runtime}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""{user}daemon off;
worker_processes 1;
pid {runtime}/nginx.pid;
error_log {runtime}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log {runtime}/access.log;
{temp}
    include {site};
}}
"""


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"nginx exited with {process.returncode}:\n{log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nginx did not listen on {port}")


@pytest.fixture
def nginx_in_front(
    start_server: Any, iris_model_path: Path, tmp_path: Path
) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    """(client through nginx, client straight to ferry), both on 127.0.0.1."""
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if nginx is None:
        pytest.fail("nginx is not installed: run scripts/install-os-packages")
    server = start_server(str(iris_model_path), "--workers", "1", "--max-body-size", str(LIMIT))
    spec = PackageSpec(app_name="iris", model_file="iris.joblib", max_body_bytes=LIMIT)
    listen = _free_port()
    runtime = tmp_path / "nginx"
    runtime.mkdir()
    site = runtime / "ferry-iris.conf"
    site.write_text(render_nginx_site(spec, listen_port=listen, upstream_port=server.port))
    (runtime / "nginx.conf").write_text(_nginx_conf(runtime, site))
    log = runtime / "nginx.out"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [nginx, "-p", str(runtime), "-e", str(runtime / "error.log"), "-c", "nginx.conf"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for_port(listen, process, log)
        with httpx.Client(base_url=f"http://127.0.0.1:{listen}", timeout=30) as proxied:
            yield proxied, server.client
    finally:
        process.send_signal(signal.SIGQUIT)  # graceful: finish open connections
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def test_predictions_through_nginx_equal_direct_ones(
    nginx_in_front: tuple[httpx.Client, httpx.Client],
) -> None:
    proxied, direct = nginx_in_front
    through = proxied.post("/predict", json=ROWS)
    assert through.status_code == 200, through.text
    assert through.json() == direct.post("/predict", json=ROWS).json()
    csv = "\n".join(",".join(map(str, row)) for row in ROWS)
    invocations = proxied.post("/invocations", content=csv, headers={"content-type": "text/csv"})
    assert invocations.json() == through.json()
    assert proxied.get("/readyz").status_code == 200
    assert proxied.get("/metrics").status_code == 200  # loopback may scrape


def test_request_ids_pass_through_or_come_from_nginx(
    nginx_in_front: tuple[httpx.Client, httpx.Client],
) -> None:
    proxied, _ = nginx_in_front
    echoed = proxied.post("/predict", json=ROWS, headers={"x-request-id": "trace-42"})
    assert echoed.headers["x-request-id"] == "trace-42"
    generated = proxied.post("/predict", json=ROWS).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)  # nginx's $request_id


def test_bodies_over_the_limit_get_413_json_from_nginx(
    nginx_in_front: tuple[httpx.Client, httpx.Client],
) -> None:
    proxied, direct = nginx_in_front
    body = b"[" + b",".join([b"[5.1, 3.5, 1.4, 0.2]"] * 5000) + b"]"
    assert len(body) > LIMIT
    refused = proxied.post("/predict", content=body, headers={"content-type": "application/json"})
    assert refused.status_code == 413
    assert refused.headers["content-type"] == "application/json"
    assert refused.json()["code"] == "payload_too_large"
    assert refused.headers.get("server", "").startswith("nginx")
    # ferry itself refuses the same body the same way
    assert direct.post("/predict", content=body).status_code == 413
