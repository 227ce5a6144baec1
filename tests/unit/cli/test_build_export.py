"""`ferry build` and `ferry export`: every target writes valid files from a model or ferry.yaml."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from ferry.apispec import RealtimeAPI, load_project
from ferry.cli.main import main
from ferry.config import ModelSpec
from ferry.errors import ConfigError
from ferry.models import open_source

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "cortex"
TARGETS = ("sagemaker", "ecs", "beanstalk", "ec2", "kubernetes")


def tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    if not path.exists():
        pytest.fail(f"{name} is not installed in {path.parent}: install the dev dependencies")
    return str(path)


def files_of(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict[str, Any]:
    """Run the CLI with --output json; the parsed answer."""
    capsys.readouterr()
    assert main([*argv, "--output", "json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


@pytest.fixture(scope="module", autouse=True)
def _own_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Wheels and fetched models go to a directory of this module, not the user's cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture
def model_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, iris_model_path: Path) -> Path:
    """A working directory holding iris.joblib and nothing else."""
    shutil.copy(iris_model_path, tmp_path / "iris.joblib")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def cortex(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/cortex, copied, with its three models trained."""
    root = tmp_path_factory.mktemp("cortex") / "cortex"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("models", "__pycache__"))
    subprocess.run([sys.executable, "train.py"], cwd=root, check=True, capture_output=True)
    return root


# --- build ------------------------------------------------------------------------------


def test_build_writes_a_context_with_model_pins_and_a_ferry_wheel(
    model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    answer = files_of(capsys, ["build", "iris.joblib"])
    out = model_dir / "build" / "iris"
    assert Path(answer["out"]) == Path("build/iris")
    names = {Path(item["path"]).relative_to("build/iris").as_posix() for item in answer["files"]}
    assert {"Dockerfile", "requirements.txt", ".dockerignore", "model/iris.joblib"} <= names
    assert any(name.startswith("wheels/ferry-") for name in names)
    requirements = (out / "requirements.txt").read_text().splitlines()
    assert "--find-links ./wheels" in requirements
    pinned = {line.split("==")[0] for line in requirements if "==" in line}
    assert {"ferry", "scikit-learn", "joblib", "numpy", "uvicorn", "starlette"} <= pinned
    assert (out / "model" / "iris.joblib").read_bytes() == (model_dir / "iris.joblib").read_bytes()


def test_build_prints_the_next_command_and_says_when_docker_is_missing(
    model_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(model_dir))  # no docker client on PATH
    assert main(["build", "iris.joblib", "--image", "iris:1"]) == 0
    out = capsys.readouterr().out
    assert "model/iris.joblib" in out
    assert "docker build -t iris:1 build/iris" in out
    assert "no Docker engine is available" in out


@pytest.mark.parametrize("platform", ["generic", "sagemaker"])
def test_the_built_dockerfile_passes_hadolint(
    model_dir: Path, capsys: pytest.CaptureFixture[str], platform: str
) -> None:
    files_of(capsys, ["build", "iris.joblib", "--target", platform, "--out", platform])
    result = subprocess.run(
        [tool("hadolint"), "--no-color", "--failure-threshold", "style", f"{platform}/Dockerfile"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_build_of_a_cortex_api_ships_its_code_models_and_config(
    cortex: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "forest"
    files_of(capsys, ["build", "iris-forest", "--project", str(cortex), "--out", str(out)])
    assert (out / "code" / "predictor.py").is_file()
    assert (out / "code" / "models" / "forest.joblib").is_file()  # despite .cortexignore
    project = yaml.safe_load((out / "model" / "ferry.yaml").read_text())
    assert project[0]["name"] == "iris-forest"
    assert project[0]["predictor"]["config"] == {"model_path": "models/forest.joblib"}
    # the replica settings travel, so ferry serve in the image runs the API as deploy does
    assert project[0]["predictor"]["processes_per_replica"] == 2
    assert project[0]["predictor"]["threads_per_process"] == 4
    assert "log_level" not in project[0]["predictor"]  # info, the default
    dockerfile = (out / "Dockerfile").read_text()
    assert "COPY model/ /opt/ml/model/" in dockerfile
    assert "COPY code/ /opt/ml/model/code/" in dockerfile
    assert 'SAGEMAKER_MODEL_SERVER_WORKERS="2"' in dockerfile  # processes_per_replica
    # /opt/ml/model as the Dockerfile assembles it: model/ with code/ inside
    image_model = tmp_path / "opt-ml" / "model"
    shutil.copytree(out / "model", image_model)
    shutil.copytree(out / "code", image_model / "code")
    source = open_source(ModelSpec(uri=str(image_model)), cache_dir=tmp_path / "cache")
    assert source.spec.config == {"model_path": "models/forest.joblib"}
    assert (source.framework, source.name) == ("python", "iris-forest")


def test_a_second_build_replaces_the_first_and_is_never_copied_into_itself(
    cortex: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(cortex)
    for _ in range(2):
        answer = files_of(capsys, ["build", "iris-knn"])
    assert not [item for item in answer["files"] if "code/build" in item["path"]]


# --- export -----------------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_every_target_writes_files_for_a_bare_model(
    model_dir: Path, capsys: pytest.CaptureFixture[str], target: str
) -> None:
    answer = files_of(capsys, ["export", "iris.joblib", "--target", target])
    assert answer["target"] == target
    paths = [Path(item["path"]) for item in answer["files"]]
    assert paths, "no files written"
    assert all(path.is_file() and path.stat().st_size > 0 for path in paths)
    expected = {
        "sagemaker": {"model.tar.gz", "sagemaker.yaml"},
        "ecs": {"ecs-fargate.yaml"},
        "beanstalk": {"iris-bundle.zip", "Dockerfile", ".ebextensions/healthcheck.config"},
        "ec2": {"install.sh", "ferry-iris.service", "nginx/ferry-iris.conf", "README.md"},
        "kubernetes": {"kubernetes.yaml"},
    }[target]
    out = Path(f"build/iris-{target}")
    written = {
        path.relative_to(out / "bundle" if "bundle/" in str(path) else out).as_posix()
        for path in paths
    }
    assert expected <= written


def test_sagemaker_archive_has_the_model_at_its_root_and_serves(
    model_dir: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    files_of(capsys, ["export", "iris.joblib", "--target", "sagemaker"])
    archive = model_dir / "build" / "iris-sagemaker" / "model.tar.gz"
    with tarfile.open(archive) as tar:
        assert tar.getnames() == ["iris.joblib"]
    source = open_source(ModelSpec(uri=str(archive)), cache_dir=tmp_path / "cache")
    assert (source.framework, source.path.name) == ("pickle", "iris.joblib")
    assert source.load() is not None


def test_beanstalk_zip_holds_the_bundle(
    model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files_of(capsys, ["export", "iris.joblib", "--target", "beanstalk"])
    with zipfile.ZipFile(model_dir / "build" / "iris-beanstalk" / "iris-bundle.zip") as bundle:
        names = set(bundle.namelist())
    assert {"Dockerfile", "model/iris.joblib", ".platform/nginx/conf.d/ferry.conf"} <= names
    assert any(name.startswith("wheels/ferry-") for name in names)


def test_bare_model_flags_reach_the_manifests(
    model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["export", "iris.joblib", "--target", "kubernetes", "--cpu", "2", "--memory", "1Gi",
            "--min-replicas", "2", "--max-replicas", "6",
            "--image", "reg.example/iris:3"]  # fmt: skip
    files_of(capsys, argv)
    text = (model_dir / "build" / "iris-kubernetes" / "kubernetes.yaml").read_text()
    documents = {doc["kind"]: doc for doc in yaml.safe_load_all(text)}
    container = documents["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "reg.example/iris:3"
    assert container["resources"]["requests"] == {"cpu": "2000m", "memory": "1Gi"}
    hpa = documents["HorizontalPodAutoscaler"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 6)
    for document in documents.values():
        kubernetes_validate.validate(document, kubernetes_validate.utils.latest_version(), True)


def test_project_values_reach_every_template_and_pass_cfn_lint(
    cortex: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = ["--project", str(cortex)]
    files_of(capsys, ["export", "iris-forest", "--target", "ecs", "--out", str(tmp_path / "e"),
                      *project])  # fmt: skip
    assert main(["export", "iris", "--target", "sagemaker", "--out", str(tmp_path / "s"),
                 "--model-data-url", "s3://bucket/iris/", *project]) == 0  # fmt: skip
    ecs = yaml.safe_load((tmp_path / "e" / "ecs-fargate.yaml").read_text())["Resources"]
    deployment = ecs["Service"]["Properties"]["DeploymentConfiguration"]
    assert (deployment["MaximumPercent"], deployment["MinimumHealthyPercent"]) == (200, 100)
    assert ecs["TaskDefinition"]["Properties"]["Memory"] == "1024"  # 0.5 cpu, 512Mi
    sagemaker = yaml.safe_load((tmp_path / "s" / "sagemaker.yaml").read_text())["Resources"]
    variants = sagemaker["EndpointConfig"]["Properties"]["ProductionVariants"]
    # the splitter's 80/20, the shadow left out
    assert [(v["VariantName"], v["InitialVariantWeight"]) for v in variants] == [
        ("iris-forest", 0.8),
        ("iris-logreg", 0.2),
    ]
    model = sagemaker["IrisLogregModel"]["Properties"]["PrimaryContainer"]
    assert model["ModelDataUrl"] == "s3://bucket/iris/iris-logreg/model.tar.gz"
    first = sagemaker["IrisForestModel"]["Properties"]["PrimaryContainer"]
    assert first["ModelDataUrl"] == {"Ref": "ModelDataUrl"}
    assert "ModelDataUrl=s3://bucket/iris/iris-forest/model.tar.gz" in capsys.readouterr().out
    with tarfile.open(tmp_path / "s" / "iris-logreg" / "model.tar.gz") as tar:
        assert "ferry.yaml" in tar.getnames()
        assert "code/models/logreg.joblib" in tar.getnames()
    templates = [str(tmp_path / "e" / "ecs-fargate.yaml"), str(tmp_path / "s" / "sagemaker.yaml")]
    result = subprocess.run([tool("cfn-lint"), "--format", "parseable", *templates],
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_ec2_install_script_passes_shellcheck(
    model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files_of(capsys, ["export", "iris.joblib", "--target", "ec2"])
    script = model_dir / "build" / "iris-ec2" / "install.sh"
    assert script.stat().st_mode & 0o111
    result = subprocess.run([tool("shellcheck"), str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


# --- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["build", "missing.joblib"], "model file missing.joblib does not exist"),
        (["build", "nope"], "neither a model file nor an API"),
        (["export", "iris.joblib", "--target", "heroku"],
         "unknown target 'heroku': expected one of sagemaker, ecs, beanstalk, ec2, kubernetes"),
        (["export", "iris.joblib", "--target", "sagemaker", "--model-data-url", "http://x"],
         "must be an s3:// URL"),
        (["export", "iris.joblib", "--target", "ecs", "--gpu", "1"], "Fargate has none"),
        (["export", "iris.joblib", "--target", "ecs", "--memory", "lots"], "--memory"),
        (["deploy", ".", "--env", "heroku"],
         "unknown environment 'heroku': expected one of local, sagemaker, ecs"),
        (["get", "--env", "eks"], "unknown environment 'eks'"),
        (["export", "iris.joblib", "--target", "sagemaker", "--labels", "setosa"],
         "label mapping 'setosa' is not INDEX=LABEL"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_a_failure(
    model_dir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert err.startswith("ferry: error: ")
    assert message in err
    assert err.count("\n") == 1, err


def test_unknown_api_lists_the_project_apis(
    cortex: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["build", "iris-tree", "--project", str(cortex)]) != 0
    err = capsys.readouterr().err
    assert "no API or model named 'iris-tree'" in err
    assert "iris-forest, iris-logreg, iris-knn, iris" in err


def test_a_splitter_needs_its_model_urls_and_builds_api_by_api(
    cortex: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = ["--project", str(cortex), "--out", str(tmp_path / "x")]
    assert main(["export", "iris", "--target", "sagemaker", *out]) != 0
    assert "--model-data-url" in capsys.readouterr().err
    assert main(["build", "iris", *out]) != 0
    assert "TrafficSplitter" in capsys.readouterr().err


def test_foreign_output_directories_are_never_emptied(
    model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (model_dir / "mine").mkdir()
    (model_dir / "mine" / "notes.txt").write_text("keep me")
    assert main(["build", "iris.joblib", "--out", "mine"]) != 0
    assert "not written by ferry" in capsys.readouterr().err
    assert (model_dir / "mine" / "notes.txt").read_text() == "keep me"


# --- the model directory: what ferry serve reads in /opt/ml/model ----------------------

LABELLED = """\
- name: iris-named
  predictor:
    type: python
    model_path: iris.joblib
    labels: {0: setosa, 1: versicolor, 2: virginica}
    feature_names: [sepal_length, sepal_width, petal_length, petal_width]
- name: iris-proba
  predictor: {model_path: iris.joblib, predict_proba: true, processes_per_replica: 3}
  compute: {cpu: 2, mem: 4Gi}
"""
IRIS_LABELS = {0: "setosa", 1: "versicolor", 2: "virginica"}


@pytest.fixture
def labelled(model_dir: Path) -> Path:
    """model_dir with a ferry.yaml serving iris.joblib with ferry's own output settings."""
    (model_dir / "ferry.yaml").write_text(LABELLED)
    return model_dir


def served_from(model_dir: Path, tmp_path: Path) -> Any:
    """What `ferry serve` (no model argument) identifies in the image's /opt/ml/model."""
    return open_source(ModelSpec(uri=str(model_dir)), cache_dir=tmp_path / "serve-cache")


def test_build_of_a_model_path_api_carries_its_name_and_output_settings(
    labelled: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    files_of(capsys, ["build", "iris-named", "--out", "named"])
    model = labelled / "named" / "model"
    assert sorted(path.name for path in model.iterdir()) == ["ferry.yaml", "iris.joblib"]
    generated = yaml.safe_load((model / "ferry.yaml").read_text())
    assert generated == [{
        "name": "iris-named",
        "kind": "RealtimeAPI",
        "predictor": {
            "model_path": "iris.joblib",
            "labels": IRIS_LABELS,
            "feature_names": ["sepal_length", "sepal_width", "petal_length", "petal_width"],
        },
    }]  # fmt: skip
    source = served_from(model, tmp_path)
    assert (source.name, source.framework, source.path.name) == ("iris-named", "pickle",
                                                                 "iris.joblib")  # fmt: skip
    assert source.spec.labels == IRIS_LABELS
    assert source.spec.feature_names == ("sepal_length", "sepal_width", "petal_length",
                                         "petal_width")  # fmt: skip
    assert "COPY model/ /opt/ml/model/" in (labelled / "named" / "Dockerfile").read_text()


@pytest.mark.parametrize("target", ["sagemaker", "ec2", "beanstalk"])
def test_every_model_directory_of_an_api_carries_its_ferry_yaml(
    labelled: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path, target: str
) -> None:
    files_of(capsys, ["export", "iris-proba", "--target", target, "--out", "out"])
    model = tmp_path / "model"
    if target == "sagemaker":
        with tarfile.open(labelled / "out" / "model.tar.gz") as tar:
            assert sorted(tar.getnames()) == ["ferry.yaml", "iris.joblib"]
            tar.extractall(model, filter="data")
    else:
        shutil.copytree(labelled / "out" / ("bundle/model" if target == "beanstalk" else "model"),
                        model)  # fmt: skip
    source = served_from(model, tmp_path)
    assert (source.name, source.spec.predict_proba) == ("iris-proba", True)


def test_bare_model_output_flags_reach_the_image(
    model_dir: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    files_of(capsys, ["build", "iris.joblib", "--labels", "0=setosa,1=versicolor,2=virginica",
                      "--feature-names", "a,b,c,d", "--predict-proba"])  # fmt: skip
    model = model_dir / "build" / "iris" / "model"
    source = served_from(model, tmp_path)
    assert (source.name, source.path.name) == ("iris", "iris.joblib")
    assert source.spec.labels == IRIS_LABELS
    assert source.spec.feature_names == ("a", "b", "c", "d")
    assert source.spec.predict_proba
    # without output settings a bare model ships alone, as SageMaker's recipe has it
    files_of(capsys, ["build", "iris.joblib", "--out", "plain"])
    assert [path.name for path in (model_dir / "plain" / "model").iterdir()] == ["iris.joblib"]


def test_flags_override_the_project_like_ferry_serve(
    labelled: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    files_of(capsys, ["export", "iris-named", "--target", "sagemaker", "--out", "out",
                      "--labels", "0=a,1=b,2=c"])  # fmt: skip
    with tarfile.open(labelled / "out" / "model.tar.gz") as tar:
        tar.extractall(tmp_path / "model", filter="data")
    source = served_from(tmp_path / "model", tmp_path)
    assert source.spec.labels == {0: "a", 1: "b", 2: "c"}
    assert source.spec.feature_names is not None  # the rest still comes from ferry.yaml


def test_model_archive_is_byte_reproducible(labelled: Path, tmp_path: Path) -> None:
    from ferry.cli.packaging_spec import model_archive, model_packager

    project = load_project(labelled)
    package = model_packager(project, tmp_path / "cache")
    api = project.get("iris-named")
    assert isinstance(api, RealtimeAPI)
    first = package(api)
    assert package(api) == first
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        assert {member.mtime for member in tar.getmembers()} == {0}
    assert model_archive({"b": b"2", "a": b"1"}) == model_archive({"a": b"1", "b": b"2"})


def test_deploy_env_ecs_renders_the_template_export_writes(
    labelled: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One spec for both: `ferry export --target ecs` and `ferry deploy --env ecs`."""
    from ferry.cli.aws_deploy import ecs_spec
    from ferry.runtime.aws.ecs import template

    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/iris:7"
    files_of(capsys, ["export", "iris-proba", "--target", "ecs", "--out", "out",
                      "--image", image])  # fmt: skip
    exported = (labelled / "out" / "ecs-fargate.yaml").read_text()
    spec = ecs_spec(load_project(labelled), "iris-proba")
    assert (spec.model_file, spec.workers, spec.compute.cpu) == ("ferry.yaml", 3, 2)
    assert template("iris-proba", spec, image) == exported


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("iris", "is a TrafficSplitter; ECS deploys one RealtimeAPI per stack"),
        ("iris-tree", "no API named 'iris-tree' (known: iris-forest, iris-logreg, iris-knn)"),
    ],
)
def test_ecs_spec_names_one_realtime_api(cortex: Path, name: str, message: str) -> None:
    from ferry.cli.aws_deploy import ecs_spec

    with pytest.raises(ConfigError, match=re.escape(message)):
        ecs_spec(load_project(cortex), name)


FAKE_DOCKER = """#!/bin/sh
# a docker client whose engine answers: records what it is asked, builds nothing
echo "$@" >> "$(dirname "$0")/calls"
if [ "$1" = build ] && [ ! -f "$4/Dockerfile" ]; then echo "no Dockerfile in $4" >&2; exit 1; fi
if [ "$1" = build ]; then exit "${FAKE_DOCKER_BUILD_EXIT:-0}"; fi
exit 0
"""


@pytest.fixture
def docker_client(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `docker` first on PATH (the venv's tools stay reachable); its log of calls."""
    bin_dir = model_dir / "fake-bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin")
    return bin_dir / "calls"


def test_build_with_an_engine_builds_the_image(
    model_dir: Path, docker_client: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["build", "iris.joblib", "--image", "iris:1"]) == 0
    assert "built image iris:1" in capsys.readouterr().out
    assert docker_client.read_text().splitlines() == ["info", "build -t iris:1 build/iris"]


def test_a_failed_docker_build_is_one_line(
    model_dir: Path,
    docker_client: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FAKE_DOCKER_BUILD_EXIT", "1")
    assert main(["build", "iris.joblib", "--image", "iris:1"]) != 0
    assert docker_client.read_text().splitlines() == ["info", "build -t iris:1 build/iris"]
    assert capsys.readouterr().err == (
        "ferry: error: docker build -t iris:1 build/iris failed (exit 1)\n"
    )
