"""The install-hint guard: every optional package is imported through ``_optional.require``.

Each extra is hidden in a fresh interpreter (``None`` in ``sys.modules`` makes its import fail
as if it were not installed), then the cqrs feature that needs it is used: the error must be
``MissingExtraError`` ending with the exact pip line. An AST guard checks that no module under
``src/cqrs`` imports an optional package outside a ``require`` block.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from cqrs._internal._optional import require
from cqrs._internal.errors import MissingExtraError
from tests.support import LONG_TEST_TIMEOUT, PATIENCE

pytestmark = pytest.mark.timeout(LONG_TEST_TIMEOUT)  # subprocesses wait PATIENCE

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DIR = ROOT / "src" / "cqrs"

# Every distribution an extra brings in -> the top-level modules it (and what it drags along)
# installs. A new extra in pyproject.toml must be added here (test_every_extra_is_known).
MODULES_OF_DISTRIBUTION: dict[str, tuple[str, ...]] = {
    "fastapi": ("fastapi", "starlette"),
    "uvicorn": ("uvicorn",),
    "sqlalchemy": ("sqlalchemy",),
    "aiosqlite": ("aiosqlite",),
    "asyncpg": ("asyncpg",),
    "asyncmy": ("asyncmy",),
    "aiomysql": ("aiomysql",),
    "aio-pika": ("aio_pika", "aiormq", "pamqp"),
    "aiokafka": ("aiokafka",),
    "nats-py": ("nats",),
    "redis": ("redis",),
    "dependency-injector": ("dependency_injector",),
    "dishka": ("dishka",),
    "aiobreaker": ("aiobreaker",),
    "protobuf": ("google",),
    "opentelemetry-api": ("opentelemetry",),
    "faststream": ("faststream",),
}
OPTIONAL_MODULES = frozenset(m for ms in MODULES_OF_DISTRIBUTION.values() for m in ms)

# The dev extra also lists tools (pytest, ruff...) that src/ never imports.
EXTRAS_OF_TOOLS = frozenset({"dev"})


# -- the guard itself ------------------------------------------------------------------------


def test_require_turns_a_missing_module_into_missing_extra_error() -> None:
    with pytest.raises(MissingExtraError) as info, require("somepkg", "some-extra", "Feature"):
        import cqrs_no_such_module_for_the_test  # pyright: ignore[reportMissingImports]  # noqa: F401
    message = str(info.value)
    assert isinstance(info.value, ImportError)
    assert message.startswith("Feature needs 'somepkg' (module 'cqrs_no_such_module_for_the_test')")
    assert message.endswith("Install it with: pip install 'cqrs-kit[some-extra]'")
    assert isinstance(info.value.__cause__, ModuleNotFoundError)


def test_require_names_the_package_when_it_is_the_missing_module(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "somepkg", None)
    with pytest.raises(MissingExtraError) as info, require("somepkg", "x", "Feature"):
        import somepkg  # type: ignore[import-not-found]  # noqa: F401
    assert str(info.value) == (
        "Feature needs 'somepkg', which is not installed. "
        "Install it with: pip install 'cqrs-kit[x]'"
    )


def test_require_says_upgrade_when_the_package_is_installed_but_lacks_the_module() -> None:
    # email is installed; email.no_such_submodule is not: a too old version, as far as the
    # guard can tell. Installing the extra would not help, upgrading would.
    with pytest.raises(MissingExtraError) as info, require("email>=99", "x", "Feature"):
        import email.no_such_submodule  # type: ignore[import-not-found]  # noqa: F401
    message = str(info.value)
    assert "the installed 'email' cannot provide it" in message
    assert message.endswith("Upgrade it with: pip install --upgrade 'email>=99'")


def test_require_lets_other_errors_and_successful_imports_through() -> None:
    with require("json", "x", "Feature"):
        import json
    assert json.dumps(1) == "1"
    with pytest.raises(ZeroDivisionError), require("x", "x", "Feature"):
        _ = 1 / 0
    inner = MissingExtraError("inner")
    with pytest.raises(MissingExtraError) as info, require("x", "x", "Outer"):
        raise inner
    assert info.value is inner


# -- each extra, hidden in a fresh interpreter -------------------------------------------------

_PROBE = """
import sys
for name in {hidden!r}:
    sys.modules[name] = None
from cqrs.errors import MissingExtraError

try:
{action}
except MissingExtraError as error:
    print("MissingExtraError:", error)
except BaseException as error:
    print("WRONG", type(error).__name__, error)
else:
    print("WRONG no error")
"""


def _probe(hidden: list[str], action: str) -> str:
    code = _PROBE.format(hidden=hidden, action=textwrap.indent(action, "    "))
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize(
    ("extra", "hidden", "action"),
    [
        pytest.param(
            "fastapi",
            ["fastapi", "starlette"],
            "import cqrs.integrations.fastapi",
            id="fastapi-integration",
        ),
        pytest.param(
            "fastapi",
            ["starlette"],
            "from cqrs.integrations.fastapi import SSEResponse",
            id="fastapi-without-starlette",
        ),
        pytest.param(
            "redis",
            ["redis"],
            "from cqrs.integrations.redis_replay import RedisReplayBuffer\nRedisReplayBuffer()",
            id="redis-replay-buffer",
        ),
        pytest.param(
            "dishka",
            ["dishka"],
            "from cqrs.container.dishka import DishkaCQRSContainer",
            id="dishka-container",
        ),
        pytest.param(
            "dishka",
            ["dishka"],
            "import cqrs._internal.di as di_package\ndi_package.DishkaCQRSContainer",
            id="dishka-lazy-attribute",
        ),
        pytest.param(
            "dependency-injector",
            ["dependency_injector"],
            "from cqrs.container.dependency_injector import DependencyInjectorCQRSContainer",
            id="dependency-injector-container",
        ),
        pytest.param(
            "faststream",
            ["faststream"],
            "import cqrs.integrations.faststream",
            id="faststream-integration",
        ),
    ],
)
def test_missing_extra_gives_the_pip_line(extra: str, hidden: list[str], action: str) -> None:
    output = _probe(hidden, action)
    assert output.startswith("MissingExtraError:"), output
    assert "which is not installed" in output
    assert output.endswith(f"pip install 'cqrs-kit[{extra}]'"), output


def test_fastapi_without_its_sse_module_says_to_upgrade() -> None:
    action = textwrap.dedent(
        """\
        import asyncio
        from cqrs.integrations.fastapi import server_sent_events

        sys.modules["fastapi.sse"] = None  # FastAPI older than 0.135 has no fastapi.sse

        async def main():
            async for _ in server_sent_events(None):
                pass

        asyncio.run(main())
        """
    )
    output = _probe([], action)
    assert output.startswith("MissingExtraError: server_sent_events needs 'fastapi>=0.135'")
    assert output.endswith("pip install --upgrade 'fastapi>=0.135'"), output


# -- no optional import outside a require block ------------------------------------------------


def _is_require_block(node: ast.AST) -> bool:
    if not isinstance(node, ast.With | ast.AsyncWith):
        return False
    for item in node.items:
        call = item.context_expr
        if isinstance(call, ast.Call):
            func = call.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name == "require":
                return True
    return False


def _is_type_checking_block(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = node.test
    name = test.attr if isinstance(test, ast.Attribute) else getattr(test, "id", None)
    return name == "TYPE_CHECKING"


def _unguarded_optional_imports(source: str, filename: str) -> list[str]:
    """``line: module`` for every import of an optional package outside a ``require`` block
    (imports under ``if TYPE_CHECKING:`` never run and are allowed)."""
    found: list[str] = []

    def visit(node: ast.AST, guarded: bool) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom) and not guarded:
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                modules = [] if node.level else [node.module or ""]
            for module in modules:
                if module.partition(".")[0] in OPTIONAL_MODULES:
                    found.append(f"{filename}:{node.lineno}: {module}")
        # The body of a guard is guarded; its orelse (an if's else) is not.
        if _is_require_block(node) or _is_type_checking_block(node):
            for child in node.body:  # type: ignore[attr-defined]
                visit(child, True)
            for child in getattr(node, "orelse", []):
                visit(child, guarded)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, guarded)

    visit(ast.parse(source, filename=filename), False)
    return found


def test_no_optional_package_is_imported_outside_require() -> None:
    files = sorted(PACKAGE_DIR.rglob("*.py"))
    assert len(files) > 50, "the source tree was not found"
    problems = [
        problem
        for path in files
        for problem in _unguarded_optional_imports(
            path.read_text(encoding="utf-8"), str(path.relative_to(ROOT))
        )
    ]
    assert not problems, "optional imports outside `with require(...)`:\n" + "\n".join(problems)


def test_the_guard_check_catches_unguarded_imports() -> None:
    source = textwrap.dedent(
        """\
        from typing import TYPE_CHECKING
        import fastapi
        from starlette.responses import Response
        from redis import asyncio
        import json
        from . import sibling
        with require("dishka", extra="dishka", feature="f"):
            import dishka
        with _optional.require("x", extra="x", feature="f"):
            from sqlalchemy import orm
        with open("f"):
            import aiokafka
        if TYPE_CHECKING:
            import nats
        else:
            import aio_pika

        def later():
            import google.protobuf
            with require("otel", extra="otel", feature="f"):
                import opentelemetry
        """
    )
    found = _unguarded_optional_imports(source, "m.py")
    assert found == [
        "m.py:2: fastapi",
        "m.py:3: starlette.responses",
        "m.py:4: redis",
        "m.py:12: aiokafka",
        "m.py:16: aio_pika",
        "m.py:19: google.protobuf",
    ]


def test_every_extra_is_known_to_the_guard() -> None:
    """A new extra (or a new package in one) must be listed above, so the guard covers it."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]
    unknown: list[str] = []
    for extra, requirements in extras.items():
        if extra in EXTRAS_OF_TOOLS:
            continue
        for requirement in requirements:
            name = requirement.split(";")[0]
            for separator in "[<>=!~ ":
                name = name.split(separator)[0]
            if name != "cqrs-kit" and name.lower() not in MODULES_OF_DISTRIBUTION:
                unknown.append(f"{extra}: {name}")
    assert not unknown, f"add these distributions to MODULES_OF_DISTRIBUTION: {unknown}"


# -- the demo extra and the install scripts ----------------------------------------------------

CORE_MODULES = frozenset({"pydantic", "pydantic_core", "di", "typing_extensions", "cqrs"})


def _third_party_imports(directory: Path) -> set[str]:
    found: set[str] = set()
    for path in directory.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(alias.name.partition(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                found.add(node.module.partition(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m != "examples"}


def _extra_modules(extra: str) -> set[str]:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]
    modules: set[str] = set()
    for requirement in extras[extra]:
        name = requirement.split(";")[0]
        if name.startswith("cqrs-kit["):
            for inner in name.removeprefix("cqrs-kit[").rstrip("]").split(","):
                modules |= _extra_modules(inner.strip())
            continue
        for separator in "[<>=!~ ":
            name = name.split(separator)[0]
        modules.update(MODULES_OF_DISTRIBUTION.get(name.lower(), (name,)))
    return modules


def test_demo_extra_is_exactly_what_the_demo_app_imports() -> None:
    needed = _third_party_imports(ROOT / "examples" / "demo_app") - CORE_MODULES
    demo = _extra_modules("demo")
    assert needed, "examples/demo_app was not found"
    assert needed <= demo, f"add to the demo extra: {sorted(needed - demo)}"
    assert demo == {"fastapi", "starlette", "uvicorn", "sqlalchemy", "aiosqlite"}, (
        "the demo extra holds more than the demo"
    )
    assert demo <= _extra_modules("dev"), "dev must contain demo (the scripts rely on it)"


_FAKE_PYTHON = """#!/usr/bin/env bash
echo "python $*" >> "$FAKE_LOG"
"""


class Sandbox:
    """A copy of the scripts and pyproject.toml over a .venv whose python only logs its calls."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "scripts").mkdir()
        for name in ("_env.sh", "demo", "test"):
            (root / "scripts" / name).write_bytes((ROOT / "scripts" / name).read_bytes())
            (root / "scripts" / name).chmod(0o755)
        (root / "pyproject.toml").write_bytes((ROOT / "pyproject.toml").read_bytes())
        (root / ".venv" / "bin").mkdir(parents=True)
        python = root / ".venv" / "bin" / "python"
        python.write_text(_FAKE_PYTHON, encoding="utf-8")
        python.chmod(0o755)
        self.log = root / "calls.log"

    def run(self, script: str) -> tuple[str, list[str]]:
        """Run ``scripts/<script>``: what it printed to stderr, and the python calls it made."""
        self.log.write_text("", encoding="utf-8")
        env = {"PATH": "/usr/bin:/bin", "FAKE_LOG": str(self.log), "HOME": str(self.root)}
        done = subprocess.run(
            ["bash", str(self.root / "scripts" / script), "--flag"],
            capture_output=True,
            text=True,
            env=env,
            timeout=PATIENCE,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stderr, self.log.read_text(encoding="utf-8").splitlines()

    def installs(self, calls: list[str]) -> list[str]:
        return [c.rsplit(" ", 1)[-1] for c in calls if " -e " in c]


def test_demo_installs_only_the_demo_extra_and_test_the_dev_set(tmp_path: Path) -> None:
    box = Sandbox(tmp_path)
    root = str(tmp_path)

    said, calls = box.run("demo")
    assert box.installs(calls) == [f"{root}[demo]"]
    assert said.splitlines() == [
        "demo: installing cqrs-kit[demo] into .venv: the demo's dependencies (fastapi, "
        "uvicorn, SQLAlchemy with aiosqlite); under a minute the first time..."
    ]
    assert calls[-1] == "python -m examples.demo_app --flag"

    said, calls = box.run("demo")  # installed: no reinstall, nothing said
    assert (said, box.installs(calls)) == ("", [])

    said, calls = box.run("test")  # the demo set is not enough for the tests
    assert box.installs(calls) == [f"{root}[dev]"]
    assert said.startswith("test: installing cqrs-kit[dev] into .venv")
    assert calls[-1] == "python -m pytest --flag"

    (tmp_path / ".venv" / ".cqrs-installed-demo").unlink()
    said, calls = box.run("demo")  # the dev set contains the demo set
    assert (said, box.installs(calls)) == ("", [])
    said, calls = box.run("test")
    assert (said, box.installs(calls)) == ("", [])


def test_a_changed_pyproject_reinstalls_only_the_set_that_runs(tmp_path: Path) -> None:
    box = Sandbox(tmp_path)
    box.run("demo")
    box.run("test")
    edited = (tmp_path / "pyproject.toml").stat().st_mtime
    for stamp in (tmp_path / ".venv").glob(".cqrs-installed-*"):  # both older than the edit
        os.utime(stamp, (edited - 10, edited - 10))

    _, calls = box.run("demo")
    assert box.installs(calls) == [f"{tmp_path}[demo]"]
    _, calls = box.run("demo")
    assert box.installs(calls) == []
    _, calls = box.run("test")
    assert box.installs(calls) == [f"{tmp_path}[dev]"]
