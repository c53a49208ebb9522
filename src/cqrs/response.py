"""Response message types (4.x path)."""

from cqrs._internal.messages.responses import DCResponse as DCResponse
from cqrs._internal.messages.responses import IResponse as IResponse
from cqrs._internal.messages.responses import PydanticResponse as PydanticResponse
from cqrs._internal.messages.responses import Response as Response

__all__ = ["DCResponse", "IResponse", "PydanticResponse", "Response"]
