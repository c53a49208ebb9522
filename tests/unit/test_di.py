"""DIContainer: the adapter for the ``di`` package (compiled fast path, di path, scopes)."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Annotated

import di
import pytest
from di.dependent import Dependent, Marker

from cqrs._internal.di import DIContainer
from cqrs._internal.errors import ContainerError


class Repo:
    pass


class Service:
    def __init__(self, repo: Repo) -> None:
        self.repo = repo


class Handler:
    def __init__(self, service: Service, repo: Repo) -> None:
        self.service = service
        self.repo = repo


class Leaf:
    pass


def attached(external: di.Container) -> DIContainer:
    container = DIContainer()
    container.attach_external_container(external)
    return container


def uses_fast_path(container: DIContainer, type_: type) -> bool:
    return container._plans[type_].build is not None  # pyright: ignore[reportPrivateUsage]


# -- fast path -----------------------------------------------------------------------------


async def test_fast_path_builds_a_new_instance_per_resolve() -> None:
    container = attached(di.Container())
    first = await container.resolve(Leaf)
    second = await container.resolve(Leaf)
    assert isinstance(first, Leaf)
    assert first is not second
    assert uses_fast_path(container, Leaf)


async def test_fast_path_wires_constructor_dependencies_and_shares_cached_ones() -> None:
    container = attached(di.Container())
    handler = await container.resolve(Handler)
    assert uses_fast_path(container, Handler)
    assert isinstance(handler.service, Service)
    # Repo is use_cache=True: one instance per resolve, shared by Handler and Service.
    assert handler.service.repo is handler.repo
    other = await container.resolve(Handler)
    assert other.repo is not handler.repo


class Uncached:
    def __init__(
        self,
        a: Annotated[Repo, Marker(use_cache=False, scope="request")],
        b: Annotated[Repo, Marker(use_cache=False, scope="request")],
    ) -> None:
        self.a = a
        self.b = b


async def test_fast_path_honours_use_cache_false() -> None:
    container = attached(di.Container())
    obj = await container.resolve(Uncached)
    assert uses_fast_path(container, Uncached)
    assert isinstance(obj.a, Repo)
    assert obj.a is not obj.b


def make_number() -> int:
    return 7


class ArgumentKinds:
    def __init__(
        self,
        positional: Repo,
        /,
        either: Annotated[int, Marker(make_number, scope="request")],
        *,
        keyword: Leaf,
        defaulted: str = "default",
    ) -> None:
        self.values = (positional, either, keyword, defaulted)


async def test_fast_path_passes_positional_keyword_and_default_arguments() -> None:
    container = attached(di.Container())
    positional, either, keyword, defaulted = (await container.resolve(ArgumentKinds)).values
    assert uses_fast_path(container, ArgumentKinds)
    assert isinstance(positional, Repo)
    assert either == 7
    assert isinstance(keyword, Leaf)
    assert defaulted == "default"


class Port:
    pass


class Adapter(Port):
    pass


class UsesPort:
    def __init__(self, port: Port) -> None:
        self.port = port


async def test_binds_by_type_are_honoured() -> None:
    external = di.Container()
    external.bind(di.bind_by_type(Dependent(Adapter, scope="request"), Port))
    container = attached(external)
    assert isinstance((await container.resolve(UsesPort)).port, Adapter)
    assert isinstance(await container.resolve(Port), Adapter)
    assert uses_fast_path(container, UsesPort)


async def test_fast_path_matches_di_execution() -> None:
    container = attached(di.Container())
    fast = await container.resolve(Handler)
    async with container.open_scope() as scoped:
        slow = await scoped.resolve(Handler)
    for handler in (fast, slow):
        assert type(handler.service) is Service
        assert handler.service.repo is handler.repo


async def test_attaching_again_forgets_solved_graphs() -> None:
    container = attached(di.Container())
    assert type((await container.resolve(UsesPort)).port) is Port
    external = di.Container()
    external.bind(di.bind_by_type(Dependent(Adapter, scope="request"), Port))
    container.attach_external_container(external)
    assert type((await container.resolve(UsesPort)).port) is Adapter


# -- di path: async and generator dependencies -----------------------------------------------


class Session:
    def __init__(self) -> None:
        self.closed = False


async def open_async_session() -> Session:
    return Session()


class NeedsSession:
    def __init__(self, session: Session) -> None:
        self.session = session


async def test_async_dependencies_go_through_di() -> None:
    external = di.Container()
    external.bind(di.bind_by_type(Dependent(open_async_session, scope="request"), Session))
    container = attached(external)
    resolved = await container.resolve(NeedsSession)
    assert isinstance(resolved.session, Session)
    assert not uses_fast_path(container, NeedsSession)


def session_with_teardown() -> Iterator[Session]:
    session = Session()
    try:
        yield session
    finally:
        session.closed = True


async def async_session_with_teardown() -> AsyncIterator[Session]:
    session = Session()
    try:
        yield session
    finally:
        session.closed = True


@pytest.mark.parametrize("provider", [session_with_teardown, async_session_with_teardown])
async def test_generators_are_finalized_right_after_the_resolve_outside_a_scope(
    provider: object, caplog: pytest.LogCaptureFixture
) -> None:
    external = di.Container()
    external.bind(di.bind_by_type(Dependent(provider, scope="request"), Session))  # type: ignore[arg-type]
    container = attached(external)
    with caplog.at_level(logging.WARNING, logger="cqrs.container"):
        first = await container.resolve(NeedsSession)
        second = await container.resolve(NeedsSession)
    assert first.session.closed
    assert second.session.closed
    assert first.session is not second.session
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "NeedsSession" in message
    assert "ScopeStrategy.HANDLER" in message
    assert "ScopeStrategy.SEND" in message


# -- open_scope ----------------------------------------------------------------------------


async def test_open_scope_shares_request_scoped_objects_and_finalizes_them_on_exit() -> None:
    external = di.Container()
    external.bind(di.bind_by_type(Dependent(async_session_with_teardown, scope="request"), Session))
    container = attached(external)
    async with container.open_scope() as scoped:
        assert isinstance(scoped, DIContainer)
        first = await scoped.resolve(NeedsSession)
        second = await scoped.resolve(Session)
        # di caches request-scoped objects, the resolved type included, for the whole scope.
        assert await scoped.resolve(NeedsSession) is first
        assert first.session is second
        assert not first.session.closed
    assert first.session.closed
    async with container.open_scope() as scoped:
        third = await scoped.resolve(NeedsSession)
    assert third.session is not first.session


async def test_open_scope_shares_plain_dependencies_too() -> None:
    container = attached(di.Container())
    async with container.open_scope() as scoped:
        first = await scoped.resolve(Service)
        second = await scoped.resolve(Service)
    assert first.repo is second.repo


async def test_open_scope_context_values_replace_dependencies_of_that_type() -> None:
    container = attached(di.Container())
    repo = Repo()
    async with container.open_scope({Repo: repo}) as scoped:
        service = await scoped.resolve(Service)
        assert await scoped.resolve(Repo) is repo
    assert service.repo is repo


async def test_scope_exit_finalizes_even_when_the_body_raises() -> None:
    external = di.Container()
    external.bind(di.bind_by_type(Dependent(session_with_teardown, scope="request"), Session))
    container = attached(external)
    resolved: list[NeedsSession] = []

    async def fail_inside_scope() -> None:
        async with container.open_scope() as scoped:
            resolved.append(await scoped.resolve(NeedsSession))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await fail_inside_scope()
    assert resolved[0].session.closed


# -- errors --------------------------------------------------------------------------------


async def test_resolve_before_attach_raises_container_error() -> None:
    container = DIContainer()
    with pytest.raises(ContainerError, match="attach_external_container") as info:
        await container.resolve(Leaf)
    assert isinstance(info.value, ValueError)
    with pytest.raises(ValueError, match="attach_external_container"):
        container.external_container
    with pytest.raises(ContainerError):
        container.open_scope()


def test_external_container_returns_the_attached_container() -> None:
    external = di.Container()
    assert attached(external).external_container is external
    assert DIContainer().scope == "request"
    assert DIContainer(scope="app").scope == "app"


# -- event loops and imports -------------------------------------------------------------------


def test_works_across_asyncio_run_calls() -> None:
    external = di.Container()
    external.bind(di.bind_by_type(Dependent(async_session_with_teardown, scope="request"), Session))
    container = attached(external)

    async def use() -> None:
        assert isinstance(await container.resolve(Handler), Handler)
        async with container.open_scope() as scoped:
            assert isinstance(await scoped.resolve(NeedsSession), NeedsSession)

    asyncio.run(use())
    asyncio.run(use())


def test_importing_the_package_does_not_import_di_or_the_extras() -> None:
    code = (
        "import sys, cqrs._internal.di; "
        "print([m for m in ('di', 'dishka', 'dependency_injector') if m in sys.modules])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
