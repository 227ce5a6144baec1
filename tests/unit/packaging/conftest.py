"""Specs to render, golden-file comparison, and the validators' command lines."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from ferry.packaging import Autoscaling, Compute, PackageSpec, UpdateStrategy, Variant

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "packaging"
UPDATE = os.environ.get("FERRY_UPDATE_GOLDEN") == "1"

CASES: dict[str, PackageSpec] = {
    # the Elastic Beanstalk / SageMaker recipe: a joblib iris forest, defaults everywhere
    "iris": PackageSpec(
        app_name="iris",
        model_file="iris.joblib",
        requirements=("scikit-learn==1.5.2", "joblib==1.4.2"),
        compute=Compute(cpu=1, mem_bytes=2 * 1024**3),
    ),
    # everything switched on: predictor code, GPUs, an A/B split, local wheels, env
    "predictor-gpu": PackageSpec(
        app_name="dog-breeds",
        model_file="weights/model.onnx",
        predictor_dir="code",
        python_version="3.12",
        requirements=("onnxruntime-gpu==1.20.1",),
        local_wheels=("ferry-0.1.0-py3-none-any.whl",),
        workers=4,
        timeout_s=30.5,
        max_body_bytes=16 * 1024 * 1024,
        graceful_timeout_s=20,
        env={"OMP_NUM_THREADS": "1", "MODEL_LABELS": "0=wiener dog,1=german shepherd"},
        compute=Compute(cpu=2.5, mem_bytes=6 * 1024**3 + 1, gpu=1),
        autoscaling=Autoscaling(min_replicas=2, max_replicas=10, target_invocations_per_minute=600),
        update_strategy=UpdateStrategy(max_surge=1, max_unavailable=0),
        variants=(
            Variant("champion", weight=9, instance_type="ml.g5.xlarge", initial_instance_count=2),
            Variant(
                "challenger",
                weight=1,
                instance_type="ml.g5.xlarge",
                model_data_url="s3://models/dog-breeds/v2/model.tar.gz",
            ),
        ),
        image_uri="123456789012.dkr.ecr.eu-west-1.amazonaws.com/dog-breeds:1.4.0",
        user="svc",
        uid=20000,
        log_format="text",
    ),
    # a CPU model that fits Fargate, with its own rollout and scaling numbers
    "fargate": PackageSpec(
        app_name="house-size",
        model_file="model.json",
        requirements=("xgboost==2.1.3",),
        workers=2,
        compute=Compute(cpu=0.3, mem_bytes=700 * 1024 * 1024),
        autoscaling=Autoscaling(min_replicas=3, max_replicas=6),
        update_strategy=UpdateStrategy(max_surge="50%", max_unavailable="0%"),
        variants=(Variant("a", weight=1), Variant("b", weight=3)),
    ),
}


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest) -> tuple[str, PackageSpec]:
    return request.param, CASES[request.param]


@pytest.fixture(scope="session")
def cases() -> dict[str, PackageSpec]:
    return CASES


def write_files(root: Path, files: Mapping[str, str | bytes]) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


@pytest.fixture(scope="session")
def golden() -> Callable[[str, str, Mapping[str, str]], None]:
    """Compare rendered files with tests/golden/packaging/<target>/<case>/ (or rewrite them)."""

    def check(target: str, case: str, files: Mapping[str, str]) -> None:
        root = GOLDEN / target / case
        if UPDATE:
            shutil.rmtree(root, ignore_errors=True)
            write_files(root, files)
            return
        expected = {
            path.relative_to(root).as_posix(): path.read_text()
            for path in root.rglob("*")
            if path.is_file()
        }
        hint = "run with FERRY_UPDATE_GOLDEN=1 to accept the new output"
        assert sorted(files) == sorted(expected), f"{target}/{case}: files differ; {hint}"
        for name, content in files.items():
            assert content == expected[name], f"{target}/{case}/{name} differs; {hint}"

    return check


@pytest.fixture(scope="session")
def write() -> Callable[[Path, Mapping[str, str | bytes]], None]:
    return write_files


def venv_tool(name: str) -> str:
    """A validator installed in the project's venv (a dev dependency)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        pytest.fail(f"{name} is not installed in {path.parent}: install the dev dependencies")
    return str(path)


def os_tool(name: str) -> str:
    """A validator from the OS (nginx, systemd-analyze), which scripts/install-os-packages
    installs: a failure where it is missing, never a silent skip."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if path is None:
        pytest.fail(f"{name} is not installed: run scripts/install-os-packages")
    return path


@pytest.fixture(scope="session")
def tools() -> Callable[[str], str]:
    def find(name: str) -> str:
        if name in ("nginx", "systemd-analyze"):
            return os_tool(name)
        return venv_tool(name)

    return find
