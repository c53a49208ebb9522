"""Request message types (4.x path)."""

from cqrs._internal.messages.requests import DCRequest as DCRequest
from cqrs._internal.messages.requests import IRequest as IRequest
from cqrs._internal.messages.requests import PydanticRequest as PydanticRequest
from cqrs._internal.messages.requests import ReqT as ReqT
from cqrs._internal.messages.requests import Request as Request
from cqrs._internal.messages.requests import ResT as ResT

__all__ = ["DCRequest", "IRequest", "PydanticRequest", "ReqT", "Request", "ResT"]
