"""The Docker build context: golden files, hadolint, and the contract the image keeps."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ferry.packaging import PackageSpec, render_docker_context
from ferry.packaging.docker import render_requirements

TARGETS = ("generic", "sagemaker")


@pytest.mark.parametrize("target", TARGETS)
def test_context_matches_golden_files(
    target: Any, case: tuple[str, PackageSpec], golden: Callable[..., None]
) -> None:
    name, spec = case
    golden(f"docker-{target}", name, render_docker_context(spec, target))


@pytest.mark.parametrize("target", TARGETS)
def test_hadolint_passes_with_no_ignores(
    target: Any,
    case: tuple[str, PackageSpec],
    tmp_path: Path,
    tools: Callable[[str], str],
) -> None:
    _, spec = case
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(render_docker_context(spec, target)["Dockerfile"])
    result = subprocess.run(
        [tools("hadolint"), "--no-color", "--failure-threshold", "style", str(dockerfile)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _instructions(dockerfile: str) -> list[str]:
    joined = dockerfile.replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines() if line.strip() and line[0] != "#"]


def _final_stage(dockerfile: str) -> list[str]:
    lines = _instructions(dockerfile)
    starts = [i for i, line in enumerate(lines) if line.startswith("FROM ")]
    assert len(starts) == 2, "a builder stage and a final stage"
    return lines[starts[1] :]


def test_final_stage_keeps_the_sagemaker_contract() -> None:
    spec = PackageSpec(app_name="iris", model_file="iris.joblib")
    final = _final_stage(render_docker_context(spec)["Dockerfile"])
    assert final[0] == "FROM python:3.11.11-slim-bookworm"
    assert final[-2:] == ['ENTRYPOINT ["ferry"]', 'CMD ["serve"]']
    assert "EXPOSE 8080" in final
    assert "STOPSIGNAL SIGTERM" in final
    assert "COPY model/ /opt/ml/model/" in final  # the whole model directory
    env = next(line for line in final if line.startswith("ENV "))
    assert 'PYTHONUNBUFFERED="1"' in env
    assert 'SAGEMAKER_MAX_PAYLOAD_IN_MB="6"' in env


def test_dependencies_are_installed_before_the_model_is_copied() -> None:
    spec = PackageSpec(app_name="iris", model_file="iris.joblib", predictor_dir="code")
    final = _final_stage(render_docker_context(spec)["Dockerfile"])
    install = next(i for i, line in enumerate(final) if "pip install" in line)
    copies = [i for i, line in enumerate(final) if line.startswith("COPY ")]
    assert copies
    assert all(install < i for i in copies)


def test_no_build_tools_reach_the_final_stage() -> None:
    spec = PackageSpec(app_name="iris", model_file="iris.joblib")
    final = " ".join(_final_stage(render_docker_context(spec)["Dockerfile"]))
    for tool in ("apt-get", "gcc", "build-essential", "pip wheel", "curl"):
        assert tool not in final


def test_generic_target_runs_as_a_non_root_user_and_sagemaker_as_root() -> None:
    spec = PackageSpec(app_name="iris", model_file="iris.joblib")
    generic = _final_stage(render_docker_context(spec, "generic")["Dockerfile"])
    sagemaker = _final_stage(render_docker_context(spec, "sagemaker")["Dockerfile"])
    assert "USER 10001:10001" in generic
    assert any("useradd --system --uid 10001" in line for line in generic)
    assert not any(line.startswith("USER") for line in sagemaker)
    rooted = PackageSpec(app_name="iris", model_file="iris.joblib", user=None)
    assert "USER" not in render_docker_context(rooted)["Dockerfile"]


def test_healthcheck_asks_readyz_with_python_not_curl() -> None:
    spec = PackageSpec(app_name="iris", model_file="iris.joblib")
    final = _final_stage(render_docker_context(spec)["Dockerfile"])
    check = next(line for line in final if line.startswith("HEALTHCHECK"))
    command = json.loads(check.split(" CMD ", 1)[1])
    assert command[:2] == ["python", "-c"]
    assert "/readyz" in command[2]
    compile(command[2], "<healthcheck>", "exec")


def test_requirements_pin_ferry_then_the_model_packages() -> None:
    spec = PackageSpec(
        app_name="iris",
        model_file="iris.joblib",
        requirements=("scikit-learn==1.5.2",),
        local_wheels=("ferry-0.1.0-py3-none-any.whl",),
    )
    lines = render_requirements(spec).splitlines()
    assert lines[1:] == ["--find-links ./wheels", "ferry==0.1.0", "scikit-learn==1.5.2"]


def _admitted(spec: PackageSpec) -> set[str]:
    ignore = render_docker_context(spec)[".dockerignore"].splitlines()
    assert ignore[0] == "*"
    return {line[1:] for line in ignore if line.startswith("!")}


def test_dockerignore_admits_only_what_the_dockerfile_copies() -> None:
    plain = PackageSpec(app_name="iris", model_file="iris.joblib")
    assert _admitted(plain) == {"requirements.txt", "model/"}
    full = PackageSpec(
        app_name="iris",
        model_file="iris.joblib",
        predictor_dir="src/predictor",
        local_wheels=("ferry-0.1.0-py3-none-any.whl",),
    )
    assert _admitted(full) == {"requirements.txt", "model/", "src/predictor/", "wheels/"}
    assert "COPY src/predictor/ /opt/ml/model/code/" in render_docker_context(full)["Dockerfile"]


def test_env_values_are_quoted_for_the_dockerfile() -> None:
    spec = PackageSpec(
        app_name="iris", model_file="iris.joblib", env={"GREETING": 'say "hi" to $USER'}
    )
    assert 'GREETING="say \\"hi\\" to \\$USER"' in render_docker_context(spec)["Dockerfile"]


def test_readme_explains_the_entrypoint() -> None:
    files = render_docker_context(PackageSpec(app_name="iris", model_file="iris.joblib"))
    assert "## Entrypoint" in files["README.md"]
    assert "docker run IMAGE serve" in files["README.md"]
