"""The dependency-injector and dishka adapters."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from cqrs._internal.di import ScopeStrategy, enter_scope, handler_scope, wrap_container
from cqrs._internal.errors import ContainerError

containers = pytest.importorskip("dependency_injector.containers")
providers = pytest.importorskip("dependency_injector.providers")
dishka = pytest.importorskip("dishka")

from cqrs._internal.di.dependency_injector import DependencyInjectorCQRSContainer  # noqa: E402
from cqrs._internal.di.dishka import DishkaCQRSContainer  # noqa: E402


class Repo:
    pass


class Handler:
    def __init__(self, repo: Repo) -> None:
        self.repo = repo


class BaseHandler:
    pass


class ConcreteHandler(BaseHandler):
    pass


class AsyncMade:
    pass


async def make_async() -> AsyncMade:
    return AsyncMade()


class Unregistered:
    pass


class Inner(containers.DeclarativeContainer):
    concrete = providers.Factory(ConcreteHandler)


class Application(containers.DeclarativeContainer):
    repo = providers.Singleton(Repo)
    handler = providers.Factory(Handler, repo=repo)
    made = providers.Coroutine(make_async)
    inner = providers.Container(Inner)


def dependency_injector_container() -> DependencyInjectorCQRSContainer:
    container = DependencyInjectorCQRSContainer()
    container.attach_external_container(Application())
    return container


# -- dependency-injector ---------------------------------------------------------------------


async def test_dependency_injector_resolves_exact_types() -> None:
    container = dependency_injector_container()
    handler = await container.resolve(Handler)
    assert isinstance(handler, Handler)
    assert handler is not await container.resolve(Handler)
    assert handler.repo is await container.resolve(Repo)


async def test_dependency_injector_resolves_a_subclass_from_a_nested_container() -> None:
    assert isinstance(await dependency_injector_container().resolve(BaseHandler), ConcreteHandler)


async def test_dependency_injector_awaits_async_providers() -> None:
    assert isinstance(await dependency_injector_container().resolve(AsyncMade), AsyncMade)


async def test_dependency_injector_missing_provider_raises_container_error() -> None:
    with pytest.raises(ContainerError, match=r"^Provider for type Unregistered not found") as info:
        await dependency_injector_container().resolve(Unregistered)
    assert isinstance(info.value, ValueError)
    assert "Handler" in str(info.value)


async def test_dependency_injector_before_attach_raises_container_error() -> None:
    container = DependencyInjectorCQRSContainer()
    with pytest.raises(ValueError, match=r"^External container not attached: .*Handler"):
        await container.resolve(Handler)
    with pytest.raises(ContainerError, match=r"^External container not attached"):
        container.external_container


async def test_dependency_injector_lookups_are_cached_per_instance() -> None:
    class Other(containers.DeclarativeContainer):
        handler = providers.Factory(ConcreteHandler)

    first = dependency_injector_container()
    second = DependencyInjectorCQRSContainer()
    second.attach_external_container(Other)
    assert isinstance(await first.resolve(BaseHandler), ConcreteHandler)
    assert isinstance(await second.resolve(BaseHandler), ConcreteHandler)
    assert isinstance(await first.resolve(Handler), Handler)
    with pytest.raises(ContainerError):
        await second.resolve(Handler)
    assert second.external_container is Other


async def test_dependency_injector_honours_provider_overrides() -> None:
    external = Application()
    container = DependencyInjectorCQRSContainer()
    container.attach_external_container(external)
    replacement = Handler(Repo())
    with external.handler.override(providers.Object(replacement)):
        assert await container.resolve(Handler) is replacement


async def test_dependency_injector_has_no_scopes() -> None:
    container = dependency_injector_container()
    async with enter_scope(wrap_container(container)) as scoped:
        assert scoped.root is container  # type: ignore[attr-defined]


# -- dishka --------------------------------------------------------------------------------


class Session:
    def __init__(self) -> None:
        self.closed = False


class NeedsSession:
    def __init__(self, session: Session) -> None:
        self.session = session


class Request:
    pass


class NeedsRequest:
    def __init__(self, request: Request) -> None:
        self.request = request


class SessionProvider(dishka.Provider):
    request = dishka.from_context(provides=Request, scope=dishka.Scope.REQUEST)
    needs_session = dishka.provide(NeedsSession, scope=dishka.Scope.REQUEST)
    needs_request = dishka.provide(NeedsRequest, scope=dishka.Scope.REQUEST)
    repo = dishka.provide(Repo, scope=dishka.Scope.APP)

    @dishka.provide(scope=dishka.Scope.REQUEST)
    async def session(self) -> AsyncIterator[Session]:
        session = Session()
        try:
            yield session
        finally:
            session.closed = True


async def test_dishka_request_scope_is_shared_and_finalized_on_exit() -> None:
    root = dishka.make_async_container(SessionProvider())
    container = DishkaCQRSContainer(root)
    try:
        assert isinstance(await container.resolve(Repo), Repo)
        async with container.open_scope({Request: Request()}) as scoped:
            assert isinstance(scoped, DishkaCQRSContainer)
            first = await scoped.resolve(NeedsSession)
            second = await scoped.resolve(Session)
            assert first.session is second
            assert not second.closed
        assert second.closed
    finally:
        await root.close()


async def test_dishka_open_scope_passes_the_context() -> None:
    root = dishka.make_async_container(SessionProvider())
    request = Request()
    try:
        async with DishkaCQRSContainer.of(root).open_scope({Request: request}) as scoped:
            assert (await scoped.resolve(NeedsRequest)).request is request
    finally:
        await root.close()


async def test_dishka_works_with_handler_scopes() -> None:
    root = dishka.make_async_container(SessionProvider())
    wrapped = wrap_container(DishkaCQRSContainer(root))
    try:
        async with handler_scope(wrapped, ScopeStrategy.HANDLER):
            session = await wrapped.resolve(Session)
        assert session.closed
    finally:
        await root.close()


async def test_dishka_before_attach_raises_container_error() -> None:
    container = DishkaCQRSContainer()
    with pytest.raises(ContainerError, match=r"^External container not attached: Dishka"):
        await container.resolve(Repo)
    with pytest.raises(ValueError, match=r"^External container not attached: Dishka"):
        container.open_scope()
    root = dishka.make_async_container(SessionProvider())
    container.attach_external_container(root)
    assert container.external_container is root
    await root.close()


def test_dishka_works_across_asyncio_run_calls() -> None:
    root = dishka.make_async_container(SessionProvider())
    container = DishkaCQRSContainer(root)

    async def use() -> None:
        async with container.open_scope({Request: Request()}) as scoped:
            assert isinstance(await scoped.resolve(NeedsSession), NeedsSession)

    asyncio.run(use())
    asyncio.run(use())
    asyncio.run(root.close())
