"""Request models: the commands and queries sent through a mediator.

Three interchangeable bases, as in python-cqrs 4.x: ``Request`` (a mutable pydantic model,
the default), ``DCRequest`` (a plain dataclass) and the ``IRequest`` interface that both
implement. ``ReqT`` and ``ResT`` are the type parameters of the handler classes.
"""

import abc
import dataclasses
from typing import Any, Self, TypeVar

import pydantic

from cqrs._internal.messages.responses import IResponse

__all__ = ["DCRequest", "IRequest", "PydanticRequest", "ReqT", "Request", "ResT"]


class IRequest(abc.ABC):
    """Interface of a command or query: a value that converts to and from a plain dict.

    Subclass ``Request`` (pydantic) or ``DCRequest`` (dataclass) rather than this class.
    Instantiating it, or a subclass that does not implement both methods, raises
    ``TypeError``.
    """

    @abc.abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """Return the request as a dict of its fields."""

    @classmethod
    @abc.abstractmethod
    def from_dict(cls, **kwargs: Any) -> Self:
        """Build a request from its fields given as keyword arguments."""


class PydanticRequest(pydantic.BaseModel, IRequest):
    """Default request base: a mutable pydantic model.

    Declare fields as on any pydantic model; construction validates and coerces them and
    raises ``pydantic.ValidationError`` on bad input.
    """

    def to_dict(self) -> dict[str, Any]:
        """Return ``model_dump(mode="python")``.

        Keys are the field names; UUID and datetime values stay Python objects (use
        ``model_dump(mode="json")`` for JSON-ready values).
        """
        return self.model_dump(mode="python")

    @classmethod
    def from_dict(cls, **kwargs: Any) -> Self:
        """Return ``model_validate(kwargs)``.

        Values are validated and coerced (ISO strings become datetimes, strings become
        UUIDs, dicts become nested models). Raises ``pydantic.ValidationError``.
        """
        return cls.model_validate(kwargs)


Request = PydanticRequest
"""Alias of ``PydanticRequest``, the default request base."""


@dataclasses.dataclass
class DCRequest(IRequest):
    """Request base for users who prefer dataclasses: a plain, mutable dataclass.

    Subclasses must apply ``@dataclasses.dataclass`` themselves. There is no validation or
    coercion: values are stored as given.
    """

    def to_dict(self) -> dict[str, Any]:
        """Return ``dataclasses.asdict(self)``.

        Keys are the field names (snake_case), nested dataclasses become dicts, other values
        are returned unchanged. Dataclass *events* use camelCase keys instead, as in 4.x.
        """
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, **kwargs: Any) -> Self:
        """Return ``cls(**kwargs)``.

        Keys are not converted and values are not coerced. Raises ``TypeError`` for an
        unknown or missing field.
        """
        return cls(**kwargs)


ReqT = TypeVar("ReqT", bound=IRequest, contravariant=True)
"""The request type a handler accepts."""

ResT = TypeVar("ResT", bound=IResponse | None, covariant=True)
"""The response type a handler returns (``None`` for commands without a result)."""
