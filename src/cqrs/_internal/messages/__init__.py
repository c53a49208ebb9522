"""Message contracts: requests, responses and events.

Each kind comes as an interface (``IRequest``, ``IResponse``, ``IEvent``...), a pydantic
base (the default, also under the 4.x names ``Request``, ``Response``, ``Event``,
``DomainEvent``, ``NotificationEvent``) and a dataclass base (``DCRequest``...). This
package imports only the standard library, pydantic and typing-extensions, so domain code
can depend on it cheaply.
"""

from cqrs._internal.messages.events import (
    DEFAULT_OUTPUT_TOPIC,
    DCDomainEvent,
    DCEvent,
    DCNotificationEvent,
    DomainEvent,
    Event,
    IDomainEvent,
    IEvent,
    INotificationEvent,
    NotificationEvent,
    PayloadT,
    PydanticDomainEvent,
    PydanticEvent,
    PydanticNotificationEvent,
)
from cqrs._internal.messages.requests import (
    DCRequest,
    IRequest,
    PydanticRequest,
    ReqT,
    Request,
    ResT,
)
from cqrs._internal.messages.responses import (
    DCResponse,
    IResponse,
    PydanticResponse,
    Response,
)

__all__ = [
    "Request",
    "IRequest",
    "DCRequest",
    "PydanticRequest",
    "ReqT",
    "ResT",
    "Response",
    "IResponse",
    "DCResponse",
    "PydanticResponse",
    "Event",
    "IEvent",
    "DCEvent",
    "PydanticEvent",
    "DomainEvent",
    "IDomainEvent",
    "DCDomainEvent",
    "PydanticDomainEvent",
    "NotificationEvent",
    "INotificationEvent",
    "DCNotificationEvent",
    "PydanticNotificationEvent",
    "PayloadT",
    "DEFAULT_OUTPUT_TOPIC",
]
