"""The request/response type variables (4.x path)."""

from cqrs._internal.messages.requests import ReqT as ReqT
from cqrs._internal.messages.requests import ResT as ResT

__all__ = ["ReqT", "ResT"]
