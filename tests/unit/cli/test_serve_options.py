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
