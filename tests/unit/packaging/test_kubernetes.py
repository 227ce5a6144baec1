"""Kubernetes manifests: golden files, the official schemas (offline), and the numbers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kubernetes_validate
import pytest
import yaml

from ferry.packaging import Compute, PackageSpec, UpdateStrategy, render_kubernetes
from ferry.packaging.kubernetes import quantity

# the oldest release that still gets patches when this was written, and the newest known
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.utils.latest_version())


def _documents(spec: PackageSpec) -> list[dict[str, Any]]:
    return list(yaml.safe_load_all(render_kubernetes(spec)["kubernetes.yaml"]))


def _by_kind(spec: PackageSpec) -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in _documents(spec)}


def test_manifests_match_golden_files(
    case: tuple[str, PackageSpec], golden: Callable[..., None]
) -> None:
    name, spec = case
    golden("kubernetes", name, render_kubernetes(spec))


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_validates_against_the_kubernetes_schema(
    case: tuple[str, PackageSpec], version: str
) -> None:
    _, spec = case
    documents = _documents(spec)
    assert [doc["kind"] for doc in documents] == [
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    ]
    for document in documents:
        kubernetes_validate.validate(document, version, strict=True)


def test_the_validator_rejects_a_broken_manifest() -> None:
    deployment = _by_kind(PackageSpec(app_name="iris", model_file="iris.joblib"))["Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = (
        "/readyz"
    )
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


def test_probes_drain_and_grace_period() -> None:
    spec = PackageSpec(app_name="iris", model_file="iris.joblib", graceful_timeout_s=25)
    pod = _by_kind(spec)["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    assert pod["terminationGracePeriodSeconds"] == 30
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["args"][:3] == ["serve", "--port", "8080"]
    assert container["args"][container["args"].index("--graceful-timeout") + 1] == "25"


def test_resources_come_from_compute() -> None:
    spec = PackageSpec(
        app_name="iris",
        model_file="iris.joblib",
        compute=Compute(cpu=1.5, mem_bytes=3 * 1024**3, gpu=2),
    )
    resources = _by_kind(spec)["Deployment"]["spec"]["template"]["spec"]["containers"][0][
        "resources"
    ]
    assert resources["requests"] == {"cpu": "1500m", "memory": "3Gi", "nvidia.com/gpu": "2"}
    assert resources["limits"] == {"memory": "3Gi", "nvidia.com/gpu": "2"}


def test_rolling_update_autoscaler_and_budget() -> None:
    spec = PackageSpec(
        app_name="iris",
        model_file="iris.joblib",
        update_strategy=UpdateStrategy(max_surge=1, max_unavailable="0%"),
    )
    kinds = _by_kind(spec)
    rolling = kinds["Deployment"]["spec"]["strategy"]["rollingUpdate"]
    assert rolling == {"maxSurge": 1, "maxUnavailable": "0%"}
    hpa = kinds["HorizontalPodAutoscaler"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (1, 4)
    assert kinds["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1
    annotations = kinds["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] == "/metrics"


def test_cloudformation_placeholders_never_reach_the_cluster() -> None:
    spec = PackageSpec(app_name="iris", model_file="iris.joblib")
    image = _by_kind(spec)["Deployment"]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "iris:latest"
    custom = render_kubernetes(spec, image="registry.example/iris:2")["kubernetes.yaml"]
    assert "image: registry.example/iris:2" in custom


@pytest.mark.parametrize(
    ("num_bytes", "text"),
    [
        (2 * 1024**3, "2Gi"),
        (512 * 1024**2, "512Mi"),
        (1536 * 1024**2, "1536Mi"),
        (10**9, "1000000000"),
    ],
)
def test_quantity(num_bytes: int, text: str) -> None:
    assert quantity(num_bytes) == text
