"""The type-check modules of this package: present, armed, and importable at run time.

pyright checks ``check_*.py`` (``./scripts/check``); these tests only make sure that every
module is there, that each one turns unnecessary ``pyright: ignore`` comments into errors (else
an expected error could disappear unnoticed), and that each imports, so every public name it
uses exists at run time too and not only for the type checker.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from pathlib import Path

import pytest

import tests.typing as package

HERE = Path(package.__file__).parent
CHECKS = sorted(
    m.name for m in pkgutil.iter_modules(package.__path__) if m.name.startswith("check_")
)
ARMED = "# pyright: reportUnnecessaryTypeIgnoreComment=error"


def test_every_public_area_has_its_check_module() -> None:
    assert CHECKS == [
        "check_bootstrap",
        "check_fastapi",
        "check_maps",
        "check_publisher",
        "check_redis_buffer",
        "check_send",
        "check_stream",
    ]


@pytest.mark.parametrize("name", CHECKS)
def test_check_module_fails_on_an_expected_error_that_disappears(name: str) -> None:
    lines = (HERE / f"{name}.py").read_text(encoding="utf-8").splitlines()
    assert ARMED in lines


@pytest.mark.parametrize("name", CHECKS)
def test_check_module_imports(name: str) -> None:
    module = importlib.import_module(f"{package.__name__}.{name}")
    assert module.__doc__


def test_pyright_checks_tests_and_examples_in_standard_mode() -> None:
    config = json.loads((HERE.parent / "pyrightconfig.json").read_text(encoding="utf-8"))
    assert config["typeCheckingMode"] == "standard"
    assert sorted(config["include"]) == [".", "../examples"]
