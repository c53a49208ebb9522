"""Response models: what request handlers return.

Three interchangeable bases, as in python-cqrs 4.x: ``Response`` (a mutable pydantic model,
the default), ``DCResponse`` (a plain dataclass) and the ``IResponse`` interface that both
implement. The mediator only needs ``to_dict()``; ``from_dict()`` is its inverse.
"""

import dataclasses

from cqrs._internal.messages._base import DataclassDict, DictMessage, PydanticDict

__all__ = ["DCResponse", "IResponse", "PydanticResponse", "Response"]


class IResponse(DictMessage):
    """Interface of a handler result: a value that converts to and from a plain dict.

    Subclass ``Response`` (pydantic) or ``DCResponse`` (dataclass) rather than this class.
    Instantiating it, or a subclass that does not implement both methods, raises
    ``TypeError``.
    """


class PydanticResponse(PydanticDict, IResponse):
    """Default response base: a mutable pydantic model.

    Declare fields as on any pydantic model; construction validates and coerces them and
    raises ``pydantic.ValidationError`` on bad input.
    """


Response = PydanticResponse
"""Alias of ``PydanticResponse``, the default response base."""


@dataclasses.dataclass
class DCResponse(DataclassDict, IResponse):
    """Response base for users who prefer dataclasses: a plain, mutable dataclass.

    Subclasses must apply ``@dataclasses.dataclass`` themselves. There is no validation or
    coercion: values are stored as given.
    """
