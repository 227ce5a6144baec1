"""The Elastic Beanstalk bundle: golden files, its nginx snippet, the zip."""

from __future__ import annotations

import io
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path

import yaml

from ferry.packaging import PackageSpec, render_beanstalk, render_docker_context, zip_bundle


def test_bundle_matches_golden_files(
    case: tuple[str, PackageSpec], golden: Callable[..., None]
) -> None:
    name, spec = case
    golden("beanstalk", name, render_beanstalk(spec))


def test_bundle_reuses_the_docker_context() -> None:
    spec = PackageSpec(app_name="iris", model_file="iris.joblib")
    files = render_beanstalk(spec)
    assert files["Dockerfile"] == render_docker_context(spec)["Dockerfile"]
    assert files["requirements.txt"] == render_docker_context(spec)["requirements.txt"]


def test_health_checks_point_at_readyz() -> None:
    spec = PackageSpec(app_name="iris", model_file="iris.joblib")
    config = yaml.safe_load(render_beanstalk(spec)[".ebextensions/healthcheck.config"])
    settings = config["option_settings"]
    assert settings["aws:elasticbeanstalk:application"] == {
        "Application Healthcheck URL": "/readyz"
    }
    process = settings["aws:elasticbeanstalk:environment:process:default"]
    assert process["HealthCheckPath"] == "/readyz"
    assert process["DeregistrationTimeout"] == "25"


def test_nginx_accepts_exactly_ferrys_body_limit(
    tmp_path: Path, tools: Callable[[str], str]
) -> None:
    spec = PackageSpec(app_name="iris", model_file="iris.joblib", max_body_bytes=10 * 1024**2)
    snippet = render_beanstalk(spec)[".platform/nginx/conf.d/ferry.conf"]
    assert "client_max_body_size 10485760;" in snippet
    # the platform includes conf.d/*.conf in its http block; so does this wrapper
    (tmp_path / "ferry.conf").write_text(snippet)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{ include {tmp_path}/ferry.conf; server {{ listen 127.0.0.1:1; }} }}\n"
    )
    result = subprocess.run(
        [
            tools("nginx"),
            "-t",
            "-q",
            "-e",
            str(tmp_path / "error.log"),
            "-p",
            str(tmp_path),
            "-c",
            str(tmp_path / "nginx.conf"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_zip_is_deterministic_and_complete() -> None:
    spec = PackageSpec(app_name="iris", model_file="iris.joblib")
    files: dict[str, str | bytes] = {**render_beanstalk(spec), "model/iris.joblib": b"\x80model"}
    first = zip_bundle(files)
    assert first == zip_bundle(dict(reversed(list(files.items()))))
    with zipfile.ZipFile(io.BytesIO(first)) as archive:
        assert archive.namelist() == sorted(files)
        assert archive.read("model/iris.joblib") == b"\x80model"
        assert archive.read("Dockerfile").decode() == files["Dockerfile"]
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
