"""The broker that publishes nowhere (4.x path)."""

from cqrs._internal.brokers.devnull import MESSAGE_BUS_LIMIT, received_messages
from cqrs._internal.brokers.devnull import DevnullMessageBroker as DevnullMessageBroker
from cqrs._internal.deprecation import ModuleGetattr, deprecated_attributes

__all__ = ["DevnullMessageBroker"]

__getattr__: ModuleGetattr = deprecated_attributes(
    __name__,
    {
        "MESSAGE_BUS": (
            lambda: received_messages,
            f"it holds only the last {MESSAGE_BUS_LIMIT:,} messages that DevnullMessageBroker "
            "instances received (shared by all of them, never cleared for you); use "
            "cqrs.testing.InMemoryMessageBroker to inspect the messages of one broker.",
        )
    },
)
