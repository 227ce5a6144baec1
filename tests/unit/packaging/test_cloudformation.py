"""CloudFormation templates: golden files, cfn-lint, and the values that matter."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from ferry.packaging import (
    Autoscaling,
    Compute,
    PackageSpec,
    UpdateStrategy,
    Variant,
    fargate_size,
    render_cloudformation,
)
from ferry.packaging.fargate import FARGATE_SIZES
from ferry.packaging.sagemaker import variant_weights

MIB = 1024 * 1024


def _template(spec: PackageSpec, name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(render_cloudformation(spec)[name])
    return document


def test_templates_match_golden_files(
    case: tuple[str, PackageSpec], golden: Callable[..., None]
) -> None:
    name, spec = case
    golden("cloudformation", name, render_cloudformation(spec))


def test_cfn_lint_passes_on_every_template(
    cases: dict[str, PackageSpec], tmp_path: Path, tools: Callable[[str], str]
) -> None:
    paths = []
    for name, spec in cases.items():
        for file_name, text in render_cloudformation(spec).items():
            path = tmp_path / f"{name}-{file_name}"
            path.write_text(text)
            paths.append(str(path))
    # one run for all of them: cfn-lint takes seconds to start
    result = subprocess.run(
        [tools("cfn-lint"), "--format", "parseable", *paths],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(paths) == 5


def test_sagemaker_variants_split_traffic_by_weight(cases: dict[str, PackageSpec]) -> None:
    template = _template(cases["predictor-gpu"], "sagemaker.yaml")
    resources = template["Resources"]
    variants = resources["EndpointConfig"]["Properties"]["ProductionVariants"]
    assert [(v["VariantName"], v["InitialVariantWeight"]) for v in variants] == [
        ("champion", 0.9),
        ("challenger", 0.1),
    ]
    assert [v["InitialInstanceCount"] for v in variants] == [2, 1]
    challenger = resources["ChallengerModel"]["Properties"]["PrimaryContainer"]
    assert challenger["ModelDataUrl"] == "s3://models/dog-breeds/v2/model.tar.gz"
    champion = resources["ChampionModel"]["Properties"]["PrimaryContainer"]
    assert champion["ModelDataUrl"] == {"Ref": "ModelDataUrl"}
    assert champion["Environment"]["SAGEMAKER_MODEL_SERVER_WORKERS"] == "4"
    assert champion["Environment"]["SAGEMAKER_MODEL_SERVER_TIMEOUT"] == "30.5"


def test_sagemaker_scales_every_variant_on_invocations(cases: dict[str, PackageSpec]) -> None:
    resources = _template(cases["predictor-gpu"], "sagemaker.yaml")["Resources"]
    for variant in ("Champion", "Challenger"):
        target = resources[f"{variant}ScalableTarget"]["Properties"]
        assert target["ScalableDimension"] == "sagemaker:variant:DesiredInstanceCount"
        assert (target["MinCapacity"], target["MaxCapacity"]) == (2, 10)
        policy = resources[f"{variant}ScalingPolicy"]["Properties"]
        tracking = policy["TargetTrackingScalingPolicyConfiguration"]
        assert tracking["PredefinedMetricSpecification"]["PredefinedMetricType"] == (
            "SageMakerVariantInvocationsPerInstance"
        )
        assert tracking["TargetValue"] == 600.0


def test_variant_weights_are_shares() -> None:
    variants = (Variant("a", weight=1), Variant("b", weight=2), Variant("c", weight=0))
    assert variant_weights(variants) == {"a": 0.333333, "b": 0.666667, "c": 0.0}


def test_fargate_service_load_balancer_and_scaling(cases: dict[str, PackageSpec]) -> None:
    resources = _template(cases["fargate"], "ecs-fargate.yaml")["Resources"]
    task = resources["TaskDefinition"]["Properties"]
    assert (task["Cpu"], task["Memory"]) == ("512", "1024")
    container = task["ContainerDefinitions"][0]
    assert container["PortMappings"] == [{"ContainerPort": 8080, "Protocol": "tcp"}]
    assert container["LogConfiguration"]["LogDriver"] == "awslogs"
    assert container["StopTimeout"] == 30
    assert resources["TargetGroup"]["Properties"]["HealthCheckPath"] == "/readyz"
    deployment = resources["Service"]["Properties"]["DeploymentConfiguration"]
    # 50% surge of 3 tasks = 2 extra (rounded up), none missing
    assert (deployment["MaximumPercent"], deployment["MinimumHealthyPercent"]) == (167, 100)
    policy = resources["ScalingPolicy"]["Properties"]["TargetTrackingScalingPolicyConfiguration"]
    assert policy["PredefinedMetricSpecification"]["PredefinedMetricType"] == (
        "ALBRequestCountPerTarget"
    )


def test_gpu_models_get_no_fargate_template(cases: dict[str, PackageSpec]) -> None:
    assert sorted(render_cloudformation(cases["predictor-gpu"])) == ["sagemaker.yaml"]


@pytest.mark.parametrize(
    ("cpu", "mem_mib", "expected"),
    [
        (0.25, None, (256, 512)),
        (0.25, 512, (256, 512)),
        (0.25, 3000, (512, 3072)),  # 256 units top out at 2 GiB
        (0.3, 700, (512, 1024)),
        (1, 2048, (1024, 2048)),
        (1, 2049, (1024, 3072)),
        (1.5, None, (2048, 4096)),
        (2, 20000, (4096, 20480)),
        (4, 32 * 1024, (8192, 32768)),
        (8, 62 * 1024, (16384, 65536)),
        (16, 120 * 1024, (16384, 122880)),
    ],
)
def test_fargate_size_rounds_up_to_a_valid_combination(
    cpu: float, mem_mib: int | None, expected: tuple[int, int]
) -> None:
    mem = None if mem_mib is None else mem_mib * MIB
    size = fargate_size(cpu, mem)
    assert size == expected
    assert size[1] in FARGATE_SIZES[size[0]]


@pytest.mark.parametrize(("cpu", "mem_mib"), [(17, None), (16, 121 * 1024), (1, 200 * 1024)])
def test_fargate_size_refuses_what_fargate_cannot_run(cpu: float, mem_mib: int | None) -> None:
    with pytest.raises(ValueError, match="no Fargate task size"):
        fargate_size(cpu, None if mem_mib is None else mem_mib * MIB)


@pytest.mark.parametrize(
    ("surge", "unavailable", "replicas", "percents"),
    [
        ("25%", "25%", 1, (200, 100)),  # literal 25% would stall a one-task service
        ("25%", "25%", 4, (125, 75)),
        (1, 0, 3, (134, 100)),
        (0, 1, 2, (100, 50)),
        ("0%", "10%", 1, (100, 0)),  # both round to 0: one may be missing
        ("100%", "100%", 2, (200, 0)),
    ],
)
def test_ecs_deployment_percents_round_back_to_kubernetes_counts(
    surge: str | int, unavailable: str | int, replicas: int, percents: tuple[int, int]
) -> None:
    strategy = UpdateStrategy(max_surge=surge, max_unavailable=unavailable)
    assert strategy.ecs_percents(replicas) == percents


def test_fargate_template_uses_compute_and_autoscaling() -> None:
    spec = PackageSpec(
        app_name="iris",
        model_file="iris.joblib",
        compute=Compute(cpu=2, mem_bytes=8 * 1024**3),
        autoscaling=Autoscaling(min_replicas=2, max_replicas=8),
    )
    resources = _template(spec, "ecs-fargate.yaml")["Resources"]
    assert resources["TaskDefinition"]["Properties"]["Memory"] == "8192"
    target = resources["ScalableTarget"]["Properties"]
    assert (target["MinCapacity"], target["MaxCapacity"]) == (2, 8)
    assert resources["Service"]["Properties"]["DesiredCount"] == 2
