"""The exception tree of ``cqrs``.

Every error the library raises on purpose derives from :class:`CQRSError`. Where python-cqrs
4.x raised a builtin (``KeyError``, ``TypeError``, ``ValueError``, ``ImportError``), the
matching class here also derives from that builtin, so ``except KeyError`` clauses written for
4.x keep working::

    CQRSError
     ├── ConfigurationError (TypeError)        a map, a bootstrap call or a handler is set up wrong
     │    ├── RequestHandlerTypeError          a chain binding holds a non-chain class
     │    └── ScopeStrategyError (ValueError)  a scope strategy clashes with another option
     ├── DuplicateBindingError (KeyError)      a type is bound twice
     ├── RequestHandlerDoesNotExist (KeyError) no handler is bound for a request type
     ├── ContainerError (ValueError)           the DI container cannot produce an object
     ├── StreamStateError (RuntimeError)       a stream is used after it was closed
     ├── NoBrokerError (RuntimeError)          a notification event but no message broker
     ├── EventCycleError (RuntimeError)        follow-up events nest deeper than the limit
     ├── EventHandlerCancelled (RuntimeError)  a handler raised CancelledError by itself
     ├── MissingExtraError (ImportError)       an optional dependency is not installed
     ├── BrokerStateError (RuntimeError)       a broker used before open or after close
     │    └── DeliverySettledError             a delivery acked or nacked twice
     └── PublishError (ConnectionError)        the broker did not confirm a publish
          └── RedisPublishError, NatsPublishError, KafkaPublishError

The broker errors live beside the brokers (``brokers/lifecycle.py``, ``brokers/delivery.py``,
``brokers/protocol.py``); the SSE job errors (``JobNotFound``, ``JobExpired``,
``TooManyJobs``, ``ReplayGap``, ``BufferUnavailable``) beside the jobs in ``sse/``.
"""

from __future__ import annotations

__all__ = [
    "CQRSError",
    "ConfigurationError",
    "ContainerError",
    "DuplicateBindingError",
    "MissingExtraError",
    "NoBrokerError",
    "EventCycleError",
    "EventHandlerCancelled",
    "RequestHandlerDoesNotExist",
    "RequestHandlerTypeError",
    "ScopeStrategyError",
    "StreamStateError",
]


class CQRSError(Exception):
    """Root of every error raised on purpose by ``cqrs``."""


class _PlainMessage:
    """Mixin: show the message as written (``KeyError`` would show its repr, in quotes)."""

    args: tuple[object, ...]

    def __str__(self) -> str:
        return str(self.args[0]) if len(self.args) == 1 else str(self.args)


class ConfigurationError(CQRSError, TypeError):
    """A map, a bootstrap call or a handler class is set up wrong.

    Raised at bind or bootstrap time, before any request runs. The message names the
    offending object and says what to do instead.
    """


class RequestHandlerTypeError(ConfigurationError):
    """A chain-of-responsibility binding contains a class that is not a chain handler."""


class ScopeStrategyError(ConfigurationError, ValueError):
    """A scope strategy was combined with an option it cannot honour (4.x: ``ValueError``)."""


class DuplicateBindingError(_PlainMessage, CQRSError, KeyError):
    """A request, event or name is bound twice in the same registry."""


class RequestHandlerDoesNotExist(_PlainMessage, CQRSError, KeyError):
    """No handler is bound for the type of the request that was sent or streamed.

    Raised when ``send()`` or ``stream()`` is called, before anything runs. The message lists
    the request types that are bound.
    """


class ContainerError(CQRSError, ValueError):
    """The dependency-injection container cannot produce the object that was asked for."""


class StreamStateError(CQRSError, RuntimeError):
    """A stream was iterated after it was closed, or entered twice."""


class NoBrokerError(CQRSError, RuntimeError):
    """A notification event was emitted but the emitter has no message broker."""


class EventCycleError(CQRSError, RuntimeError):
    """Follow-up events nested deeper than ``max_event_depth``: handler A emits B, B emits A...

    The message names the chain of event types. It always reaches the caller, whatever the
    event failure policy: it is a wiring mistake, not one handler's failure.
    """


class EventHandlerCancelled(CQRSError, RuntimeError):
    """An event handler raised ``CancelledError`` although nobody cancelled its caller.

    That is the handler's failure (often an ``asyncio.timeout`` or a task it awaited that was
    cancelled): it follows the event failure policy like any other error, and the
    ``CancelledError`` is its ``__cause__``.
    """


class MissingExtraError(CQRSError, ImportError):
    """An optional dependency is needed but not installed; the message gives the pip line."""
