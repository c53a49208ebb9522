"""The exception tree of cqrs."""

from cqrs._internal.brokers.delivery import DeliveryLostError as DeliveryLostError
from cqrs._internal.brokers.delivery import DeliverySettledError as DeliverySettledError
from cqrs._internal.brokers.lifecycle import BrokerStateError as BrokerStateError
from cqrs._internal.brokers.protocol import PublishError as PublishError
from cqrs._internal.errors import ConfigurationError as ConfigurationError
from cqrs._internal.errors import ContainerError as ContainerError
from cqrs._internal.errors import CQRSError as CQRSError
from cqrs._internal.errors import DuplicateBindingError as DuplicateBindingError
from cqrs._internal.errors import EventCycleError as EventCycleError
from cqrs._internal.errors import EventHandlerCancelled as EventHandlerCancelled
from cqrs._internal.errors import MissingExtraError as MissingExtraError
from cqrs._internal.errors import NoBrokerError as NoBrokerError
from cqrs._internal.errors import RequestHandlerDoesNotExist as RequestHandlerDoesNotExist
from cqrs._internal.errors import RequestHandlerTypeError as RequestHandlerTypeError
from cqrs._internal.errors import StreamStateError as StreamStateError

__all__ = [
    "BrokerStateError",
    "CQRSError",
    "ConfigurationError",
    "ContainerError",
    "DeliveryLostError",
    "DeliverySettledError",
    "DuplicateBindingError",
    "EventCycleError",
    "EventHandlerCancelled",
    "MissingExtraError",
    "NoBrokerError",
    "PublishError",
    "RequestHandlerDoesNotExist",
    "RequestHandlerTypeError",
    "StreamStateError",
]
