"""What every message family shares: the dict interface and its two implementations."""

import abc
import dataclasses
from typing import Any, Self

import pydantic

__all__ = ["DataclassDict", "DictMessage", "PydanticDict"]


class DictMessage(abc.ABC):
    """A value that converts to and from a plain dict of its fields.

    Instantiating it, or a subclass that does not implement both methods, raises ``TypeError``.
    """

    @abc.abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """Return the message as a dict of its fields."""

    @classmethod
    @abc.abstractmethod
    def from_dict(cls, **kwargs: Any) -> Self:
        """Build the message from its fields given as keyword arguments."""


class PydanticDict(pydantic.BaseModel):
    """``to_dict``/``from_dict`` for pydantic messages."""

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


class DataclassDict:
    """``to_dict``/``from_dict`` for plain (snake_case) dataclass requests and responses."""

    def to_dict(self) -> dict[str, Any]:
        """Return ``dataclasses.asdict(self)``.

        Keys are the field names (snake_case), nested dataclasses become dicts, other values
        are returned unchanged. Dataclass *events* use camelCase keys instead, as in 4.x.
        """
        instance: Any = self
        return dataclasses.asdict(instance)

    @classmethod
    def from_dict(cls, **kwargs: Any) -> Self:
        """Return ``cls(**kwargs)``.

        Keys are not converted and values are not coerced. Raises ``TypeError`` for an
        unknown or missing field.
        """
        return cls(**kwargs)
