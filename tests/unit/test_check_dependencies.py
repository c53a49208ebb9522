"""``bootstrap(..., check_dependencies=True)``: a handler the container cannot build fails at
start-up, naming the handler and the message, and nothing is built while checking."""

from __future__ import annotations

import abc
from typing import Any, ClassVar, Protocol

import di
import pytest
from di import bind_by_type
from di.dependent import Dependent

import cqrs
from cqrs.container.dependency_injector import DependencyInjectorCQRSContainer
from cqrs.errors import ConfigurationError
from cqrs.events import bootstrap as event_bootstrap
from cqrs.requests import bootstrap
from cqrs.testing import StaticContainer

BUILT: list[str] = []


class Repository(Protocol):
    """An interface with no implementation bound."""

    def save(self, name: str) -> None: ...


class Clock(abc.ABC):
    """An abstract dependency."""

    @abc.abstractmethod
    def now(self) -> float: ...


class FixedClock(Clock):
    def now(self) -> float:
        return 1.0


class CreateUser(cqrs.Request):
    name: str


class UserCreated(cqrs.DomainEvent, frozen=True):
    name: str


class CreateUserHandler(cqrs.RequestHandler[CreateUser, None]):
    def __init__(self, repository: Repository) -> None:
        BUILT.append("CreateUserHandler")
        self.repository = repository

    @property
    def events(self) -> list[cqrs.Event]:
        return []

    async def handle(self, request: CreateUser) -> None:
        self.repository.save(request.name)


class AuditHandler(cqrs.EventHandler[UserCreated]):
    def __init__(self, clock: Clock) -> None:
        BUILT.append("AuditHandler")
        self.clock = clock

    async def handle(self, event: UserCreated) -> None:
        return None


class Ping(cqrs.Request):
    pass


class Pong(cqrs.Response):
    text: str = "pong"


class PingHandler(cqrs.RequestHandler[Ping, Pong]):
    def __init__(self) -> None:
        BUILT.append("PingHandler")

    @property
    def events(self) -> list[cqrs.Event]:
        return []

    async def handle(self, request: Ping) -> Pong:
        return Pong()


def commands(mapper: cqrs.RequestMap) -> None:
    mapper.bind(CreateUser, CreateUserHandler)
    mapper.bind(Ping, PingHandler)


def events(mapper: cqrs.EventMap) -> None:
    mapper.bind(UserCreated, AuditHandler)


@pytest.fixture(autouse=True)
def _clear_built() -> None:
    BUILT.clear()


def test_every_unbuildable_handler_is_named_at_bootstrap_and_nothing_is_built() -> None:
    with pytest.raises(ConfigurationError) as caught:
        bootstrap.bootstrap(
            di_container=di.Container(),
            commands_mapper=commands,
            domain_events_mapper=events,
            check_dependencies=True,
        )
    message = str(caught.value)
    assert message.startswith("2 handler(s) cannot be built by the container:")
    assert "while resolving CreateUserHandler for request CreateUser:" in message
    assert "Repository is a Protocol and nothing is bound in its place" in message
    assert "while resolving AuditHandler for event UserCreated:" in message
    assert "Clock is abstract" in message
    assert "PingHandler" not in message
    assert BUILT == []


def test_a_wiring_error_of_di_is_reported_with_its_handler() -> None:
    class Untyped(cqrs.RequestHandler[Ping, Pong]):
        def __init__(self, thing) -> None:  # type: ignore[no-untyped-def]
            self.thing = thing

        @property
        def events(self) -> list[cqrs.Event]:
            return []

        async def handle(self, request: Ping) -> Pong:
            return Pong()

    with pytest.raises(ConfigurationError, match=r"while resolving .*Untyped for request Ping"):
        bootstrap.bootstrap_streaming(
            di_container=di.Container(),
            queries_mapper=lambda m: m.bind(Ping, Untyped),
            check_dependencies=True,
        )


async def test_a_complete_configuration_passes_and_runs() -> None:
    container = di.Container()
    container.bind(bind_by_type(Dependent(_MemoryRepository, scope="request"), Repository))
    container.bind(bind_by_type(Dependent(FixedClock, scope="request"), Clock))
    mediator = bootstrap.bootstrap(
        di_container=container,
        commands_mapper=commands,
        domain_events_mapper=events,
        check_dependencies=True,
    )
    assert BUILT == []
    assert await mediator.send(Ping()) == Pong()
    assert BUILT == ["PingHandler"]


async def test_without_the_option_the_error_waits_for_the_first_request() -> None:
    mediator = bootstrap.bootstrap(di_container=di.Container(), commands_mapper=commands)
    with pytest.raises(Exception) as caught:
        await mediator.send(CreateUser(name="ada"))
    assert "while resolving CreateUserHandler for request CreateUser" in caught.value.__notes__


async def test_a_bind_made_after_the_check_is_still_used() -> None:
    """The check keeps no solution: tests that override a dependency after bootstrap work."""
    container = di.Container()
    container.bind(bind_by_type(Dependent(_MemoryRepository, scope="request"), Repository))
    container.bind(bind_by_type(Dependent(FixedClock, scope="request"), Clock))
    mediator = bootstrap.bootstrap(
        di_container=container, commands_mapper=commands, check_dependencies=True
    )
    container.bind(bind_by_type(Dependent(_RecordingRepository, scope="request"), Repository))
    await mediator.send(CreateUser(name="ada"))
    assert _RecordingRepository.saved == ["ada"]


def test_static_container_reports_an_unregistered_handler_with_arguments() -> None:
    container = StaticContainer({PingHandler: PingHandler})
    with pytest.raises(ConfigurationError, match=r"CreateUserHandler for request CreateUser"):
        bootstrap.bootstrap(
            di_container=container, commands_mapper=commands, check_dependencies=True
        )
    assert BUILT == []


def test_dependency_injector_reports_a_missing_provider() -> None:
    from dependency_injector import containers, providers

    class Providers(containers.DeclarativeContainer):
        ping = providers.Factory(PingHandler)

    container = DependencyInjectorCQRSContainer()
    container.attach_external_container(Providers())
    with pytest.raises(
        ConfigurationError, match=r"(?s)1 handler\(s\).*Provider for type CreateUserHandler"
    ):
        bootstrap.bootstrap(
            di_container=container, commands_mapper=commands, check_dependencies=True
        )
    assert BUILT == []


def test_event_bootstrap_checks_its_handlers() -> None:
    with pytest.raises(ConfigurationError, match=r"AuditHandler for event UserCreated"):
        event_bootstrap.bootstrap(
            di_container=di.Container(), events_mapper=events, check_dependencies=True
        )


def test_a_container_that_cannot_check_is_not_checked() -> None:
    class Resolver:
        async def resolve(self, type_: type[Any]) -> Any:
            return type_()

    mediator = bootstrap.bootstrap(
        di_container=Resolver(), commands_mapper=commands, check_dependencies=True
    )
    assert mediator is not None
    assert BUILT == []


class _MemoryRepository:
    def save(self, name: str) -> None:
        return None


class _RecordingRepository:
    saved: ClassVar[list[str]] = []

    def save(self, name: str) -> None:
        self.saved.append(name)
