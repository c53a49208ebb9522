"""OutboxedEventMap (class-level singleton or isolated instance) and the checks of ``add``."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import cqrs
from cqrs._internal.outbox.map import RegisteredEvent, resolve_event
from cqrs.errors import CQRSError
from cqrs.outbox.map import OutboxedEventMap
from cqrs.serializers import JsonEventSerializer


class Payload(cqrs.Response):
    n: int


class Placed(cqrs.NotificationEvent[Payload]):
    event_name: str = "placed"


class SpecialPlaced(Placed):
    pass


class Other(cqrs.NotificationEvent[Payload]):
    event_name: str = "other"


class Codec(JsonEventSerializer):
    def content_type_for(self, event: Any) -> str | None:
        return "application/x-test"


@pytest.fixture(autouse=True)
def fresh_shared_map() -> Iterator[None]:
    """The class-level registry is process-wide: give each test its own and restore it."""
    saved = OutboxedEventMap.__dict__.get("_shared_instance")
    OutboxedEventMap._shared_instance = None  # pyright: ignore[reportPrivateUsage]
    yield
    OutboxedEventMap._shared_instance = saved  # pyright: ignore[reportPrivateUsage]


def test_class_calls_share_one_registry_and_instances_are_isolated() -> None:
    OutboxedEventMap.register("placed", Placed)
    isolated = OutboxedEventMap()
    assert OutboxedEventMap.get("placed") is Placed
    assert isolated.get("placed") is None
    isolated.register("placed", Other)  # no clash with the class-level registry
    assert isolated.get("placed") is Other
    assert OutboxedEventMap.get("placed") is Placed
    assert OutboxedEventMap.shared().get("placed") is Placed
    assert OutboxedEventMap.names() == ["placed"]


def test_duplicate_name_is_a_key_error_naming_the_name_and_the_type() -> None:
    registry = OutboxedEventMap()
    registry.register("placed", Placed)
    with pytest.raises(KeyError) as caught:
        registry.register("placed", Other)
    text = str(caught.value)
    assert "'placed'" in text
    assert "Placed" in text
    assert isinstance(caught.value, CQRSError)
    assert registry.get("placed") is Placed  # the first registration stays


@pytest.mark.parametrize(
    ("name", "event_type", "serializer", "words"),
    [
        ("", Placed, None, "non-empty string"),
        (3, Placed, None, "non-empty string"),
        ("placed", Placed(payload=Payload(n=1)), None, "must be a class"),
        ("placed", Placed, object(), "EventCodec"),
    ],
)
def test_bad_registrations_are_type_errors(
    name: Any, event_type: Any, serializer: Any, words: str
) -> None:
    registry = OutboxedEventMap()
    with pytest.raises(TypeError, match=words):
        registry.register(name, event_type, serializer)
    assert registry.names() == []


def test_get_serializer_and_as_serializer_pick_the_codec_per_name() -> None:
    registry = OutboxedEventMap()
    codec = Codec()
    registry.register("placed", Placed, codec)
    registry.register("other", Other)
    assert registry.get_serializer("placed") is codec
    assert registry.get_serializer("other") is None
    assert registry.get_serializer("missing") is None
    mapped = registry.as_serializer()
    placed, other = Placed(payload=Payload(n=1)), Other(payload=Payload(n=2))
    assert mapped.content_type_for(placed) == "application/x-test"
    assert mapped.content_type_for(other) is None  # default JSON
    assert mapped.deserialize(mapped.serialize(placed), Placed) == placed
    assert mapped.deserialize(mapped.serialize(other), Other) == other
    fallback = registry.as_serializer(default=Codec())
    assert fallback.content_type_for(other) == "application/x-test"


def test_resolve_accepts_the_registered_type_and_its_subclasses() -> None:
    registry = OutboxedEventMap()
    registry.register("placed", Placed)
    assert resolve_event(registry, Placed(payload=Payload(n=1))) == RegisteredEvent(Placed, None)
    assert resolve_event(registry, SpecialPlaced(payload=Payload(n=1))).event_type is Placed


def test_resolve_accepts_a_registered_generic_alias() -> None:
    registry = OutboxedEventMap()
    registry.register("generic", cqrs.NotificationEvent[Payload])
    event = cqrs.NotificationEvent[Payload](event_name="generic", payload=Payload(n=1))
    assert resolve_event(registry, event).event_type is cqrs.NotificationEvent[Payload]


def test_unregistered_name_says_what_to_register_where() -> None:
    registry = OutboxedEventMap()
    registry.register("other", Other)
    with pytest.raises(TypeError) as caught:
        resolve_event(registry, Placed(payload=Payload(n=1)))
    text = str(caught.value)
    assert "Placed" in text
    assert "'placed'" in text
    assert "registered: 'other'" in text
    assert "event_map.register('placed', Placed)" in text
    with pytest.raises(TypeError, match=r"OutboxedEventMap\.register\('placed', Placed\)"):
        resolve_event(OutboxedEventMap.shared(), Placed(payload=Payload(n=1)))


def test_an_event_of_another_type_under_a_registered_name_is_refused() -> None:
    registry = OutboxedEventMap()
    registry.register("placed", Other)
    with pytest.raises(TypeError, match=r"registered for Other.*not an instance"):
        resolve_event(registry, Placed(payload=Payload(n=1)))


def test_something_that_is_not_a_notification_event_is_refused() -> None:
    @dataclasses.dataclass
    class NotAnEvent:
        event_name: str = "placed"

    registry = OutboxedEventMap()
    registry.register("placed", Placed)
    with pytest.raises(TypeError, match="notification events"):
        resolve_event(registry, NotAnEvent())
    with pytest.raises(TypeError, match="notification events"):
        resolve_event(registry, {"event_name": "placed", "event_id": uuid.uuid4()})


def test_dataclass_notification_events_register_and_resolve() -> None:
    @dataclasses.dataclass(frozen=True)
    class Shipped(cqrs.DCNotificationEvent[dict[str, int]]):
        pass

    registry = OutboxedEventMap()
    registry.register("shipped", Shipped)
    event = Shipped(event_name="shipped", payload={"n": 1})
    assert resolve_event(registry, event).event_type is Shipped
