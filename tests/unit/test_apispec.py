"""ferry.yaml / cortex.yaml: Cortex fields accepted as is, one located line per problem."""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest

from ferry.apispec import (
    Autoscaling,
    RealtimeAPI,
    TrafficSplitter,
    UpdateStrategy,
    load_project,
    parse_bytes,
    parse_cpu,
    parse_duration,
    scaffold,
    to_server_settings,
)
from ferry.config import ServerSettings
from ferry.errors import ConfigError

EXAMPLE = Path(__file__).parents[2] / "examples" / "cortex"


def write(tmp_path: Path, text: str, name: str = "ferry.yaml") -> Path:
    (tmp_path / "predictor.py").write_text("class PythonPredictor:\n    pass\n")
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


MINIMAL = """
- name: iris
  predictor:
    path: predictor.py
"""


def load_error(tmp_path: Path, text: str) -> str:
    write(tmp_path, text)
    with pytest.raises(ConfigError) as caught, contextlib.chdir(tmp_path):
        load_project(Path("ferry.yaml"))
    message = str(caught.value)
    assert "\n" not in message
    return message


# --- values --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("60s", 60.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("250ms", 0.25),
        ("1m30s", 90.0),
        ("1.5s", 1.5),
        (10, 10.0),
        (0.5, 0.5),
        ("30", 30.0),
    ],
    ids=str,
)
def test_durations(text: Any, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["5x", "m5", "", "-3s", True, [1], -1], ids=repr)
def test_bad_durations(text: Any) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "cores"), [("200m", 0.2), ("1", 1.0), (2, 2.0), (0.5, 0.5), ("1.5", 1.5)], ids=str
)
def test_cpu_quantities(text: Any, cores: float) -> None:
    assert parse_cpu(text) == pytest.approx(cores)


@pytest.mark.parametrize(
    ("text", "size"),
    [("1Gi", 2**30), ("512Mi", 512 * 2**20), ("1G", 10**9), ("100k", 100_000), (4096, 4096)],
    ids=str,
)
def test_byte_quantities(text: Any, size: int) -> None:
    assert parse_bytes(text) == size


@pytest.mark.parametrize("text", ["1Gb", "lots", "200m", "-1", False], ids=repr)
def test_bad_byte_quantities(text: Any) -> None:
    with pytest.raises(ValueError, match="memory size"):
        parse_bytes(text)


# --- defaults ------------------------------------------------------------------------------


def test_cortex_defaults(tmp_path: Path) -> None:
    project = load_project(write(tmp_path, MINIMAL))
    (api,) = project.apis
    assert api.kind == "RealtimeAPI"
    assert api.endpoint == "/iris"
    assert api.predictor.type == "python"
    assert (api.predictor.processes_per_replica, api.predictor.threads_per_process) == (1, 1)
    assert api.predictor.log_level == "info"
    assert (api.compute.cpu, api.compute.gpu, api.compute.mem) == (0.2, 0, None)
    scaling = api.autoscaling
    assert (scaling.min_replicas, scaling.max_replicas, scaling.init_replicas) == (1, 100, 1)
    assert scaling.max_replica_concurrency == 1024
    assert scaling.target_replica_concurrency == 1
    assert (scaling.window, scaling.downscale_stabilization_period) == (60, 300)
    assert scaling.upscale_stabilization_period == 60
    assert (scaling.max_downscale_factor, scaling.max_upscale_factor) == (0.75, 1.5)
    assert (scaling.downscale_tolerance, scaling.upscale_tolerance) == (0.05, 0.05)
    assert api.update_strategy == UpdateStrategy(max_surge="25%", max_unavailable="25%")
    assert project.root == tmp_path.resolve()
    assert project.path == (tmp_path / "ferry.yaml").resolve()


def test_derived_defaults(tmp_path: Path) -> None:
    project = load_project(
        write(
            tmp_path,
            """
            - name: iris
              predictor: {path: predictor.py, processes_per_replica: 2, threads_per_process: 3}
              autoscaling: {min_replicas: 2, max_replicas: 5}
              networking: {endpoint: models/iris/}
              compute:
            """,
        )
    )
    (api,) = project.apis
    assert api.autoscaling.target_replica_concurrency == 6
    assert api.autoscaling.init_replicas == 2
    assert api.endpoint == "/models/iris"
    assert api.compute.cpu == 0.2


def test_full_cortex_realtime_api_is_accepted_unchanged(tmp_path: Path) -> None:
    project = load_project(
        write(
            tmp_path,
            """
            - name: text-generator
              kind: RealtimeAPI
              predictor:
                type: python
                path: predictor.py
                dependencies: {pip: requirements.txt, conda: conda-packages.txt, shell: deps.sh}
                multi_model_reloading: {dir: s3://bucket/models/, cache_size: 2}
                server_side_batching: {max_batch_size: 8, batch_interval: 100ms}
                processes_per_replica: 2
                threads_per_process: 16
                config: {model: gpt2, nested: {a: [1, 2]}}
                python_path: .
                image: quay.io/cortexlabs/python-predictor-cpu:0.31.1
                env: {TRANSFORMERS_CACHE: /tmp}
                log_level: debug
                shm_size: 64Mi
              compute: {cpu: 1, gpu: 1, mem: 2G, inf: 0}
              autoscaling:
                min_replicas: 1
                max_replicas: 10
                init_replicas: 3
                max_replica_concurrency: 100
                target_replica_concurrency: 2.5
                window: 30s
                downscale_stabilization_period: 10m
                upscale_stabilization_period: 0s
                max_downscale_factor: 0.5
                max_upscale_factor: 3
                downscale_tolerance: 0.1
                upscale_tolerance: 0.2
              update_strategy: {max_surge: 0, max_unavailable: 1}
              networking: {endpoint: generate, api_gateway: none, local_port: 8888}
            """,
        )
    )
    (api,) = project.apis
    assert api.predictor.server_side_batching is not None
    assert api.predictor.server_side_batching.batch_interval == pytest.approx(0.1)
    assert api.predictor.shm_size == 64 * 2**20
    assert api.compute.mem == 2 * 10**9
    assert api.autoscaling.target_replica_concurrency == 2.5
    assert api.autoscaling.downscale_stabilization_period == 600
    assert api.update_strategy == UpdateStrategy(max_surge=0, max_unavailable=1)
    assert api.endpoint == "/generate"


def test_ferry_predictor_fields(tmp_path: Path) -> None:
    project = load_project(
        write(
            tmp_path,
            """
            - name: iris
              predictor:
                model_path: s3://bucket/iris.joblib
                framework: sklearn
                predict_proba: true
                labels: "0=setosa,1=versicolor"
                feature_names: [a, b, c, d]
            - name: digits
              predictor: {path: predictor.py, class_name: Digits, labels: {0: zero}}
            - name: onnx
              predictor: {type: onnx, model_path: model.onnx}
            """,
        )
    )
    iris, digits, onnx = project.apis
    assert iris.predictor.labels == {0: "setosa", 1: "versicolor"}
    assert iris.predictor.feature_names == ("a", "b", "c", "d")
    assert digits.predictor.labels == {0: "zero"}
    assert onnx.predictor.type == "onnx"


# --- errors: one line, file:line, field path, expected ------------------------------------

ERRORS = [
    pytest.param(
        """
        - name: iris
          predictor:
            path: predictor.py
          autoscaling:
            min_replicas: 2
            max_replicas: 1
        """,
        "ferry.yaml:6: apis[0].autoscaling.max_replicas: must be >= min_replicas (2), got 1",
        id="max-below-min",
    ),
    pytest.param(
        """
        - name: iris
          predictor:
            path: predictor.py
          autoscaling:
            min_replica: 2
        """,
        "ferry.yaml:5: apis[0].autoscaling.min_replica: unknown field 'min_replica'; "
        "did you mean 'min_replicas'?",
        id="typo-suggestion",
    ),
    pytest.param(
        """
        - name: iris
          predictor:
            path: predictor.py
          autoscaling:
            max_replicas: 0
        """,
        "ferry.yaml:5: apis[0].autoscaling.max_replicas: must be >= 1, got 0",
        id="bound",
    ),
    pytest.param(
        """
        - name: iris
          predictor:
            path: predictor.py
          autoscaling:
            max_replicas: 3
            init_replicas: 5
        """,
        "ferry.yaml:6: apis[0].autoscaling.init_replicas: must be between min_replicas (1) "
        "and max_replicas (3), got 5",
        id="init-outside",
    ),
    pytest.param(
        """
        - name: iris
          predictor: {path: predictor.py}
          autoscaling: {max_downscale_factor: 1}
        """,
        "ferry.yaml:3: apis[0].autoscaling.max_downscale_factor: must be < 1, got 1",
        id="downscale-factor",
    ),
    pytest.param(
        """
        - name: iris
          predictor: {path: predictor.py}
          autoscaling: {max_upscale_factor: 1}
        """,
        "ferry.yaml:3: apis[0].autoscaling.max_upscale_factor: must be > 1, got 1",
        id="upscale-factor",
    ),
    pytest.param(
        """
        - name: iris
          predictor: {path: predictor.py}
          autoscaling:
            window: 45s
        """,
        "ferry.yaml:4: apis[0].autoscaling.window: must be a positive multiple of 10s, got 45s",
        id="window-ticks",
    ),
    pytest.param(
        """
        - name: iris
          predictor: {path: predictor.py}
          autoscaling:
            window: soon
        """,
        "ferry.yaml:4: apis[0].autoscaling.window: expected a duration such as 60s, 5m or "
        "1h30m, got 'soon'",
        id="duration-syntax",
    ),
    pytest.param(
        """
        - name: iris
          predictor: {path: predictor.py}
          autoscaling: {max_replica_concurrency: 4, target_replica_concurrency: 8}
        """,
        "ferry.yaml:3: apis[0].autoscaling.target_replica_concurrency: must be <= "
        "max_replica_concurrency (4), got 8",
        id="target-above-max",
    ),
    pytest.param(
        """
        - name: iris
          predictor: {path: predictor.py}
          update_strategy:
            max_surge: 0
            max_unavailable: 0%
        """,
        "ferry.yaml:5: apis[0].update_strategy.max_unavailable: max_surge and max_unavailable "
        "cannot both be 0",
        id="strategy-both-zero",
    ),
    pytest.param(
        """
        - name: iris
          predictor: {path: predictor.py}
          update_strategy:
            max_surge: lots
        """,
        "ferry.yaml:4: apis[0].update_strategy.max_surge: expected a count >= 0 or a percent "
        "such as 25%, got 'lots'",
        id="strategy-syntax",
    ),
    pytest.param(
        """
        - name: Iris_API
          predictor: {path: predictor.py}
        """,
        "ferry.yaml:1: apis[0].name: expected lowercase letters, digits and '-', starting with "
        "a letter (at most 63), got 'Iris_API'",
        id="name",
    ),
    pytest.param(
        """
        - name: iris
        """,
        "ferry.yaml:1: apis[0].predictor: required field is missing",
        id="missing-predictor",
    ),
    pytest.param(
        """
        - name: iris
          predictor:
            type: pytorch
            path: predictor.py
        """,
        "ferry.yaml:3: apis[0].predictor.type: expected 'python', 'onnx' or 'tensorflow', "
        "got 'pytorch'",
        id="literal",
    ),
    pytest.param(
        """
        - name: iris
          predictor:
            path: predictor.py
            processes_per_replica: two
        """,
        "ferry.yaml:4: apis[0].predictor.processes_per_replica: expected an integer, got 'two'",
        id="int",
    ),
    pytest.param(
        """
        - name: iris
          predictor:
            type: python
        """,
        "ferry.yaml:2: apis[0].predictor.path: a python predictor needs path (a .py file) or "
        "model_path (a model file)",
        id="nothing-to-serve",
    ),
    pytest.param(
        """
        - name: iris
          predictor:
            path: missing.py
        """,
        "ferry.yaml:3: apis[0].predictor.path: file 'missing.py' not found under the project root",
        id="predictor-file",
    ),
    pytest.param(
        """
        - name: iris
          predictor: {path: predictor.py}
        - name: iris
          predictor: {path: predictor.py}
        """,
        "ferry.yaml:3: apis[1].name: 'iris' is already the name of apis[0]",
        id="duplicate-name",
    ),
    pytest.param(
        """
        - name: a
          predictor: {path: predictor.py}
          networking: {endpoint: /x}
        - name: b
          predictor: {path: predictor.py}
          networking: {endpoint: x}
        """,
        "ferry.yaml:6: apis[1].networking.endpoint: endpoint /x is already used by 'a'",
        id="duplicate-endpoint",
    ),
    pytest.param(
        """
        - name: iris
          predictor:
            path: predictor.py
            path: other.py
        """,
        "ferry.yaml:4: duplicate key 'path'",
        id="duplicate-key",
    ),
    pytest.param(
        """
        - name: iris
          kind: BatchAPI
          predictor: {path: predictor.py}
        """,
        "ferry.yaml:2: apis[0].kind: kind BatchAPI is not supported; expected RealtimeAPI or "
        "TrafficSplitter",
        id="batch-kind",
    ),
    pytest.param(
        """
        - name: iris
          predictor:
            path: predictor.py
          autoscaling:
            max_replicas: 0
            min_replica: 1
          compute: {cpu: lots}
        """,
        "ferry.yaml:6: apis[0].autoscaling.min_replica: unknown field 'min_replica'; "
        "did you mean 'min_replicas'? (and 1 more problem)",
        id="first-of-several",
    ),
    pytest.param(
        "name: iris\npredictor: {path: predictor.py}\n",
        "ferry.yaml:1: expected a list of APIs, got a mapping; start each API with '- name: ...'",
        id="top-level-mapping",
    ),
    pytest.param(
        "- name: iris\n  predictor: [oops\n",
        "ferry.yaml:3:1: YAML syntax error: expected ',' or ']', but got '<stream end>'",
        id="yaml-syntax",
    ),
    pytest.param(
        "\n# nothing yet\n", "ferry.yaml: the file is empty; expected a list of APIs", id="empty"
    ),
]


@pytest.mark.parametrize(("text", "expected"), ERRORS)
def test_errors_are_one_located_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, expected: str
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_project(Path("ferry.yaml"))
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(expected)


def test_wrong_top_level_scalar(tmp_path: Path) -> None:
    assert "expected a list of APIs, got 'iris'" in load_error(tmp_path, "iris\n")


# --- traffic splitters ---------------------------------------------------------------------

SPLIT = """
- name: a
  predictor: {path: predictor.py}
- name: b
  predictor: {path: predictor.py}
- name: c
  predictor: {path: predictor.py}
- name: split
  kind: TrafficSplitter
  networking: {endpoint: split}
  apis:
"""


def test_traffic_splitter(tmp_path: Path) -> None:
    targets = "    - {name: a, weight: 80}\n    - {name: b, weight: 20}\n"
    shadow = "    - {name: c, weight: 100, shadow: true}\n"
    project = load_project(write(tmp_path, SPLIT + textwrap.indent(targets + shadow, "  ")))
    (splitter,) = project.splitters
    assert isinstance(splitter, TrafficSplitter)
    assert [(t.name, t.weight, t.shadow) for t in splitter.apis] == [
        ("a", 80, False),
        ("b", 20, False),
        ("c", 100, True),
    ]
    assert splitter.endpoint == "/split"
    assert splitter.shadow is not None
    assert (splitter.shadow.name, splitter.shadow.weight) == ("c", 100)  # % copied to it
    assert isinstance(project.get("split"), TrafficSplitter)
    assert isinstance(project.get("a"), RealtimeAPI)


@pytest.mark.parametrize(
    ("targets", "expected"),
    [
        pytest.param(
            "- {name: a, weight: 80}\n- {name: b, weight: 30}\n",
            "ferry.yaml:10: apis[3].apis: weights of the non-shadow APIs must sum to 100, got 110",
            id="sum",
        ),
        pytest.param(
            "- {name: a, weight: 100}\n- {name: b, weight: 5, shadow: true}\n"
            "- {name: c, weight: 5, shadow: true}\n",
            "ferry.yaml:10: apis[3].apis: at most one API may be a shadow",
            id="two-shadows",
        ),
        pytest.param(
            "- {name: a, weight: 50}\n- {name: a, weight: 50}\n",
            "ferry.yaml:10: apis[3].apis: each API may appear once, 'a' appears twice",
            id="twice",
        ),
        pytest.param(
            "- {name: a, weight: 100}\n- {name: bb, weight: 0}\n",
            "ferry.yaml:12: apis[3].apis[1].name: no RealtimeAPI named 'bb' in this file; "
            "did you mean 'b'?",
            id="unknown-target",
        ),
        pytest.param(
            "- {name: a, weight: 101}\n",
            "ferry.yaml:11: apis[3].apis[0].weight: must be <= 100, got 101",
            id="weight-range",
        ),
        pytest.param(
            "- {name: a, weight: 100}\n- {name: b, weight: 150, shadow: true}\n",
            "ferry.yaml:12: apis[3].apis[1].weight: must be <= 100, got 150",
            id="shadow-weight-over-100",
        ),
        pytest.param(
            "- {name: a, weight: 100}\n- {name: b, weight: -5, shadow: true}\n",
            "ferry.yaml:12: apis[3].apis[1].weight: must be >= 0, got -5",
            id="shadow-weight-negative",
        ),
        pytest.param(
            "- {name: a, weight: 100}\n- {name: b, shadow: true}\n",
            "ferry.yaml:12: apis[3].apis[1].weight: required field is missing",
            id="shadow-weight-missing",
        ),
    ],
)
def test_traffic_splitter_errors(tmp_path: Path, targets: str, expected: str) -> None:
    message = load_error(tmp_path, SPLIT + textwrap.indent(targets, "    "))
    assert message == expected


def test_the_shadow_weights_in_the_docs_and_the_example_are_the_copied_share(
    tmp_path: Path,
) -> None:
    import re

    docs = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    block = docs.split("## Traffic splitters", 1)[1].split("```yaml\n", 1)[1].split("```")[0]
    (documented,) = load_project(write(tmp_path, block), check_splitter_targets=False).splitters
    assert documented.shadow is not None
    assert f"weight: {documented.shadow.weight}, shadow: true" in block
    example = EXAMPLE / "cortex.yaml"
    (splitter,) = load_project(example, check_splitter_targets=False).splitters
    assert splitter.shadow is not None
    said = re.search(r"a copy of (\d+)% of the requests", example.read_text())
    assert said is not None
    assert int(said.group(1)) == splitter.shadow.weight == 50


def test_splitter_targets_can_be_left_to_deploy(tmp_path: Path) -> None:
    text = "- name: s\n  kind: TrafficSplitter\n  apis: [{name: elsewhere, weight: 100}]\n"
    project = load_project(write(tmp_path, text), check_splitter_targets=False)
    assert project.apis == ()
    assert project.splitters[0].apis[0].name == "elsewhere"


# --- finding the file ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ferry.yaml", "ferry.yml", "cortex.yaml", "cortex.yml"])
def test_project_file_names(tmp_path: Path, name: str) -> None:
    write(tmp_path, MINIMAL, name=name)
    assert load_project(tmp_path).path.name == name
    assert load_project(tmp_path / name).apis[0].name == "iris"


def test_no_project_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no project file .*ferry init"):
        load_project(tmp_path)
    with pytest.raises(ConfigError, match="no such file"):
        load_project(tmp_path / "nope.yaml")


def test_models_are_frozen(tmp_path: Path) -> None:
    api = load_project(write(tmp_path, MINIMAL)).apis[0]
    with pytest.raises(ValueError, match="frozen"):
        api.name = "other"


def test_autoscaling_model_alone() -> None:
    assert Autoscaling(min_replicas=3).init_replicas == 3
    with pytest.raises(ValueError, match="min_replicas"):
        Autoscaling(min_replicas=3, max_replicas=2)


# --- server settings -----------------------------------------------------------------------


def test_python_predictor_settings(tmp_path: Path) -> None:
    project = load_project(
        write(
            tmp_path,
            """
            - name: iris
              predictor:
                path: predictor.py
                config: {model_path: m.joblib}
                processes_per_replica: 4
                threads_per_process: 2
                log_level: warning
                server_side_batching: {max_batch_size: 16, batch_interval: 20ms}
              autoscaling: {max_replica_concurrency: 100}
            """,
        )
    )
    spec, overrides = to_server_settings(project.apis[0], project.root)
    assert spec.uri == f"{tmp_path.resolve() / 'predictor.py'}:PythonPredictor"
    assert spec.framework == "python"
    assert spec.name == "iris"
    assert spec.config == {"model_path": "m.joblib"}
    assert spec.python_path == str(tmp_path.resolve())
    assert spec.predictor_batching is True
    assert overrides == {
        "workers": 4,
        "predictor_threads": 2,
        "log_level": "warning",
        "max_inflight": 25,
        "batching": True,
        "max_batch_size": 16,
        "max_batch_wait_ms": pytest.approx(20.0),
    }
    settings = ServerSettings(model=spec, **overrides)
    assert settings.workers == 4


def test_model_path_settings(tmp_path: Path) -> None:
    project = load_project(
        write(
            tmp_path,
            """
            - name: iris
              predictor:
                model_path: models/iris.joblib
                predict_proba: true
                labels: {0: setosa}
                feature_names: [a]
            - name: remote
              predictor: {type: onnx, model_path: "s3://bucket/m.onnx", class_name: null}
            - name: cortex-onnx
              predictor: {type: onnx, models: {path: model.onnx}}
            """,
        )
    )
    local, remote, cortex_onnx = (to_server_settings(api, project.root) for api in project.apis)
    assert local[0].uri == str(tmp_path.resolve() / "models" / "iris.joblib")
    assert local[0].framework == "auto"
    assert local[0].predict_proba is True
    assert local[0].labels == {0: "setosa"}
    assert local[0].feature_names == ("a",)
    assert local[0].predictor_batching is False
    assert "batching" not in local[1]
    assert (remote[0].uri, remote[0].framework) == ("s3://bucket/m.onnx", "onnx")
    assert cortex_onnx[0].uri == str(tmp_path.resolve() / "model.onnx")


@pytest.mark.parametrize(
    ("predictor", "expected"),
    [
        ("{type: tensorflow, path: predictor.py}", "tensorflow predictors are not supported"),
        (
            "{type: onnx, models: {dir: models/}}",
            "models.paths and models.dir need an ONNXPredictor class",
        ),
        (
            "{model_path: m.joblib, multi_model_reloading: {dir: s3://b/m/}}",
            "multi_model_reloading needs a PythonPredictor",
        ),
    ],
    ids=["tensorflow", "onnx-dir-without-class", "multi-model"],
)
def test_unservable_predictors_fail_at_deploy(
    tmp_path: Path, predictor: str, expected: str
) -> None:
    project = load_project(write(tmp_path, f"- name: x\n  predictor: {predictor}\n"))
    with pytest.raises(ConfigError, match=expected):
        to_server_settings(project.apis[0], project.root)


# --- ferry init ----------------------------------------------------------------------------


def test_scaffold_writes_a_loadable_project(tmp_path: Path) -> None:
    written = scaffold(tmp_path / "new", "my-model")
    assert sorted(p.name for p in written) == [
        ".ferryignore",
        "ferry.yaml",
        "predictor.py",
        "requirements.txt",
    ]
    project = load_project(tmp_path / "new")
    assert project.apis[0].name == "my-model"
    assert project.apis[0].predictor.config == {"model_path": "model.joblib"}


def test_scaffold_predictor_serves_a_joblib_model(tmp_path: Path) -> None:
    joblib = pytest.importorskip("joblib")
    datasets = pytest.importorskip("sklearn.datasets")
    tree = pytest.importorskip("sklearn.tree")
    scaffold(tmp_path, "iris")
    features, target = datasets.load_iris(return_X_y=True)
    joblib.dump(
        tree.DecisionTreeClassifier(random_state=0).fit(features, target), tmp_path / "model.joblib"
    )
    predictor = _import(tmp_path / "predictor.py").PythonPredictor({"model_path": "model.joblib"})
    assert predictor.predict({"instances": [list(features[0])]}) == [0]
    assert predictor.predict([list(features[-1])]) == [2]


def test_scaffold_never_overwrites(tmp_path: Path) -> None:
    (tmp_path / "predictor.py").write_text("mine")
    with pytest.raises(ConfigError, match=r"predictor\.py already exists"):
        scaffold(tmp_path, "iris")
    assert (tmp_path / "predictor.py").read_text() == "mine"
    assert not (tmp_path / "ferry.yaml").exists()


def test_scaffold_checks_the_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="API name"):
        scaffold(tmp_path, "My Model")


# --- the Cortex example --------------------------------------------------------------------


def test_cortex_example_loads_unchanged() -> None:
    project = load_project(EXAMPLE)
    assert project.path.name == "cortex.yaml"
    assert [api.name for api in project.apis] == ["iris-forest", "iris-logreg", "iris-knn"]
    (splitter,) = project.splitters
    assert splitter.endpoint == "/iris"
    assert {(t.name, t.weight, t.shadow) for t in splitter.apis} == {
        ("iris-forest", 80, False),
        ("iris-logreg", 20, False),
        ("iris-knn", 50, True),
    }
    forest = project.apis[0]
    assert forest.autoscaling.target_replica_concurrency == 8
    assert forest.compute.cpu == 0.5
    for api in project.apis:
        spec, overrides = to_server_settings(api, project.root)
        ServerSettings(model=spec, **overrides)


def test_cortex_example_predictor_works(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    project_dir = tmp_path / "cortex"
    shutil.copytree(EXAMPLE, project_dir, ignore=shutil.ignore_patterns("models", "__pycache__"))
    _import(project_dir / "train.py").main(project_dir / "models")
    predictor_class = _import(project_dir / "predictor.py").PythonPredictor
    record = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
    for api in load_project(project_dir).apis:
        predictor = predictor_class(api.predictor.config)
        assert predictor.predict(record, {}, {}) == "setosa"
        assert predictor.predict([record, record], [{}, {}], [{}, {}]) == ["setosa", "setosa"]


def _import(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(f"_example_{path.parent.name}_{path.stem}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- Cortex projects as their docs had them ------------------------------------------------


def test_cortex_v0_2x_monitoring_is_accepted(tmp_path: Path) -> None:
    project = load_project(
        write(
            tmp_path,
            MINIMAL + "  monitoring:\n    model_type: classification\n    key: label\n",
        )
    )
    assert project.apis[0].monitoring is not None
    assert project.apis[0].monitoring.model_type == "classification"


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("RealtimeApi", "got 'RealtimeApi'; did you mean 'RealtimeAPI'?"),
        ("trafficsplitter", "got 'trafficsplitter'; did you mean 'TrafficSplitter'?"),
        ("Deployment", "expected RealtimeAPI or TrafficSplitter, got 'Deployment'$"),
    ],
)
def test_a_misspelt_kind_suggests_the_right_one(tmp_path: Path, kind: str, expected: str) -> None:
    path = write(tmp_path, f"- name: iris\n  kind: {kind}\n  predictor:\n    path: predictor.py\n")
    with pytest.raises(ConfigError, match=r"ferry\.yaml:2: apis\[0\]\.kind: .*" + expected):
        load_project(path)


def test_an_onnx_predictor_class_is_served_as_python(tmp_path: Path) -> None:
    project = load_project(
        write(
            tmp_path,
            """
            - name: iris
              predictor:
                type: onnx
                path: predictor.py
                models:
                  paths: [{name: a, path: a.onnx}, {name: b, path: b/}]
            """,
        )
    )
    spec, _ = to_server_settings(project.apis[0], project.root)
    assert spec.uri == f"{tmp_path.resolve() / 'predictor.py'}:ONNXPredictor"
    assert spec.framework == "python"


def test_empty_config_and_env_are_empty_mappings(tmp_path: Path) -> None:
    project = load_project(
        write(tmp_path, MINIMAL + "    config:\n    env:\n  compute:\n    gpu: 1\n")
    )
    predictor = project.apis[0].predictor
    assert (predictor.config, predictor.env) == ({}, {})


def test_a_changed_project_file_changes_the_api_so_a_deploy_rolls_it(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    first = load_project(path).apis[0]
    path.write_text(path.read_text())  # rewritten unchanged: the same revision
    assert load_project(path).apis[0] == first
    for ignored in ("__pycache__/predictor.cpython-311.pyc", "build/x/Dockerfile", ".git/HEAD"):
        (tmp_path / ignored).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / ignored).write_text("x")
    assert load_project(path).apis[0] == first
    (tmp_path / ".env").write_text("STAGE=prod\n")
    with_env = load_project(path).apis[0]
    assert with_env.project_files != first.project_files
    (tmp_path / "predictor.py").write_text("class PythonPredictor:\n    pass  # v2\n")
    assert load_project(path).apis[0].project_files not in (
        first.project_files,
        with_env.project_files,
    )
    # the stored spec validates again, as the control plane reads it back
    assert RealtimeAPI.model_validate(first.model_dump(mode="json")) == first
    assert load_project(path, digest=False).apis[0].project_files is None
