"""`ferry serve` settings: flags, SageMaker env vars, sizes, and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from ferry.cli.main import cli, main
from ferry.cli.serve import build_settings, parse_size
from ferry.errors import ConfigError

DOCS = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"


@pytest.mark.parametrize(
    ("text", "size"),
    [("1024", 1024), ("6MB", 6_000_000), ("6MiB", 6_291_456), ("2KiB", 2048), ("1.5k", 1500)],
)
def test_sizes_parse_in_decimal_and_binary_units(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_a_bad_size_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not a size"):
        parse_size("lots")


def test_sagemaker_mode_serves_opt_ml_model_on_all_interfaces() -> None:
    settings = build_settings({"model": None}, env={})
    assert settings.model.uri == "/opt/ml/model"
    assert (settings.host, settings.port) == ("0.0.0.0", 8080)


def test_sagemaker_env_vars_are_honoured_and_flags_win() -> None:
    env = {
        "SAGEMAKER_BASE_DIR": "/srv/ml",
        "SAGEMAKER_BIND_TO_PORT": "9000",
        "SAGEMAKER_MODEL_SERVER_WORKERS": "3",
        "SAGEMAKER_MODEL_SERVER_TIMEOUT": "30",
        "SAGEMAKER_MAX_PAYLOAD_IN_MB": "10",
        "SAGEMAKER_CONTAINER_LOG_LEVEL": "30",
    }
    settings = build_settings({"model": None, "workers": 5}, env=env)
    assert settings.model.uri == "/srv/ml/model"
    assert settings.port == 9000
    assert settings.workers == 5
    assert settings.timeout_s == 30
    assert settings.max_body_bytes == 10 * 1024 * 1024
    assert settings.log_level == "warning"


def test_an_invalid_setting_names_the_setting() -> None:
    with pytest.raises(ConfigError, match="invalid port"):
        build_settings({"model": "m.joblib", "port": 70000}, env={})


def test_cli_errors_are_one_line_without_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["serve", "m.joblib", "--labels", "zero=cat"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert err.startswith("ferry: error: --labels:")


def test_every_serve_flag_is_documented() -> None:
    documented = DOCS.read_text()
    from ferry.cli.serve import serve as command

    for param in command.params:
        for flag in param.opts + param.secondary_opts:
            if flag.startswith("--"):
                assert f"`{flag}" in documented or f"/{flag}`" in documented, flag


def test_help_lists_the_serve_command() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert "serve" in result.output
    serve_help = CliRunner().invoke(cli, ["serve", "--help"])
    assert "SageMaker" in serve_help.output


CORTEX_YAML = """\
- name: iris
  predictor:
    path: predictor.py
    config: {model: model.pkl, top: 3}
    env: {STAGE: test}
    processes_per_replica: 3
    threads_per_process: 4
    log_level: warning
    server_side_batching: {max_batch_size: 8, batch_interval: 100ms}
- name: other
  predictor:
    path: predictor.py
"""


def cortex_project(tmp_path: Path, text: str = CORTEX_YAML) -> Path:
    (tmp_path / "cortex.yaml").write_text(text)
    (tmp_path / "predictor.py").write_text("class PythonPredictor:\n    pass\n")
    return tmp_path


def test_a_project_directory_brings_its_api_settings(tmp_path: Path) -> None:
    root = cortex_project(tmp_path)
    settings = build_settings({"model": str(root)}, env={})
    assert settings.model.uri == f"{root.resolve() / 'predictor.py'}:PythonPredictor"
    assert settings.model.name == "iris"
    assert settings.model.config == {"model": "model.pkl", "top": 3}
    assert settings.model.predictor_batching is True
    assert (settings.workers, settings.predictor_threads) == (3, 4)
    assert (settings.batching, settings.max_batch_size, settings.max_batch_wait_ms) == (
        True,
        8,
        100.0,
    )
    assert settings.log_level == "warning"


def test_flags_win_over_the_project_and_config_pairs_merge(tmp_path: Path) -> None:
    root = cortex_project(tmp_path)
    options = {"model": str(root), "workers": 1, "log_level": "debug", "config": {"top": 5}}
    settings = build_settings(options, env={})
    assert (settings.workers, settings.log_level) == (1, "debug")
    assert settings.model.config == {"model": "model.pkl", "top": 5}
    other = build_settings({"model": str(root), "name": "other"}, env={})
    assert (other.model.name, other.workers, other.model.predictor_batching) == (
        "other",
        1,
        False,
    )


def test_a_broken_project_is_one_located_line_on_serve(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = cortex_project(
        tmp_path, CORTEX_YAML.replace("threads_per_process", "thread_per_process")
    )
    code = main(["serve", str(root)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert "cortex.yaml:7: apis[0].predictor.thread_per_process: unknown field" in err
    assert "did you mean 'threads_per_process'?" in err
    cortex_project(tmp_path)
    assert main(["serve", str(root), "--name", "nope"]) == 2
    assert "no RealtimeAPI named 'nope' (found: iris, other)" in capsys.readouterr().err
