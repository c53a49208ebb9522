"""4.x deserializers: bytes from a broker back into an event, never raising.

``JsonDeserializer(Model)(body)`` is ``Model.from_dict(**json.loads(body))``;
``ProtobufDeserializer(Model, ProtoType)(body)`` is
``Model.from_proto(ProtoType.FromString(body))``. On any failure they log the error at
WARNING on the ``cqrs`` logger and **return** (not raise) a :class:`DeserializeJsonError` /
:class:`DeserializeProtobufError` describing it, as in 4.x; ``None`` input gives ``None``.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Generic, Protocol, Self, TypeVar, runtime_checkable

import pydantic_core

__all__ = [
    "Deserializable",
    "DeserializeJsonError",
    "DeserializeProtobufError",
    "JsonDeserializer",
    "ProtoDeserializable",
    "ProtobufDeserializer",
]

logger = logging.getLogger("cqrs")

T = TypeVar("T")


@runtime_checkable
class Deserializable(Protocol):
    """A type that builds itself from keyword arguments (``from_dict(**data)``)."""

    @classmethod
    def from_dict(cls, **kwargs: Any) -> Self:
        """Build an instance from the decoded JSON object."""
        ...


@runtime_checkable
class ProtoDeserializable(Protocol):
    """A type that builds itself from a protobuf message (``from_proto(proto)``)."""

    @classmethod
    def from_proto(cls, proto: Any) -> Self:
        """Build an instance from the parsed protobuf message."""
        ...


@dataclasses.dataclass(frozen=True)
class DeserializeJsonError:
    """Why :class:`JsonDeserializer` could not decode a body: the error's text, its type and
    the body itself."""

    error_message: str
    error_type: type[Exception]
    message_data: str | bytes | None


@dataclasses.dataclass(frozen=True)
class DeserializeProtobufError:
    """Why :class:`ProtobufDeserializer` could not decode a body: the error's text, its type
    and the body itself."""

    error_message: str
    error_type: type[Exception]
    message_data: bytes


class JsonDeserializer(Generic[T]):
    """Decodes JSON bytes (or text) into ``model`` with ``model.from_dict(**data)``.

    Raises ``TypeError`` at construction when ``model`` has no callable ``from_dict``. A call
    returns the instance, ``None`` for ``None``, or a :class:`DeserializeJsonError` when the
    body is not JSON, not a JSON object, or ``from_dict`` rejects it (it never raises).
    """

    def __init__(self, model: type[T]) -> None:
        if not callable(getattr(model, "from_dict", None)):
            raise TypeError(
                f"JsonDeserializer needs a type with a classmethod from_dict(**data); "
                f"{getattr(model, '__qualname__', model)!r} has none (cqrs events and "
                "requests have one)."
            )
        self._model: Any = model

    def __call__(self, data: str | bytes | bytearray | None) -> T | DeserializeJsonError | None:
        """Decode ``data``; see the class docstring."""
        if data is None:
            return None
        try:
            decoded = pydantic_core.from_json(data)
            if not isinstance(decoded, dict):
                raise TypeError(f"expected a JSON object, got a JSON {type(decoded).__name__}")
            return self._model.from_dict(**decoded)
        except Exception as exc:
            logger.warning(
                "JsonDeserializer could not decode a %s: %s",
                getattr(self._model, "__qualname__", self._model),
                exc,
            )
            body = bytes(data) if isinstance(data, bytearray) else data
            return DeserializeJsonError(str(exc), type(exc), body)


class ProtobufDeserializer(Generic[T]):
    """Decodes protobuf bytes with ``model.from_proto(proto_type.FromString(data))``.

    A call returns the instance, or a :class:`DeserializeProtobufError` when parsing or
    ``from_proto`` fails (it never raises).
    """

    def __init__(self, model: type[T], proto_type: Any) -> None:
        self._model: Any = model
        self._proto_type = proto_type

    def __call__(self, data: bytes) -> T | DeserializeProtobufError:
        """Decode ``data``; see the class docstring."""
        try:
            return self._model.from_proto(self._proto_type.FromString(data))
        except Exception as exc:
            logger.warning(
                "ProtobufDeserializer could not decode a %s: %s",
                getattr(self._model, "__qualname__", self._model),
                exc,
            )
            return DeserializeProtobufError(str(exc), type(exc), data)
