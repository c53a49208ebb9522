"""From a received message to an event, or to the reason it can never become one."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pydantic_core

from cqrs._internal.brokers.protocol import Message
from cqrs._internal.serialization.deserializers import (
    DeserializeJsonError,
    DeserializeProtobufError,
)

__all__ = ["EventDecoder", "EventSource", "Poison"]

EventSource = type[Any] | Mapping[str, type[Any]] | Callable[[bytes], object]
"""What a consumer decodes into: one event type (every message is one), a mapping of
``event_name`` to event type, or a 4.x deserializer (``JsonDeserializer(Model)``)."""

_NAME_KEYS = ("event_name", "eventName")
_REASON_LIMIT = 1000


class Poison(Exception):
    """A message that can never be handled: it goes to the dead-letter destination with
    :attr:`reason`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _short(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _REASON_LIMIT else flat[: _REASON_LIMIT - 1] + "…"


class EventDecoder:
    """Decodes JSON bodies with 4.x ``JsonDeserializer`` semantics
    (``Model.from_dict(**json)``), choosing ``Model`` by the body's ``event_name``
    (``eventName`` for dataclass events) when given a mapping.

    :meth:`decode` raises :class:`Poison` with a one-line reason for a body that is not
    JSON, not a JSON object, has no or an unknown event name, fails the model's validation,
    or has a content type other than JSON (give a deserializer for those).
    """

    def __init__(self, events: EventSource) -> None:
        self._single: Any = None
        self._by_name: Mapping[str, type[Any]] | None = None
        self._deserializer: Callable[[bytes], object] | None = None
        if isinstance(events, type):
            if not callable(getattr(events, "from_dict", None)):
                raise TypeError(
                    f"{events.__qualname__} has no classmethod from_dict(**data); pass a "
                    "cqrs event type, a mapping of event names to event types, or a "
                    "deserializer such as JsonDeserializer(MyEvent)."
                )
            self._single = events
        elif isinstance(events, Mapping):
            if not events:
                raise ValueError("the mapping of event names to event types is empty")
            self._by_name = events
        elif callable(events):
            self._deserializer = events
        else:
            raise TypeError(
                f"events must be an event type, a mapping of event names to event types, or "
                f"a deserializer, not {type(events).__name__}"
            )

    def decode(self, message: Message) -> Any:
        """The event in ``message``; raises :class:`Poison` with the reason it is not one."""
        body = message.payload_bytes
        if body is None:
            body = message.payload if isinstance(message.payload, bytes) else b""
        if self._deserializer is not None:
            return self._deserialized(self._deserializer(body))
        if message.content_type not in (None, "", "application/json"):
            raise Poison(
                f"unsupported content type {message.content_type!r}: give the consumer a "
                "deserializer that reads it"
            )
        try:
            data = pydantic_core.from_json(body)
        except ValueError as exc:
            raise Poison(f"undecodable: the body is not JSON ({_short(str(exc))})") from None
        if not isinstance(data, dict):
            raise Poison(
                f"wrong schema: the body is a JSON {type(data).__name__}, not an object"  # pyright: ignore[reportUnknownArgumentType]
            )
        model = self._single if self._by_name is None else self._model_for(data)  # pyright: ignore[reportUnknownArgumentType]
        try:
            return model.from_dict(**data)
        except Exception as exc:
            raise Poison(
                f"wrong schema for {model.__qualname__}: {type(exc).__name__}: {_short(str(exc))}"
            ) from None

    def _model_for(self, data: dict[str, Any]) -> Any:
        assert self._by_name is not None
        name = next((data[k] for k in _NAME_KEYS if k in data), None)
        if not isinstance(name, str):
            raise Poison("wrong schema: the body has no string 'event_name' (or 'eventName')")
        model = self._by_name.get(name)
        if model is None:
            raise Poison(
                f"unknown event name {_short(repr(name))}: this consumer decodes "
                f"{sorted(self._by_name)}"
            )
        return model

    @staticmethod
    def _deserialized(result: object) -> Any:
        if isinstance(result, DeserializeJsonError | DeserializeProtobufError):
            raise Poison(
                f"undecodable ({result.error_type.__name__}): {_short(result.error_message)}"
            )
        if result is None:
            raise Poison("undecodable: the deserializer returned None (an empty body?)")
        return result
