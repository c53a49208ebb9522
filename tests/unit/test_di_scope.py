"""Scopes: ScopeAwareContainer, enter_scope, bind_scope, handler_scope and the strategy rules."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Iterator

import di
import pytest
from di.dependent import Dependent

from cqrs._internal.di import (
    DIContainer,
    ScopeAwareContainer,
    ScopeStrategy,
    StaticContainer,
    SupportsScope,
    assert_send_compatible_with_concurrent_events,
    bind_scope,
    current_container,
    enter_scope,
    handler_scope,
    resolve_concurrent_event_handling,
    wrap_container,
)
from cqrs._internal.errors import ConfigurationError, CQRSError


class Session:
    def __init__(self) -> None:
        self.closed = False


def open_session() -> Iterator[Session]:
    session = Session()
    try:
        yield session
    finally:
        session.closed = True


class Handler:
    def __init__(self, session: Session) -> None:
        self.session = session


def scoped_di() -> DIContainer:
    external = di.Container()
    external.bind(di.bind_by_type(Dependent(open_session, scope="request"), Session))
    container = DIContainer()
    container.attach_external_container(external)
    return container


def test_supports_scope_is_runtime_checkable() -> None:
    assert isinstance(DIContainer(), SupportsScope)
    assert not isinstance(StaticContainer(), SupportsScope)
    assert [s.value for s in ScopeStrategy] == ["send", "handler", "none"]


def test_wrap_container_is_idempotent_and_never_nests() -> None:
    root = StaticContainer()
    wrapped = wrap_container(root)
    assert wrapped.root is root
    assert wrap_container(wrapped) is wrapped
    assert ScopeAwareContainer(wrapped).root is root


def test_scope_aware_container_delegates_the_external_container_to_its_root() -> None:
    wrapped = ScopeAwareContainer(DIContainer())
    external = di.Container()
    wrapped.attach_external_container(external)
    assert wrapped.external_container is external
    assert wrapped.root.external_container is external


async def test_scope_aware_container_prefers_the_bound_scope() -> None:
    root_session, scoped_session = Session(), Session()
    wrapped = ScopeAwareContainer(StaticContainer({Session: root_session}))
    scoped = StaticContainer({Session: scoped_session})
    assert current_container() is None
    assert await wrapped.resolve(Session) is root_session
    async with bind_scope(scoped) as bound:
        assert bound is scoped
        assert current_container() is scoped
        assert await wrapped.resolve(Session) is scoped_session
    assert current_container() is None
    assert await wrapped.resolve(Session) is root_session


async def test_enter_scope_opens_binds_and_closes_a_scope() -> None:
    wrapped = wrap_container(scoped_di())
    async with enter_scope(wrapped) as scoped:
        assert current_container() is scoped
        first = await wrapped.resolve(Handler)
        second = await wrapped.resolve(Handler)
        assert first.session is second.session
        assert not first.session.closed
    assert first.session.closed
    assert current_container() is None


async def test_enter_scope_joins_a_live_scope_unless_told_not_to() -> None:
    wrapped = wrap_container(scoped_di())
    async with enter_scope(wrapped) as outer:
        outer_session = (await wrapped.resolve(Handler)).session
        async with enter_scope(wrapped) as joined:
            assert joined is outer
        assert current_container() is outer
        assert not outer_session.closed
        async with enter_scope(wrapped, reuse_existing=False) as inner:
            assert inner is not outer
            assert current_container() is inner
            inner_session = (await wrapped.resolve(Handler)).session
            assert inner_session is not outer_session
        assert inner_session.closed
        assert current_container() is outer
        assert not outer_session.closed
    assert outer_session.closed


async def test_enter_scope_joins_an_externally_bound_scope() -> None:
    external = StaticContainer()
    async with bind_scope(external), enter_scope(wrap_container(scoped_di())) as scoped:
        assert scoped is external


async def test_enter_scope_yields_the_container_when_the_root_cannot_open_scopes() -> None:
    wrapped = wrap_container(StaticContainer())
    async with enter_scope(wrapped) as scoped:
        assert scoped is wrapped
        assert current_container() is None
    plain = StaticContainer()
    async with enter_scope(plain) as scoped:
        assert scoped is plain


async def test_enter_scope_passes_the_context_to_the_root() -> None:
    session = Session()
    async with enter_scope(scoped_di(), context={Session: session}) as scoped:
        assert (await scoped.resolve(Handler)).session is session


async def test_scope_aware_open_scope_delegates_or_is_a_no_op() -> None:
    wrapped = wrap_container(scoped_di())
    async with wrapped.open_scope() as scoped:
        assert isinstance(scoped, DIContainer)
        assert current_container() is None
    plain = wrap_container(StaticContainer())
    async with plain.open_scope() as scoped:
        assert scoped is plain


async def test_handler_scope_opens_a_fresh_scope_only_under_handler() -> None:
    wrapped = wrap_container(scoped_di())
    async with enter_scope(wrapped) as send_scope:
        async with handler_scope(wrapped, ScopeStrategy.HANDLER) as scoped:
            assert scoped is not send_scope
            assert current_container() is scoped
            session = (await wrapped.resolve(Handler)).session
        assert session.closed
        for strategy in (ScopeStrategy.NONE, ScopeStrategy.SEND):
            async with handler_scope(wrapped, strategy) as scoped:
                assert scoped is wrapped
                assert current_container() is send_scope


async def test_scope_is_unbound_and_closed_when_the_body_raises() -> None:
    wrapped = wrap_container(scoped_di())
    sessions: list[Session] = []

    async def fail_inside_scope() -> None:
        async with enter_scope(wrapped):
            sessions.append((await wrapped.resolve(Handler)).session)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await fail_inside_scope()
    assert sessions[0].closed
    assert current_container() is None


async def test_a_scope_left_open_by_an_async_generator_closed_elsewhere_is_hidden() -> None:
    wrapped = wrap_container(scoped_di())

    async def stream() -> AsyncGenerator[object, None]:
        async with enter_scope(wrapped) as scoped:
            yield scoped

    items = stream()
    scoped = await items.__anext__()
    assert current_container() is scoped
    # Closed by another task: the context variable cannot be reset from there.
    await asyncio.create_task(items.aclose())
    assert current_container() is None
    assert isinstance(await wrapped.resolve(Handler), Handler)


async def test_concurrent_tasks_see_their_own_scopes() -> None:
    wrapped = wrap_container(scoped_di())

    async def run() -> tuple[object, Session]:
        async with enter_scope(wrapped) as scoped:
            await asyncio.sleep(0)
            return scoped, (await wrapped.resolve(Handler)).session

    (scope_a, session_a), (scope_b, session_b) = await asyncio.gather(run(), run())
    assert scope_a is not scope_b
    assert session_a is not session_b


def test_scopes_work_across_asyncio_run_calls() -> None:
    wrapped = wrap_container(scoped_di())

    async def use() -> None:
        async with enter_scope(wrapped):
            assert isinstance(await wrapped.resolve(Handler), Handler)
        async with handler_scope(wrapped, ScopeStrategy.HANDLER):
            assert isinstance(await wrapped.resolve(Handler), Handler)

    asyncio.run(use())
    asyncio.run(use())


@pytest.mark.parametrize(
    ("strategy", "flag", "expected"),
    [
        (ScopeStrategy.NONE, None, True),
        (ScopeStrategy.HANDLER, None, True),
        (ScopeStrategy.SEND, None, False),
        (ScopeStrategy.NONE, False, False),
        (ScopeStrategy.HANDLER, True, True),
        (ScopeStrategy.SEND, False, False),
    ],
)
def test_resolve_concurrent_event_handling(
    strategy: ScopeStrategy, flag: bool | None, expected: bool
) -> None:
    assert resolve_concurrent_event_handling(strategy, flag) is expected


def test_send_with_concurrent_events_is_refused() -> None:
    with pytest.raises(ValueError, match="concurrent_event_handle_enable") as info:
        resolve_concurrent_event_handling(ScopeStrategy.SEND, True)
    assert isinstance(info.value, ConfigurationError)
    assert isinstance(info.value, CQRSError)
    with pytest.raises(ValueError, match=r"ScopeStrategy\.HANDLER"):
        assert_send_compatible_with_concurrent_events(ScopeStrategy.SEND, True)
    assert_send_compatible_with_concurrent_events(ScopeStrategy.HANDLER, True)
