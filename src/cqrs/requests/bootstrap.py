"""One-call construction of request and streaming mediators (4.x path)."""

from cqrs._internal.bootstrap import bootstrap as bootstrap
from cqrs._internal.bootstrap import bootstrap_streaming as bootstrap_streaming
from cqrs._internal.bootstrap import setup_event_emitter as setup_event_emitter
from cqrs._internal.bootstrap import setup_mediator as setup_mediator
from cqrs._internal.bootstrap import setup_streaming_mediator as setup_streaming_mediator
from cqrs._internal.brokers.devnull import DevnullMessageBroker
from cqrs._internal.deprecation import ModuleGetattr, deprecated_attributes

__all__ = [
    "bootstrap",
    "bootstrap_streaming",
    "setup_event_emitter",
    "setup_mediator",
    "setup_streaming_mediator",
]

__getattr__: ModuleGetattr = deprecated_attributes(
    __name__,
    {
        "DEFAULT_MESSAGE_BROKER": (
            DevnullMessageBroker,
            "bootstrap() now gives each mediator its own DevnullMessageBroker; pass "
            "message_broker= to choose one.",
        )
    },
)
