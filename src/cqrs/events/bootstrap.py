"""One-call construction of the consumer-side EventMediator (4.x path)."""

from cqrs._internal.bootstrap import bootstrap_events as bootstrap
from cqrs._internal.bootstrap import setup_event_mediator as setup_mediator

__all__ = ["bootstrap", "setup_mediator"]
