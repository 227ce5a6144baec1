"""The VM bundle: golden files, shellcheck, systemd-analyze and nginx -t."""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path

from ferry.packaging import Compute, PackageSpec, render_ec2, render_nginx_site
from ferry.packaging.ec2 import render_install_script
from ferry.packaging.systemd import render_systemd_unit


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def test_bundle_matches_golden_files(
    case: tuple[str, PackageSpec], golden: Callable[..., None]
) -> None:
    name, spec = case
    golden("ec2", name, render_ec2(spec))


def test_install_script_passes_shellcheck(
    case: tuple[str, PackageSpec], tmp_path: Path, tools: Callable[[str], str]
) -> None:
    _, spec = case
    script = tmp_path / "install.sh"
    script.write_text(render_install_script(spec))
    assert _run("bash", "-n", str(script)).returncode == 0
    result = _run(tools("shellcheck"), "--severity=style", str(script))
    assert result.returncode == 0, result.stdout


def test_install_script_is_idempotent_by_construction() -> None:
    script = render_install_script(PackageSpec(app_name="iris", model_file="iris.joblib"))
    assert script.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in script
    assert "if ! id -u ferry" in script  # the user is created once
    assert 'if [[ ! -x "$FERRY_HOME/venv/bin/python" ]]' in script  # the venv too
    assert "install -d" in script
    assert "mkdir " not in script
    assert "nginx -t" in script


def test_unit_passes_systemd_analyze(
    case: tuple[str, PackageSpec], tmp_path: Path, tools: Callable[[str], str]
) -> None:
    _, spec = case
    # verify insists the binary exists: point ExecStart at one that does
    unit = render_systemd_unit(spec).replace("/opt/ferry/venv/bin/ferry", "/bin/true")
    path = tmp_path / f"ferry-{spec.app_name}.service"
    path.write_text(unit)
    result = _run(tools("systemd-analyze"), "verify", "--man=no", str(path))
    # systemd reports bad settings as warnings ("ignoring") with exit 0
    assert result.returncode == 0, result.stderr
    assert not result.stderr.strip(), result.stderr


def test_unit_runs_ferry_on_loopback_with_time_to_drain() -> None:
    spec = PackageSpec(app_name="iris", model_file="iris.joblib", graceful_timeout_s=25)
    unit = render_systemd_unit(spec)
    settings = dict(
        line.split("=", 1) for line in unit.splitlines() if "=" in line and line[0] != "#"
    )
    argv = shlex.split(settings["ExecStart"])
    # the model directory, laid out as /opt/ml/model is (the model, maybe a ferry.yaml)
    assert argv[:3] == ["/opt/ferry/venv/bin/ferry", "serve", "/opt/ferry/model"]
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert argv[argv.index("--port") + 1] == "8080"
    assert int(settings["TimeoutStopSec"]) > 25
    for key, value in {
        "Type": "simple",
        "User": "ferry",
        "Restart": "on-failure",
        "KillSignal": "SIGTERM",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "PrivateTmp": "yes",
        "ReadWritePaths": "/var/cache/ferry",
        "PrivateDevices": "yes",
    }.items():
        assert settings[key] == value, key
    assert "LimitNOFILE" in settings


def test_gpu_hosts_keep_their_devices() -> None:
    spec = PackageSpec(app_name="iris", model_file="iris.joblib", compute=Compute(gpu=1))
    assert "PrivateDevices" not in render_systemd_unit(spec)


def test_nginx_site_limits_and_timeouts_follow_the_server() -> None:
    spec = PackageSpec(
        app_name="iris", model_file="iris.joblib", timeout_s=60, max_body_bytes=1048576
    )
    site = render_nginx_site(spec, listen_port=9000, upstream_port=9001)
    assert "listen 9000;" in site
    assert "server 127.0.0.1:9001;" in site
    assert "client_max_body_size 1048576;" in site
    assert "keepalive 32;" in site
    read_timeout = re.search(r"proxy_read_timeout (\d+)s;", site)
    assert read_timeout
    assert int(read_timeout.group(1)) > 60
    assert "proxy_set_header X-Request-ID $ferry_iris_request_id;" in site


def test_nginx_site_passes_nginx_t(
    case: tuple[str, PackageSpec], tmp_path: Path, tools: Callable[[str], str]
) -> None:
    _, spec = case
    (tmp_path / "site.conf").write_text(render_nginx_site(spec, listen_port=18080))
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{ include {tmp_path}/site.conf; }}\n"
    )
    result = _run(
        tools("nginx"),
        "-t",
        "-q",
        "-e",
        str(tmp_path / "error.log"),
        "-p",
        str(tmp_path),
        "-c",
        str(tmp_path / "nginx.conf"),
    )
    assert result.returncode == 0, result.stderr
