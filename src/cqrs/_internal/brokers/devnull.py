"""A broker that discards every message."""

from __future__ import annotations

import logging

from cqrs._internal.brokers.protocol import Message, MessageBroker

__all__ = ["DevnullMessageBroker"]

logger = logging.getLogger("cqrs")


class DevnullMessageBroker(MessageBroker):
    """Discards notification messages (logged at DEBUG on the ``cqrs`` logger).

    4.x appended every message to a process-global list that grew without bound; this one
    keeps nothing. Use :class:`cqrs.testing.InMemoryMessageBroker` to inspect messages.
    """

    async def send_message(self, message: Message) -> None:
        """Drop ``message``; never fails."""
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "Devnull broker dropped %s on topic %s", message.message_name, message.topic
            )
