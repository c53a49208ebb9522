"""The house rules of ARCHITECTURE §2: which rooms of ``cqrs._internal`` may import what.

Each rule is checked on the source (imports anywhere in a file, also inside functions and
``TYPE_CHECKING`` blocks), so a new module that breaks a rule fails here with its line.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.compat.test_surface import INTERNAL_DIR, _imported_modules  # pyright: ignore[reportPrivateUsage]

WEB_FRAMEWORKS = ("fastapi", "starlette", "uvicorn", "sse_starlette", "aiohttp")


def _room(path: Path) -> str:
    return path.relative_to(INTERNAL_DIR).as_posix()


def _top(module: str) -> str:
    return module.partition(".")[0]


def _is_stdlib_or_pydantic(module: str) -> bool:
    top = _top(module)
    return (
        top in sys.stdlib_module_names
        or top in {"pydantic", "pydantic_core", "typing_extensions", "__future__"}
        or module.startswith("cqrs._internal.")
    )


def _internal_room_of(module: str) -> str:
    return module.removeprefix("cqrs._internal.").partition(".")[0]


# (what the rule says, which files it covers, which imports it forbids)
RULES: list[tuple[str, Callable[[str], bool], Callable[[str], bool]]] = [
    (
        "messages/ and handlers/ import only the standard library, pydantic and each other",
        lambda room: room.startswith(("messages/", "handlers/")),
        lambda module: (
            not _is_stdlib_or_pydantic(module)
            or (
                module.startswith("cqrs._internal.")
                and _internal_room_of(module)
                not in {"messages", "handlers", "errors", "generics", "deprecation", "coro"}
            )
        ),
    ),
    (
        "brokers/ never imports events/, mediators, outbox/, saga/ or consumers/",
        lambda room: room.startswith("brokers/"),
        lambda module: (
            _internal_room_of(module)
            in {"events", "mediators", "outbox", "saga", "consumers", "streaming"}
            and module.startswith("cqrs._internal.")
        ),
    ),
    (
        "outbox/, inbox/ and saga/storage/ never import the mediators or streaming",
        lambda room: room.startswith(("outbox/", "inbox/", "saga/storage/")),
        lambda module: module.startswith(("cqrs._internal.mediators", "cqrs._internal.streaming")),
    ),
    (
        "dispatch/ never imports events/ (the mediator collects events after the invoker)",
        lambda room: room.startswith("dispatch/"),
        lambda module: module.startswith("cqrs._internal.events"),
    ),
    (
        "a web framework is imported only under integrations/ (sse/ is framework-free)",
        lambda room: not room.startswith("integrations/"),
        lambda module: (
            _top(module) in WEB_FRAMEWORKS or module.startswith("cqrs._internal.integrations")
        ),
    ),
    (
        "SQLAlchemy is imported only under sql/ and in files named sqlalchemy.py",
        lambda room: not (room.startswith("sql/") or room.endswith("/sqlalchemy.py")),
        lambda module: _top(module) == "sqlalchemy",
    ),
]


def _module_of(room: str) -> str:
    dotted = "cqrs._internal." + room.removesuffix(".py").replace("/", ".")
    return dotted.removesuffix(".__init__")


def _violations(rule_index: int) -> list[str]:
    _, covers, forbids = RULES[rule_index]
    problems: list[str] = []
    for path in sorted(INTERNAL_DIR.rglob("*.py")):
        room = _room(path)
        if not covers(room):
            continue
        problems += [
            f"{room}:{line}: imports {module}"
            for line, module in _imported_modules(path, _module_of(room))
            if forbids(module)
        ]
    return problems


@pytest.mark.parametrize("rule_index", range(len(RULES)), ids=[r[0][:40] for r in RULES])
def test_house_rule(rule_index: int) -> None:
    problems = _violations(rule_index)
    assert not problems, RULES[rule_index][0] + ":\n" + "\n".join(problems)


def test_sse_room_exists_and_holds_the_framework_free_parts() -> None:
    """The SSE frames, frame streams, jobs and buffers live in ``sse/``, not ``integrations/``."""
    sse = {p.name for p in (INTERNAL_DIR / "sse").glob("*.py")}
    assert {"frames.py", "stream.py", "jobs.py", "replay.py", "redis_replay.py"} <= sse
    integrations = {p.name for p in (INTERNAL_DIR / "integrations").glob("*.py")}
    assert integrations <= {"__init__.py", "starlette.py", "fastapi.py", "faststream.py"}


def test_the_rules_catch_a_violation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A framework import in sse/ and an events import in dispatch/ are both reported."""
    fake = tmp_path / "_internal"
    (fake / "sse").mkdir(parents=True)
    (fake / "dispatch").mkdir()
    (fake / "sse" / "bad.py").write_text("import starlette.responses\n", encoding="utf-8")
    (fake / "dispatch" / "bad.py").write_text(
        "from cqrs._internal.events.emitter import EventEmitter\n", encoding="utf-8"
    )
    monkeypatch.setattr(sys.modules[__name__], "INTERNAL_DIR", fake)
    web = next(i for i, r in enumerate(RULES) if r[0].startswith("a web framework"))
    dispatch = next(i for i, r in enumerate(RULES) if r[0].startswith("dispatch/"))
    assert {p.split(":")[0] for p in _violations(web)} == {"sse/bad.py"}
    assert {p.split(":")[0] for p in _violations(dispatch)} == {"dispatch/bad.py"}
