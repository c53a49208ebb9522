"""Property: every emitted event, follow-ups included, is handled exactly once.

Random event forests, random failing handlers, every scheduling policy and limit, through
``send`` and through both stream policies.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncIterator
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import cqrs
from tests.support import HoldsEvents, make_mediator, make_streaming


class Node(cqrs.DomainEvent, frozen=True):
    id: int


class Run(cqrs.Request):
    roots: list[int]


PLAN: dict[str, Any] = {"children": {}, "failing": set()}
HANDLED: collections.Counter[tuple[str, int]] = collections.Counter()


class Spawner(cqrs.EventHandler[Node]):
    """Handles a node by emitting its children; fails on the planned nodes."""

    def __init__(self) -> None:
        self._follow: list[cqrs.Event] = []

    @property
    def events(self) -> list[cqrs.Event]:
        return self._follow

    async def handle(self, event: Node) -> None:
        await asyncio.sleep(0)
        HANDLED["spawner", event.id] += 1
        if event.id in PLAN["failing"]:
            raise RuntimeError(f"node {event.id}")
        self._follow.extend(Node(id=c) for c in PLAN["children"].get(event.id, ()))


class Recorder(cqrs.EventHandler[Node]):
    async def handle(self, event: Node) -> None:
        HANDLED["recorder", event.id] += 1


class RunHandler(HoldsEvents, cqrs.RequestHandler[Run, None]):
    async def handle(self, request: Run) -> None:
        self._events.extend(Node(id=r) for r in request.roots)


class StreamRun(cqrs.StreamingRequestHandler[Run, Any]):  # plain ints, outside ResT's bound
    def __init__(self) -> None:
        self._events: list[cqrs.Event] = []

    @property
    def events(self) -> list[cqrs.Event]:
        return self._events.copy()

    def clear_events(self) -> None:
        self._events.clear()

    async def handle(self, request: Run) -> AsyncIterator[int]:
        for root in request.roots[:-1]:
            self._events.append(Node(id=root))
            yield root
        if request.roots:
            self._events.append(Node(id=request.roots[-1]))  # after the last yield


@st.composite
def forests(draw: st.DrawFn) -> tuple[list[int], dict[int, list[int]], set[int]]:
    size = draw(st.integers(min_value=1, max_value=25))
    parents = [draw(st.integers(min_value=-1, max_value=i - 1)) for i in range(size)]
    children: dict[int, list[int]] = collections.defaultdict(list)
    roots: list[int] = []
    for node, parent in enumerate(parents):
        (roots if parent < 0 else children[parent]).append(node)
    failing = draw(st.sets(st.integers(min_value=0, max_value=size - 1), max_size=size // 3))
    return roots, dict(children), failing


def expected(roots: list[int], children: dict[int, list[int]], failing: set[int]) -> set[int]:
    """Nodes that get emitted: a failing spawner emits no children."""
    seen: set[int] = set()
    queue = list(roots)
    while queue:
        node = queue.pop()
        seen.add(node)
        if node not in failing:
            queue.extend(children.get(node, ()))
    return seen


@settings(max_examples=150, deadline=None)
@given(
    forest=forests(),
    mode=st.sampled_from(["send", "before_item", "concurrent"]),
    concurrent=st.booleans(),
    limit=st.integers(min_value=1, max_value=6),
)
def test_every_event_is_handled_exactly_once(
    forest: tuple[list[int], dict[int, list[int]], set[int]],
    mode: str,
    concurrent: bool,
    limit: int,
) -> None:
    roots, children, failing = forest
    PLAN.update(children=children, failing=failing)
    HANDLED.clear()
    logging.getLogger("cqrs").disabled = True
    try:
        asyncio.run(_drive(mode, roots, concurrent, limit))
    finally:
        logging.getLogger("cqrs").disabled = False
    emitted = expected(roots, children, failing)
    want = collections.Counter(
        {(kind, node): 1 for node in emitted for kind in ("spawner", "recorder")}
    )
    assert want == HANDLED


async def _drive(mode: str, roots: list[int], concurrent: bool, limit: int) -> None:
    events = {Node: [Spawner, Recorder]}
    options: dict[str, Any] = {
        "concurrent_event_handle_enable": concurrent,
        "max_concurrent_event_handlers": limit,
    }
    if mode == "send":
        await make_mediator({Run: RunHandler}, events, **options).send(Run(roots=roots))
        return
    mediator = make_streaming({Run: StreamRun}, events, stream_events=mode, **options)
    async with mediator.stream(Run(roots=roots)) as items:
        assert [item async for item in items] == roots[:-1]
