"""cqrs: an async mediator for CQRS services, compatible with python-cqrs 4.x.

Commands and queries go through a mediator to one handler; handlers emit domain events
(handled in-process) and notification events (sent to a message broker); streaming handlers
yield results one by one. Every public name below is loaded on first use, so ``import cqrs``
stays cheap and loads no optional dependency.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cqrs._internal.di.di_adapter import DIContainer as DIContainer
    from cqrs._internal.di.protocol import Container as Container
    from cqrs._internal.di.protocol import SupportsScope as SupportsScope
    from cqrs._internal.di.scope import ScopeAwareContainer as ScopeAwareContainer
    from cqrs._internal.di.scope import ScopeStrategy as ScopeStrategy
    from cqrs._internal.di.scope import bind_scope as bind_scope
    from cqrs._internal.di.scope import current_container as current_container
    from cqrs._internal.di.scope import enter_scope as enter_scope
    from cqrs._internal.events.emitter import EventEmitter as EventEmitter
    from cqrs._internal.handlers.event import EventHandler as EventHandler
    from cqrs._internal.handlers.request import RequestHandler as RequestHandler
    from cqrs._internal.handlers.request import StreamingRequestHandler as StreamingRequestHandler
    from cqrs._internal.mediators import EventMediator as EventMediator
    from cqrs._internal.mediators import RequestMediator as RequestMediator
    from cqrs._internal.mediators import StreamingRequestMediator as StreamingRequestMediator
    from cqrs._internal.messages.events import DCDomainEvent as DCDomainEvent
    from cqrs._internal.messages.events import DCEvent as DCEvent
    from cqrs._internal.messages.events import DCNotificationEvent as DCNotificationEvent
    from cqrs._internal.messages.events import DomainEvent as DomainEvent
    from cqrs._internal.messages.events import Event as Event
    from cqrs._internal.messages.events import IDomainEvent as IDomainEvent
    from cqrs._internal.messages.events import IEvent as IEvent
    from cqrs._internal.messages.events import INotificationEvent as INotificationEvent
    from cqrs._internal.messages.events import NotificationEvent as NotificationEvent
    from cqrs._internal.messages.events import PydanticDomainEvent as PydanticDomainEvent
    from cqrs._internal.messages.events import PydanticEvent as PydanticEvent
    from cqrs._internal.messages.events import (
        PydanticNotificationEvent as PydanticNotificationEvent,
    )
    from cqrs._internal.messages.requests import DCRequest as DCRequest
    from cqrs._internal.messages.requests import IRequest as IRequest
    from cqrs._internal.messages.requests import PydanticRequest as PydanticRequest
    from cqrs._internal.messages.requests import Request as Request
    from cqrs._internal.messages.responses import DCResponse as DCResponse
    from cqrs._internal.messages.responses import IResponse as IResponse
    from cqrs._internal.messages.responses import PydanticResponse as PydanticResponse
    from cqrs._internal.messages.responses import Response as Response
    from cqrs._internal.outbox.map import OutboxedEventMap as OutboxedEventMap
    from cqrs._internal.outbox.models import EventStatus as EventStatus
    from cqrs._internal.outbox.models import OutboxedEvent as OutboxedEvent
    from cqrs._internal.outbox.producer import EventProducer as EventProducer
    from cqrs._internal.outbox.repository import (
        OutboxedEventRepository as OutboxedEventRepository,
    )
    from cqrs._internal.outbox.sqlalchemy import (
        SqlAlchemyOutboxedEventRepository as SqlAlchemyOutboxedEventRepository,
    )
    from cqrs._internal.outbox.sqlalchemy import rebind_outbox_model as rebind_outbox_model
    from cqrs._internal.registry import EventMap as EventMap
    from cqrs._internal.registry import RequestMap as RequestMap
    from cqrs._internal.serialization.compress import Compressor as Compressor
    from cqrs._internal.serialization.compress import ZlibCompressor as ZlibCompressor
    from cqrs._internal.serialization.deserializers import (
        DeserializeProtobufError as DeserializeProtobufError,
    )
    from cqrs._internal.serialization.deserializers import (
        ProtobufDeserializer as ProtobufDeserializer,
    )
    from cqrs._internal.serialization.json import EventCodec as EventCodec
    from cqrs._internal.serialization.json import EventSerializer as EventSerializer
    from cqrs._internal.serialization.json import JsonEventSerializer as JsonEventSerializer
    from cqrs._internal.sql.types import Binary16 as Binary16
    from cqrs._internal.sql.types import DialectAwareType as DialectAwareType
    from cqrs._internal.sql.types import DialectTypeHandler as DialectTypeHandler
    from cqrs._internal.sql.types import JSONType as JSONType
    from cqrs._internal.sql.types import PayloadBinary as PayloadBinary
    from cqrs._internal.sql.types import UUIDBinary as UUIDBinary
    from cqrs._internal.streaming import RequestStream as RequestStream
    from cqrs._internal.streaming import StreamEvents as StreamEvents

_MESSAGES = "cqrs._internal.messages"
_LAZY: dict[str, str] = {
    "RequestMediator": "cqrs._internal.mediators",
    "StreamingRequestMediator": "cqrs._internal.mediators",
    "EventMediator": "cqrs._internal.mediators",
    "DomainEvent": f"{_MESSAGES}.events",
    "IDomainEvent": f"{_MESSAGES}.events",
    "DCDomainEvent": f"{_MESSAGES}.events",
    "PydanticDomainEvent": f"{_MESSAGES}.events",
    "NotificationEvent": f"{_MESSAGES}.events",
    "INotificationEvent": f"{_MESSAGES}.events",
    "DCNotificationEvent": f"{_MESSAGES}.events",
    "PydanticNotificationEvent": f"{_MESSAGES}.events",
    "Event": f"{_MESSAGES}.events",
    "IEvent": f"{_MESSAGES}.events",
    "DCEvent": f"{_MESSAGES}.events",
    "PydanticEvent": f"{_MESSAGES}.events",
    "EventEmitter": "cqrs._internal.events.emitter",
    "EventHandler": "cqrs._internal.handlers.event",
    "EventMap": "cqrs._internal.registry",
    "Request": f"{_MESSAGES}.requests",
    "IRequest": f"{_MESSAGES}.requests",
    "DCRequest": f"{_MESSAGES}.requests",
    "PydanticRequest": f"{_MESSAGES}.requests",
    "RequestHandler": "cqrs._internal.handlers.request",
    "StreamingRequestHandler": "cqrs._internal.handlers.request",
    "RequestMap": "cqrs._internal.registry",
    "Response": f"{_MESSAGES}.responses",
    "IResponse": f"{_MESSAGES}.responses",
    "DCResponse": f"{_MESSAGES}.responses",
    "PydanticResponse": f"{_MESSAGES}.responses",
    "EventSerializer": "cqrs._internal.serialization.json",
    "EventCodec": "cqrs._internal.serialization.json",
    "JsonEventSerializer": "cqrs._internal.serialization.json",
    "Container": "cqrs._internal.di.protocol",
    "SupportsScope": "cqrs._internal.di.protocol",
    "DIContainer": "cqrs._internal.di.di_adapter",
    "ScopeAwareContainer": "cqrs._internal.di.scope",
    "ScopeStrategy": "cqrs._internal.di.scope",
    "bind_scope": "cqrs._internal.di.scope",
    "current_container": "cqrs._internal.di.scope",
    "enter_scope": "cqrs._internal.di.scope",
    "RequestStream": "cqrs._internal.streaming",
    "StreamEvents": "cqrs._internal.streaming",
    "ProtobufDeserializer": "cqrs._internal.serialization.deserializers",
    "DeserializeProtobufError": "cqrs._internal.serialization.deserializers",
    "OutboxedEventMap": "cqrs._internal.outbox.map",
    "EventStatus": "cqrs._internal.outbox.models",
    "OutboxedEvent": "cqrs._internal.outbox.models",
    "OutboxedEventRepository": "cqrs._internal.outbox.repository",
    "SqlAlchemyOutboxedEventRepository": "cqrs._internal.outbox.sqlalchemy",
    "rebind_outbox_model": "cqrs._internal.outbox.sqlalchemy",
    "EventProducer": "cqrs._internal.outbox.producer",
    "Compressor": "cqrs._internal.serialization.compress",
    "ZlibCompressor": "cqrs._internal.serialization.compress",
    "DialectAwareType": "cqrs._internal.sql.types",
    "DialectTypeHandler": "cqrs._internal.sql.types",
    "UUIDBinary": "cqrs._internal.sql.types",
    "Binary16": "cqrs._internal.sql.types",
    "JSONType": "cqrs._internal.sql.types",
    "PayloadBinary": "cqrs._internal.sql.types",
}

__all__ = [
    "ProtobufDeserializer",
    "DeserializeProtobufError",
    "RequestMediator",
    "StreamingRequestMediator",
    "EventMediator",
    "DomainEvent",
    "IDomainEvent",
    "DCDomainEvent",
    "PydanticDomainEvent",
    "NotificationEvent",
    "INotificationEvent",
    "DCNotificationEvent",
    "PydanticNotificationEvent",
    "Event",
    "IEvent",
    "DCEvent",
    "PydanticEvent",
    "EventEmitter",
    "EventHandler",
    "EventMap",
    "OutboxedEventMap",
    "EventStatus",
    "OutboxedEvent",
    "Request",
    "IRequest",
    "DCRequest",
    "PydanticRequest",
    "RequestHandler",
    "StreamingRequestHandler",
    "RequestMap",
    "Response",
    "IResponse",
    "DCResponse",
    "PydanticResponse",
    "OutboxedEventRepository",
    "SqlAlchemyOutboxedEventRepository",
    "EventProducer",
    "EventSerializer",
    "EventCodec",
    "JsonEventSerializer",
    "Container",
    "SupportsScope",
    "DIContainer",
    "ScopeAwareContainer",
    "ScopeStrategy",
    "bind_scope",
    "current_container",
    "enter_scope",
    "Compressor",
    "ZlibCompressor",
    "rebind_outbox_model",
    "DialectAwareType",
    "DialectTypeHandler",
    "UUIDBinary",
    "Binary16",
    "JSONType",
    "PayloadBinary",
    "RequestStream",
    "StreamEvents",
]

# 4.x always had SQLAlchemy; here it is the ``sqlalchemy`` extra. Without it, ``from cqrs import *``
# leaves out the names that need it (importing one by name still says which extra to install).
_NEEDS_SQLALCHEMY = frozenset({"cqrs._internal.outbox.sqlalchemy", "cqrs._internal.sql.types"})
if importlib.util.find_spec("sqlalchemy") is None:
    for _name in [name for name in __all__ if _LAZY.get(name) in _NEEDS_SQLALCHEMY]:
        __all__.remove(_name)  # noqa: PYI056  # pyright: ignore[reportUnsupportedDunderAll]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        if not name.startswith("_") and importlib.util.find_spec(f"cqrs.{name}") is not None:
            return importlib.import_module(f"cqrs.{name}")
        raise AttributeError(f"module 'cqrs' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
