"""Fixtures for the control plane: a fake clock, the in-memory backend, a store, projects."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from ferry.control.store import Store


def load_fake_backend() -> ModuleType:
    """``fake_backend.py`` as a module (tests are not a package under importlib mode)."""
    name = "ferry_tests_fake_backend"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).with_name("fake_backend.py")
        )
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def backend() -> Any:
    return load_fake_backend().FakeBackend()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(tmp_path / "state" / "ferry.db")
    yield opened
    opened.close()


def api_yaml(name: str = "iris", *, env: str = "v1", **sections: dict[str, Any]) -> str:
    """One RealtimeAPI entry; ``sections`` are extra top-level mappings (autoscaling...)."""
    lines = [
        f"- name: {name}",
        "  predictor:",
        "    type: python",
        "    model_path: model.joblib",
        f"    env: {{VERSION: {env}}}",
    ]
    for section, values in sections.items():
        lines.append(f"  {section}:")
        lines.extend(f"    {key}: {value}" for key, value in values.items())
    return "\n".join(lines) + "\n"


@pytest.fixture
def write_project(tmp_path: Path) -> Callable[[str], Path]:
    """Write a ferry.yaml (the model file need not exist for the control plane)."""

    def write(text: str) -> Path:
        root = tmp_path / "project"
        root.mkdir(exist_ok=True)
        (root / "ferry.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
        return root

    return write


@pytest.fixture
def api_entry() -> Callable[..., str]:
    return api_yaml
