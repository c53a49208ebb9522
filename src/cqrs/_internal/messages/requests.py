"""Request models: the commands and queries sent through a mediator.

Three interchangeable bases, as in python-cqrs 4.x: ``Request`` (a mutable pydantic model,
the default), ``DCRequest`` (a plain dataclass) and the ``IRequest`` interface that both
implement. ``ReqT`` and ``ResT`` are the type parameters of the handler classes.

Each base may name what sending it returns, for type checkers only:
``class GetUser(cqrs.Request[UserDTO])`` makes ``await mediator.send(GetUser(...))`` a
``UserDTO``; a plain ``class GetUser(cqrs.Request)`` (4.x code) gives ``Any``, as before.
"""

import dataclasses
from typing import Any, Generic, TypeVar

from typing_extensions import TypeVar as DefaultTypeVar

from cqrs._internal.messages._base import DataclassDict, DictMessage, PydanticDict
from cqrs._internal.messages.responses import IResponse

__all__ = ["DCRequest", "IRequest", "PydanticRequest", "ReqT", "Request", "ResT", "ResultT"]

ResultT = DefaultTypeVar("ResultT", default=Any, covariant=True)
"""What sending the request returns (streaming: each item), for type checkers; ``Any`` when a
request class does not say."""


class IRequest(DictMessage, Generic[ResultT]):
    """Interface of a command or query: a value that converts to and from a plain dict.

    Subclass ``Request`` (pydantic) or ``DCRequest`` (dataclass) rather than this class.
    Instantiating it, or a subclass that does not implement both methods, raises
    ``TypeError``.
    """


class PydanticRequest(PydanticDict, IRequest[ResultT], Generic[ResultT]):
    """Default request base: a mutable pydantic model.

    Declare fields as on any pydantic model; construction validates and coerces them and
    raises ``pydantic.ValidationError`` on bad input.
    """


Request = PydanticRequest
"""Alias of ``PydanticRequest``, the default request base."""


@dataclasses.dataclass
class DCRequest(DataclassDict, IRequest[ResultT], Generic[ResultT]):
    """Request base for users who prefer dataclasses: a plain, mutable dataclass.

    Subclasses must apply ``@dataclasses.dataclass`` themselves. There is no validation or
    coercion: values are stored as given.
    """


ReqT = TypeVar("ReqT", bound=IRequest, contravariant=True)
"""The request type a handler accepts."""

ResT = TypeVar("ResT", bound=IResponse | None, covariant=True)
"""The response type a handler returns (``None`` for commands without a result)."""
