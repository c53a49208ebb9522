"""What a map accepts and refuses at bind time, how its handler lists guard themselves, and
the per-pair cache of binding checks."""

from __future__ import annotations

import copy
import functools
import pickle
import typing
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, Generic, TypeVar

import di
import pydantic
import pytest

import cqrs
from cqrs._internal import registry
from cqrs._internal.generics import resolve_type_args
from cqrs.errors import ConfigurationError, DuplicateBindingError, RequestHandlerTypeError
from cqrs.requests import bootstrap
from cqrs.requests.cor_request_handler import CORRequestHandler
from tests.support import HoldsEvents, Ping, Pong, Tick, make_mediator

SEEN: list[str] = []


@pytest.fixture(autouse=True)
def _clear() -> None:
    SEEN.clear()


# -- messages and handlers ------------------------------------------------------------------


class Other(cqrs.Request):
    pass


class Tock(cqrs.DomainEvent, frozen=True):
    n: int = 0


class Unrelated(cqrs.DomainEvent, frozen=True):
    pass


class Payload(pydantic.BaseModel):
    n: int = 0


class OtherPayload(pydantic.BaseModel):
    text: str = ""


class PingHandler(cqrs.RequestHandler[Ping, Pong]):
    async def handle(self, request: Ping) -> Pong:
        return Pong(n=request.n)


class TickHandler(cqrs.EventHandler[Tick]):
    async def handle(self, event: Tick) -> None:
        SEEN.append(f"tick {event.n}")


class TockHandler(cqrs.EventHandler[Tock]):
    async def handle(self, event: Tock) -> None:
        SEEN.append(f"tock {event.n}")


class AnyRequestHandler(cqrs.RequestHandler[Any, Pong]):
    async def handle(self, request: Any) -> Pong:
        return Pong(n=-1)


class Audit(cqrs.EventHandler[Any]):
    """A catch-all audit handler: records every event it is bound to."""

    async def handle(self, event: Any) -> None:
        SEEN.append(f"audit {type(event).__name__} {event.n}")


class EmitsTickAndTock(HoldsEvents, cqrs.RequestHandler[Ping, Pong]):
    async def handle(self, request: Ping) -> Pong:
        self._events += [Tick(n=request.n), Tock(n=request.n)]
        return Pong(n=request.n)


def _event_handler(declared: Any) -> type[Any]:
    """An ``EventHandler[declared]`` subclass with an async ``handle``."""

    class Handler(cqrs.EventHandler[declared]):  # type: ignore[valid-type]
        async def handle(self, event: Any) -> None:
            return None

    Handler.__qualname__ = "DeclaredHandler"
    return Handler


# -- §1.5: what is accepted ------------------------------------------------------------------


def test_a_request_handler_typed_any_binds_to_any_request() -> None:
    m = cqrs.RequestMap()
    m.bind(Ping, AnyRequestHandler)
    m.bind(Other, AnyRequestHandler)
    assert m[Ping] is AnyRequestHandler
    assert m[Other] is AnyRequestHandler


def test_an_event_handler_typed_any_binds_to_every_event_type() -> None:
    m = cqrs.EventMap()
    m.bind(Tick, Audit)
    m.bind(Tock, Audit)
    assert m[Tick] == [Audit]
    assert m[Tock] == [Audit]


async def test_a_catch_all_audit_handler_sees_every_event_it_is_bound_to() -> None:
    mediator = make_mediator(
        {Ping: EmitsTickAndTock}, {Tick: [TickHandler, Audit], Tock: [Audit, TockHandler]}
    )
    assert await mediator.send(Ping(n=3)) == Pong(n=3)
    assert sorted(SEEN) == ["audit Tick 3", "audit Tock 3", "tick 3", "tock 3"]


ReqX = TypeVar("ReqX", bound=cqrs.Request)
ResX = TypeVar("ResX", bound=cqrs.IResponse | None)
EvX = TypeVar("EvX", bound=cqrs.DomainEvent)
OnlyOther = TypeVar("OnlyOther", bound=Other)
TickOrTock = TypeVar("TickOrTock", Tick, Tock)


class AnyRequestWithPong(cqrs.RequestHandler[ReqX, Pong], Generic[ReqX]):
    async def handle(self, request: ReqX) -> Pong:
        return Pong(n=0)


class PingWithResult(cqrs.RequestHandler[Ping, ResX], Generic[ResX]):
    """Fixes the request, leaves the result open: the first generic argument of a
    subclass is the *result*, not the request."""

    async def handle(self, request: Ping) -> ResX:
        raise NotImplementedError


class PingToPong(PingWithResult[Pong]):
    pass


class OnlyOtherHandler(cqrs.RequestHandler[OnlyOther, Pong], Generic[OnlyOther]):
    async def handle(self, request: OnlyOther) -> Pong:
        return Pong(n=0)


class TickOrTockHandler(cqrs.EventHandler[TickOrTock], Generic[TickOrTock]):
    async def handle(self, event: TickOrTock) -> None:
        return None


class DomainEventsHandler(cqrs.EventHandler[EvX], Generic[EvX]):
    async def handle(self, event: EvX) -> None:
        return None


def test_type_variables_are_followed_through_intermediate_generic_classes() -> None:
    m = cqrs.RequestMap()
    m.bind(Ping, PingToPong)
    m.bind(Other, AnyRequestWithPong)
    assert m[Ping] is PingToPong


def test_a_type_variable_accepts_what_its_bound_or_constraints_accept() -> None:
    m = cqrs.EventMap()
    m.bind(Tick, TickOrTockHandler)
    m.bind(Tock, TickOrTockHandler)
    m.bind(Tick, DomainEventsHandler)
    with pytest.raises(ConfigurationError, match=r"TickOrTockHandler handles ~TickOrTock"):
        m.bind(Unrelated, TickOrTockHandler)


def test_a_type_variable_whose_bound_does_not_fit_is_refused_with_its_bound() -> None:
    with pytest.raises(ConfigurationError) as info:
        cqrs.RequestMap().bind(Ping, OnlyOtherHandler)
    text = str(info.value)
    assert "OnlyOtherHandler handles ~OnlyOther (a type variable limited to Other)" in text
    assert "not Ping" in text
    assert "Bind OnlyOtherHandler to Other (or a subclass)" in text


def test_a_handler_declared_for_a_base_class_binds_to_its_subclasses() -> None:
    class AnyDomainEvent(cqrs.EventHandler[cqrs.DomainEvent]):
        async def handle(self, event: cqrs.DomainEvent) -> None:
            return None

    m = cqrs.EventMap()
    m.bind(Tick, AnyDomainEvent)
    m.bind(Tock, AnyDomainEvent)
    assert m[Tock] == [AnyDomainEvent]


@pytest.mark.parametrize(
    ("declared", "bound"),
    [
        (cqrs.NotificationEvent[Payload], cqrs.NotificationEvent[Payload]),
        (cqrs.NotificationEvent, cqrs.NotificationEvent[Payload]),
        (cqrs.NotificationEvent[Payload], cqrs.NotificationEvent),
        (cqrs.NotificationEvent[Any], cqrs.NotificationEvent[Payload]),
        (cqrs.NotificationEvent[Payload], cqrs.NotificationEvent[Any]),
        (Tick | Tock, Tick),
        (Tick | Tock, Tock),
        (typing.Union[Tick, Tock], Tock),  # noqa: UP007 - the typing spelling on purpose
        (typing.Optional[Tick], Tick),  # noqa: UP045 - the typing spelling on purpose
        (Annotated[Tick, "audited"], Tick),
        (Annotated[cqrs.DomainEvent | None, "x"], Tock),
        ("Tick", Tick),
    ],
    ids=[
        "same-alias",
        "bare-declared",
        "bare-bound",
        "any-argument",
        "any-bound-argument",
        "pep604-first",
        "pep604-second",
        "typing-union",
        "optional",
        "annotated",
        "annotated-union",
        "forward-reference",
    ],
)
def test_generic_aliases_unions_and_annotated_declarations_are_accepted(
    declared: Any, bound: type[Any]
) -> None:
    handler = _event_handler(declared)
    m = cqrs.EventMap()
    m.bind(bound, handler)
    assert m[bound] == [handler]


@pytest.mark.parametrize(
    ("declared", "bound", "says"),
    [
        (cqrs.NotificationEvent[OtherPayload], cqrs.NotificationEvent[Payload], "OtherPayload"),
        (Tick | Tock, Unrelated, "handles Tick | Tock, not Unrelated"),
        (typing.Union[Tick, Tock], Unrelated, "handles Tick | Tock"),  # noqa: UP007
        (Annotated[Tick, "audited"], Tock, "handles Tick, not Tock"),
        ("Tock", Tick, "handles 'Tock', not Tick"),
    ],
    ids=["other-payload", "pep604", "typing-union", "annotated", "forward-reference"],
)
def test_a_declaration_that_cannot_take_the_bound_type_is_refused(
    declared: Any, bound: type[Any], says: str
) -> None:
    with pytest.raises(ConfigurationError, match=r"EventMap\.bind") as info:
        cqrs.EventMap().bind(bound, _event_handler(declared))
    assert says in str(info.value)


def test_typing_generic_aliases_are_compared_by_their_arguments() -> None:
    class Shipped(cqrs.DCNotificationEvent[Payload]):
        pass

    class Renamed(cqrs.DCNotificationEvent[OtherPayload]):
        pass

    handler = _event_handler(cqrs.DCNotificationEvent[Payload])
    m = cqrs.EventMap()
    m.bind(Shipped, handler)
    m.bind(cqrs.DCNotificationEvent, handler)
    with pytest.raises(ConfigurationError, match="not Renamed"):
        m.bind(Renamed, handler)


# -- §1.5: what is refused, and the advice given ---------------------------------------------


def test_a_handler_for_an_unrelated_class_is_refused_with_advice_that_fits() -> None:
    with pytest.raises(ConfigurationError) as info:
        cqrs.RequestMap().bind(Other, PingHandler)  # pyright: ignore[reportArgumentType, reportCallIssue]
    text = str(info.value)
    assert text.startswith("RequestMap.bind(Other, ...): PingHandler handles Ping, not Other.")
    assert "Bind PingHandler to Ping (or a subclass)" in text
    assert "class OtherHandler(cqrs.RequestHandler[Other, YourResult])" in text
    assert "Any" not in text


def test_an_event_handler_in_the_request_map_is_sent_to_the_event_map() -> None:
    with pytest.raises(ConfigurationError, match="not a request handler") as info:
        cqrs.RequestMap().bind(Ping, TickHandler)  # pyright: ignore[reportArgumentType, reportCallIssue]
    assert "it is an event handler" in str(info.value)
    assert "EventMap.bind" in str(info.value)


def test_a_request_handler_in_the_event_map_is_sent_to_the_request_map() -> None:
    with pytest.raises(ConfigurationError, match="not an event handler") as info:
        cqrs.EventMap().bind(Tick, PingHandler)  # pyright: ignore[reportArgumentType]
    assert "it is a request handler" in str(info.value)
    assert "cqrs.EventHandler[Tick]" in str(info.value)


def test_a_lone_chain_link_is_told_to_bind_a_list() -> None:
    class Link(CORRequestHandler[Ping, Pong]):
        async def handle(self, request: Ping) -> Pong | None:
            return await self.next(request)

    with pytest.raises(ConfigurationError, match=r"chain link.*bind\(Request, \[Link, \.\.\.\]\)"):
        cqrs.RequestMap().bind(Ping, Link)  # pyright: ignore[reportArgumentType, reportCallIssue]


def test_a_handler_instance_is_refused_with_the_class_to_bind() -> None:
    with pytest.raises(ConfigurationError, match="must be a class") as info:
        cqrs.EventMap().bind(Tick, TickHandler())  # pyright: ignore[reportArgumentType]
    assert "Bind the class TickHandler itself" in str(info.value)


@pytest.mark.parametrize("handler", [object, int, None, "TickHandler"])
def test_non_handlers_stay_refused(handler: Any) -> None:
    with pytest.raises(ConfigurationError, match="EventHandler"):
        cqrs.EventMap().bind(Tick, handler)
    with pytest.raises(ConfigurationError, match="RequestHandler"):
        cqrs.RequestMap().bind(Ping, handler)


def test_a_subscripted_generic_message_type_is_refused_with_the_class_to_bind() -> None:
    with pytest.raises(ConfigurationError, match="must be a class") as info:
        cqrs.EventMap().bind(
            cqrs.DCNotificationEvent[Payload],  # type: ignore[arg-type]
            _event_handler(Any),
        )
    assert "subscripted generic" in str(info.value)
    assert "bind DCNotificationEvent" in str(info.value)
    with pytest.raises(ConfigurationError, match="must be a class"):
        cqrs.RequestMap().bind("Ping", PingHandler)  # type: ignore[arg-type]


# -- §4.4: handle must be what the mediator can drive -----------------------------------------


class SyncRequestHandler(cqrs.RequestHandler[Ping, Pong]):
    def handle(self, request: Ping) -> Pong:  # type: ignore[override]
        return Pong(n=0)


class SyncEventHandler(cqrs.EventHandler[Tick]):
    def handle(self, event: Tick) -> None:  # type: ignore[override]
        return None


class SyncLink(CORRequestHandler[Ping, Pong]):
    def handle(self, request: Ping) -> Pong | None:  # type: ignore[override]
        return None


def test_a_sync_handle_is_refused_at_bind_time() -> None:
    with pytest.raises(ConfigurationError, match=r"SyncRequestHandler\.handle is a plain 'def'"):
        cqrs.RequestMap().bind(Ping, SyncRequestHandler)
    with pytest.raises(ConfigurationError, match=r"SyncEventHandler\.handle is a plain 'def'"):
        cqrs.EventMap().bind(Tick, SyncEventHandler)
    with pytest.raises(ConfigurationError, match=r"SyncLink\.handle is a plain 'def'"):
        cqrs.RequestMap().bind(Ping, [SyncLink])


def test_a_sync_handle_is_refused_before_any_send() -> None:
    with pytest.raises(ConfigurationError, match="async def handle"):
        make_mediator({Ping: SyncRequestHandler})


def test_an_async_generator_handle_on_a_unary_handler_points_to_streaming() -> None:
    class Yields(cqrs.RequestHandler[Ping, Pong]):
        async def handle(self, request: Ping) -> Any:  # type: ignore[override]
            yield Pong(n=0)

    with pytest.raises(ConfigurationError, match="StreamingRequestHandler"):
        cqrs.RequestMap().bind(Ping, Yields)


class StreamsFromPlainDef(cqrs.StreamingRequestHandler[Ping, Pong]):
    def clear_events(self) -> None:
        pass

    def handle(self, request: Ping) -> AsyncIterator[Pong]:
        return self._items()

    async def _items(self) -> AsyncIterator[Pong]:
        yield Pong(n=0)


class StreamsWithoutYield(cqrs.StreamingRequestHandler[Ping, Pong]):
    def clear_events(self) -> None:
        pass

    async def handle(self, request: Ping) -> Any:  # type: ignore[override]
        return [Pong(n=0)]


def test_a_streaming_handle_must_be_an_async_generator_function() -> None:
    with pytest.raises(ConfigurationError, match="async generator function") as info:
        cqrs.RequestMap().bind(Ping, StreamsFromPlainDef)
    assert "4.x" in str(info.value)
    with pytest.raises(ConfigurationError, match="'async def' without 'yield'"):
        cqrs.RequestMap().bind(Ping, StreamsWithoutYield)


def _traced(
    function: Callable[[Any, Any], Awaitable[Any]],
) -> Callable[[Any, Any], Awaitable[Any]]:
    @functools.wraps(function)
    def wrapper(self: Any, message: Any) -> Awaitable[Any]:
        return function(self, message)

    return wrapper


def test_handles_the_mediator_can_await_are_accepted() -> None:
    class Decorated(cqrs.RequestHandler[Ping, Pong]):
        @_traced
        async def handle(self, request: Ping) -> Pong:  # pyright: ignore[reportIncompatibleMethodOverride]
            return Pong(n=0)

    class ReturnsAnAwaitable(cqrs.EventHandler[Tick]):
        def handle(self, event: Tick) -> Awaitable[None]:  # type: ignore[override]
            return self._handle(event)

        async def _handle(self, event: Tick) -> None:
            return None

    class Partial(cqrs.EventHandler[Tock]):
        async def _handle(self, event: Tock, loud: bool) -> None:
            return None

        handle = functools.partialmethod(_handle, loud=True)  # type: ignore[assignment]

    class Interface(cqrs.RequestHandler[Other, Pong]):
        """Abstract: the container maps it to an implementation."""

    class StreamInterface(cqrs.StreamingRequestHandler[Ping, Pong]):
        """Abstract as well."""

    requests = cqrs.RequestMap()
    requests.bind(Ping, Decorated)
    requests.bind(Other, Interface)
    cqrs.RequestMap().bind(Ping, StreamInterface)
    cqrs.EventMap().bind(Tick, ReturnsAnAwaitable)
    cqrs.EventMap().bind(Tock, Partial)


# -- §4.4: handler lists cannot be bypassed ---------------------------------------------------


def _tick_map() -> cqrs.EventMap:
    m = cqrs.EventMap()
    m.bind(Tick, TickHandler)
    return m


def _append(handlers: list[Any], value: Any) -> None:
    handlers.append(value)


def _insert(handlers: list[Any], value: Any) -> None:
    handlers.insert(0, value)


def _extend(handlers: list[Any], value: Any) -> None:
    handlers.extend([value])


def _iadd(handlers: list[Any], value: Any) -> None:
    handlers += [value]


def _item(handlers: list[Any], value: Any) -> None:
    handlers[0] = value


def _slice(handlers: list[Any], value: Any) -> None:
    handlers[1:] = [value]


_MUTATIONS = [_append, _insert, _extend, _iadd, _item, _slice]


@pytest.mark.parametrize("mutate", _MUTATIONS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("bad", [object, PingHandler, SyncEventHandler, TockHandler])
def test_an_event_handler_list_refuses_what_bind_refuses(
    mutate: Callable[[list[Any], Any], None], bad: Any
) -> None:
    m = _tick_map()
    with pytest.raises(ConfigurationError, match=r"EventMap\[Tick\]\.\w+\(\.\.\.\)"):
        mutate(m[Tick], bad)
    assert m[Tick] == [TickHandler]


@pytest.mark.parametrize("mutate", _MUTATIONS, ids=lambda f: f.__name__)
def test_an_event_handler_list_takes_what_bind_takes(
    mutate: Callable[[list[Any], Any], None],
) -> None:
    m = _tick_map()
    mutate(m[Tick], Audit)
    assert Audit in m[Tick]
    assert isinstance(m[Tick], list)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda h: h.append(TickHandler),
        lambda h: h.extend([Audit, Audit]),
        lambda h: h.insert(0, TickHandler),
        lambda h: h.__imul__(2),
        lambda h: h.__setitem__(1, TickHandler),
        lambda h: h.__setitem__(slice(1, None), [TickHandler]),
    ],
    ids=["append", "extend", "insert", "imul", "item", "slice"],
)
def test_an_event_handler_list_refuses_duplicates(mutate: Callable[[list[Any]], None]) -> None:
    m = _tick_map()
    m[Tick].append(Audit)
    before = list(m[Tick])
    with pytest.raises(DuplicateBindingError):
        mutate(m[Tick])
    assert m[Tick] == before


def test_an_event_handler_list_keeps_bind_order_and_allows_removal() -> None:
    second, third = _event_handler(Tick), _event_handler(Any)
    m = _tick_map()
    m.bind(Tick, second)
    m[Tick].append(third)
    assert m[Tick] == [TickHandler, second, third]
    m[Tick].remove(second)
    assert m[Tick] == [TickHandler, third]
    m.bind(Tick, second)  # no longer a duplicate
    assert m[Tick] == [TickHandler, third, second]


async def test_handlers_added_through_the_lists_run() -> None:
    def commands(m: cqrs.RequestMap) -> None:
        m.bind(Ping, EmitsTickAndTock)

    def events(m: cqrs.EventMap) -> None:
        m.bind(Tick, TickHandler)
        m[Tick].append(Audit)
        m.setdefault(Tock, []).extend([TockHandler, Audit])

    mediator = bootstrap.bootstrap(
        di_container=di.Container(), commands_mapper=commands, domain_events_mapper=events
    )
    await mediator.send(Ping(n=1))
    assert sorted(SEEN) == ["audit Tick 1", "audit Tock 1", "tick 1", "tock 1"]


def test_a_chain_list_refuses_what_a_chain_bind_refuses() -> None:
    class Link(CORRequestHandler[Ping, Pong]):
        async def handle(self, request: Ping) -> Pong | None:
            return await self.next(request)

    m = cqrs.RequestMap()
    m.bind(Ping, [Link])
    with pytest.raises(RequestHandlerTypeError, match=r"RequestMap\[Ping\]\.append"):
        m[Ping].append(PingHandler)
    with pytest.raises(RequestHandlerTypeError):
        m[Ping] += [object]
    with pytest.raises(ConfigurationError, match="plain 'def'"):
        m[Ping].insert(0, SyncLink)
    assert m[Ping] == [Link]
    m[Ping].append(Link)  # a chain may repeat a link class
    assert m[Ping] == [Link, Link]


def test_constructor_setitem_and_setdefault_check_like_bind() -> None:
    with pytest.raises(ConfigurationError, match="not an event handler"):
        cqrs.EventMap({Tick: [object]})
    with pytest.raises(ConfigurationError, match="not a request handler"):
        cqrs.RequestMap({Ping: object})
    m = cqrs.EventMap({Tick: [TickHandler]})
    m.setdefault(Tock, []).append(TockHandler)
    with pytest.raises(ConfigurationError):
        m.setdefault(Unrelated, []).append(TockHandler)
    assert m == {Tick: [TickHandler], Tock: [TockHandler], Unrelated: []}
    with pytest.raises(DuplicateBindingError):
        cqrs.EventMap()[Tick] = [TickHandler, TickHandler]


def test_a_user_list_given_to_the_map_is_not_a_way_around_it() -> None:
    handlers: list[Any] = [TickHandler]
    m = cqrs.EventMap()
    m[Tick] = handlers
    handlers.append(object)
    assert m[Tick] == [TickHandler]


def test_copies_and_pickles_of_a_map_keep_their_guarded_lists() -> None:
    m = _tick_map()
    for twin in (copy.copy(m), copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        assert twin == {Tick: [TickHandler]}
        with pytest.raises(ConfigurationError):
            twin[Tick].append(object)


# -- §6: binding checks are cached per pair ---------------------------------------------------


@pytest.fixture
def judged(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Records every handler whose declared type the maps work out (the costly part)."""
    calls: list[Any] = []
    original = resolve_type_args

    def spy(klass: type[Any], base: type[Any]) -> Any:
        calls.append(klass)
        return original(klass, base)

    monkeypatch.setattr(registry, "resolve_type_args", spy)
    monkeypatch.setattr(registry, "_accepted", set())
    return calls


def test_a_second_binding_of_the_same_pair_is_not_judged_again(judged: list[Any]) -> None:
    for _ in range(3):
        requests, events = cqrs.RequestMap(), cqrs.EventMap()
        requests.bind(Ping, PingHandler)
        events.bind(Tick, TickHandler)
        events.bind(Tock, Audit)
        events.bind(Tick, Audit)
    assert sorted(h.__name__ for h in judged) == ["Audit", "Audit", "PingHandler", "TickHandler"]


def test_a_refusal_is_judged_afresh_and_says_the_same(judged: list[Any]) -> None:
    messages: list[str] = []
    for _ in range(3):
        with pytest.raises(ConfigurationError) as info:
            cqrs.RequestMap().bind(Other, PingHandler)  # pyright: ignore[reportArgumentType, reportCallIssue]
        messages.append(str(info.value))
    assert len(set(messages)) == 1
    assert judged == [PingHandler] * 3


def test_a_handler_patched_and_restored_is_judged_as_it_is_now(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Patched(cqrs.EventHandler[Tick]):
        async def handle(self, event: Tick) -> None:
            return None

    real = Patched.handle
    cqrs.EventMap().bind(Tick, Patched)
    monkeypatch.setattr(Patched, "handle", SyncEventHandler.handle)
    with pytest.raises(ConfigurationError, match="plain 'def'"):
        cqrs.EventMap().bind(Tick, Patched)
    monkeypatch.setattr(Patched, "handle", real)
    cqrs.EventMap().bind(Tick, Patched)


def test_duplicates_are_found_per_map_after_a_cached_verdict(judged: list[Any]) -> None:
    for _ in range(2):
        requests, events = cqrs.RequestMap(), cqrs.EventMap()
        requests.bind(Ping, PingHandler)
        events.bind(Tick, TickHandler)
        with pytest.raises(DuplicateBindingError):
            requests.bind(Ping, PingHandler)
        with pytest.raises(DuplicateBindingError):
            events.bind(Tick, TickHandler)
    assert judged == [PingHandler, TickHandler]


def test_a_verdict_is_kept_per_kind_of_binding(judged: list[Any]) -> None:
    class Both(cqrs.EventHandler[Any]):
        async def handle(self, event: Any) -> None:
            return None

    cqrs.EventMap().bind(Ping, Both)  # pyright: ignore[reportArgumentType]
    with pytest.raises(ConfigurationError, match="not a request handler"):
        cqrs.RequestMap().bind(Ping, Both)  # pyright: ignore[reportArgumentType, reportCallIssue]
    cqrs.EventMap().bind(Ping, Both)  # pyright: ignore[reportArgumentType]
