"""The broker that discards messages (4.x path)."""

from cqrs._internal.brokers.devnull import DevnullMessageBroker as DevnullMessageBroker
from cqrs._internal.deprecation import deprecated_attributes

__all__ = ["DevnullMessageBroker"]

__getattr__ = deprecated_attributes(
    __name__,
    {
        "MESSAGE_BUS": (
            list,
            "DevnullMessageBroker no longer records messages (4.x kept them in this global "
            "list forever); use cqrs.testing.InMemoryMessageBroker to inspect them.",
        )
    },
)
