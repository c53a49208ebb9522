"""Chain-of-responsibility handlers (4.x path)."""

from cqrs._internal.handlers.cor import CORRequestHandler as CORRequestHandler
from cqrs._internal.handlers.cor import CORRequestHandlerT as CORRequestHandlerT
from cqrs._internal.handlers.cor import build_chain as build_chain

__all__ = ["CORRequestHandler", "CORRequestHandlerT", "build_chain"]
