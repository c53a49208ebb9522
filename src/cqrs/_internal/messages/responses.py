"""Response models: what request handlers return.

Three interchangeable bases, as in python-cqrs 4.x: ``Response`` (a mutable pydantic model,
the default), ``DCResponse`` (a plain dataclass) and the ``IResponse`` interface that both
implement. The mediator only needs ``to_dict()``; ``from_dict()`` is its inverse.
"""

import abc
import dataclasses
from typing import Any, Self

import pydantic

__all__ = ["DCResponse", "IResponse", "PydanticResponse", "Response"]


class IResponse(abc.ABC):
    """Interface of a handler result: a value that converts to and from a plain dict.

    Subclass ``Response`` (pydantic) or ``DCResponse`` (dataclass) rather than this class.
    Instantiating it, or a subclass that does not implement both methods, raises
    ``TypeError``.
    """

    @abc.abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """Return the response as a dict of its fields."""

    @classmethod
    @abc.abstractmethod
    def from_dict(cls, **kwargs: Any) -> Self:
        """Build a response from its fields given as keyword arguments."""


class PydanticResponse(pydantic.BaseModel, IResponse):
    """Default response base: a mutable pydantic model.

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


Response = PydanticResponse
"""Alias of ``PydanticResponse``, the default response base."""


@dataclasses.dataclass
class DCResponse(IResponse):
    """Response base for users who prefer dataclasses: a plain, mutable dataclass.

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
