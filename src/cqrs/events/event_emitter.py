"""The event emitter (4.x path)."""

from cqrs._internal.events.emitter import EventEmitter as EventEmitter

__all__ = ["EventEmitter"]
