"""Python predictors written to files, Cortex-style and LitServe/KServe-style."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from starlette.responses import Response

from ferry.errors import ModelError, ModelLoadError
from ferry.models.loaders import load_source
from ferry.models.loaders.predictor import PredictorModel, construct
from ferry.models.loaders.predictor_class import find_class
from ferry.types import InputKind, PayloadRequest

from .conftest import MakeSource

CORTEX = """
class PythonPredictor:
    def __init__(self, config, python_client=None):
        self.scale = config["scale"]
        self.client = python_client

    def predict(self, payload, query_params, headers):
        return {"y": payload["x"] * self.scale, "q": query_params.get("q"), "h": headers.get("h")}
"""

RESPONSE = """
from starlette.responses import Response

class Raw:
    def predict(self, payload):
        return Response(b"\\x00\\x01", media_type="application/octet-stream")
"""

POST_PREDICT = """
import json

class PythonPredictor:
    def __init__(self, config):
        self.log = config["log"]

    def predict(self, payload):
        return payload + 1

    def post_predict(self, response, payload):
        with open(self.log, "a") as log:
            log.write(json.dumps([response, payload]))
"""

BATCHED = """
class PythonPredictor:
    def __init__(self, config):
        self.calls = []

    def predict(self, payload, headers):
        self.calls.append(len(payload))
        if payload and payload[0] == "short":
            return payload[:-1]
        return [p.upper() for p in payload]
"""

BROKEN_INIT = """
class PythonPredictor:
    def __init__(self, config):
        raise ValueError("no weights at " + config["path"])

    def predict(self, payload):
        return payload
"""

LITSERVE = """
import helper_module

class API:
    def setup(self, device):
        self.device = device
        self.offset = helper_module.OFFSET

    def decode_request(self, request):
        return request["input"]

    def predict(self, x):
        return x + self.offset

    def encode_response(self, output):
        return {"output": output, "device": self.device}

    def warmup(self):
        self.warmed = True
"""

KSERVE = """
class Model:
    def __init__(self, name):
        self.name = name
        self.loads = 0

    def load(self):
        self.loads += 1

    def predict(self, payload, headers=None):
        return {"model": self.name, "loads": self.loads}
"""

CORTEX_WITH_LOAD_HELPER = """
class PythonPredictor:
    def __init__(self, config):
        self.loads = 0
        self.load()

    def load(self):
        self.loads += 1

    def predict(self, payload):
        return self.loads
"""


def _write(tmp_path: Path, source: str, name: str = "predictor.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return path


def _request(payload: Any, **query: str) -> PayloadRequest:
    return PayloadRequest(payload, query_params=query, headers={"h": "header"})


def test_cortex_predictor_gets_config_and_request_parts(
    tmp_path: Path, make_source: MakeSource
) -> None:
    path = _write(tmp_path, CORTEX)
    model = load_source(make_source(path, "python", config={"scale": 3}))
    assert model.signature.input_kind is InputKind.PAYLOAD
    results = model.predict_payloads([_request({"x": 2}, q="a"), _request({"x": 5})])
    assert results == [{"y": 6, "q": "a", "h": "header"}, {"y": 15, "q": None, "h": "header"}]
    assert not model.has_post_predict
    model.warmup()  # a Cortex predictor without warmup is not sent a made-up request


def test_starlette_response_passes_through_untouched(
    tmp_path: Path, make_source: MakeSource
) -> None:
    path = _write(tmp_path, RESPONSE)
    model = load_source(make_source(path, "python", predictor_class="Raw"))
    (result,) = model.predict_payloads([_request(b"")])
    assert isinstance(result, Response)
    assert result.body == b"\x00\x01"


def test_post_predict_gets_the_response_and_payload(
    tmp_path: Path, make_source: MakeSource
) -> None:
    path = _write(tmp_path, POST_PREDICT, "post.py")
    log = tmp_path / "log.json"
    model = load_source(make_source(path, "python", config={"log": str(log)}))
    request = _request(41)
    (response,) = model.predict_payloads([request])
    assert model.has_post_predict
    model.post_predict(response, request)
    assert log.read_text() == "[42, 41]"


def test_batched_predictor_is_called_once_with_lists(
    tmp_path: Path, make_source: MakeSource
) -> None:
    path = _write(tmp_path, BATCHED)
    source = make_source(path, "python")
    instance = construct(find_class(path, None, None), source)
    model = PredictorModel(instance, source, batched=True)
    assert model.predict_payloads([_request("a"), _request("b"), _request("c")]) == ["A", "B", "C"]
    assert instance.calls == [3]  # type: ignore[attr-defined]
    with pytest.raises(ModelError, match="predict returned 1 results for 2 payloads"):
        model.predict_payloads([_request("short"), _request("b")])


def test_spec_flag_turns_batching_on(tmp_path: Path, make_source: MakeSource) -> None:
    path = _write(tmp_path, BATCHED)
    model = load_source(make_source(path, "python", predictor_batching=True))
    assert model.predict_payloads([_request("a"), _request("b")]) == ["A", "B"]


def test_init_error_is_one_line_with_the_cause_kept(
    tmp_path: Path, make_source: MakeSource
) -> None:
    path = _write(tmp_path, BROKEN_INIT, "broken.py")
    with pytest.raises(ModelLoadError) as caught:
        load_source(make_source(path, "python", config={"path": "/nowhere"}))
    assert str(caught.value) == (
        "broken.py: PythonPredictor.__init__ raised ValueError: no weights at /nowhere"
    )
    assert isinstance(caught.value.__cause__, ValueError)


def test_import_error_names_the_file(tmp_path: Path, make_source: MakeSource) -> None:
    path = _write(tmp_path, "import ferry_module_that_is_not_there\n", "imports.py")
    with pytest.raises(
        ModelLoadError, match=r"^imports.py: importing it raised ModuleNotFoundError"
    ):
        load_source(make_source(path, "python"))


def test_a_missing_package_says_how_to_install_the_projects_requirements(
    tmp_path: Path, make_source: MakeSource
) -> None:
    path = _write(tmp_path, "import ferry_pkg_not_there.sub\n", "imports.py")
    (tmp_path / "requirements.txt").write_text("ferry-pkg-not-there==1.0\n")
    with pytest.raises(ModelLoadError) as caught:
        load_source(make_source(path, "python"))
    assert str(caught.value).endswith(
        f"'ferry_pkg_not_there' is not installed in this environment: "
        f"pip install -r {tmp_path / 'requirements.txt'}"
    )


def test_a_package_missing_in_init_says_to_install_it(
    tmp_path: Path, make_source: MakeSource
) -> None:
    source = """
    class PythonPredictor:
        def __init__(self, config):
            import ferry_pkg_not_there

        def predict(self, payload):
            return payload
    """
    path = _write(tmp_path, source)
    with pytest.raises(ModelLoadError) as caught:
        load_source(make_source(path, "python", predictor_class="PythonPredictor"))
    message = str(caught.value)
    assert "PythonPredictor.__init__ raised ModuleNotFoundError" in message
    assert message.endswith(
        "'ferry_pkg_not_there' is not installed in this environment (pip install it)"
    )


def test_litserve_style_hooks_and_python_path(tmp_path: Path, make_source: MakeSource) -> None:
    libs = tmp_path / "libs"
    libs.mkdir()
    (libs / "helper_module.py").write_text("OFFSET = 10\n")
    path = _write(tmp_path, LITSERVE, "lit.py")
    model = load_source(make_source(path, "python", python_path=str(libs)))
    model.warmup()
    assert model.predict_payloads([_request({"input": 1})]) == [{"output": 11, "device": "cpu"}]


def test_unknown_class_and_unknown_arguments_are_load_errors(
    tmp_path: Path, make_source: MakeSource
) -> None:
    path = _write(tmp_path, CORTEX, "cortex.py")
    with pytest.raises(ModelLoadError, match=r"cortex.py: no class 'Nope'; classes with a"):
        load_source(make_source(path, "python", predictor_class="Nope"))
    odd = _write(
        tmp_path, "class P:\n    def predict(self, payload, session):\n        pass\n", "odd.py"
    )
    with pytest.raises(ModelLoadError, match=r"P.predict takes 'session', which ferry cannot"):
        load_source(make_source(odd, "python"))


def test_kserve_style_load_runs_once_after_init(tmp_path: Path, make_source: MakeSource) -> None:
    path = _write(tmp_path, KSERVE, "kserve_model.py")
    model = load_source(make_source(path, "python"))
    assert model.predict_payloads([_request({})]) == [{"model": "kserve_model", "loads": 1}]


def test_cortex_predictor_load_helper_is_not_called_again(
    tmp_path: Path, make_source: MakeSource
) -> None:
    path = _write(tmp_path, CORTEX_WITH_LOAD_HELPER)
    assert load_source(make_source(path, "python")).predict_payloads([_request(0)]) == [1]
