"""A broker that publishes nowhere, and the bounded record of what it received."""

from __future__ import annotations

import collections
import logging
from collections.abc import Iterable
from typing import SupportsIndex, overload

from cqrs._internal.brokers.protocol import Message, MessageBroker

__all__ = ["MESSAGE_BUS_LIMIT", "DevnullMessageBroker", "MessageLog", "received_messages"]

logger = logging.getLogger("cqrs")

MESSAGE_BUS_LIMIT = 10_000
"""How many of the latest messages :data:`received_messages` keeps."""


class MessageLog(collections.deque[Message]):
    """A deque of the latest messages that also behaves like the list 4.x code expects.

    4.x's ``devnull.MESSAGE_BUS`` was a list that grew forever. This one keeps the last
    ``maxlen`` messages (appending to a full log drops the oldest, in O(1)), compares equal to
    a list with the same items (``MESSAGE_BUS == []``) and accepts slices
    (``MESSAGE_BUS[-2:]`` returns a list).
    """

    def __init__(self, iterable: Iterable[Message] = (), maxlen: int = MESSAGE_BUS_LIMIT) -> None:
        super().__init__(iterable, maxlen)

    def __eq__(self, other: object, /) -> bool:
        if isinstance(other, list):
            return list(self) == other
        return super().__eq__(other)

    def __ne__(self, other: object, /) -> bool:
        return not self == other

    @overload
    def __getitem__(self, key: SupportsIndex, /) -> Message: ...

    @overload
    def __getitem__(self, key: slice, /) -> list[Message]: ...

    def __getitem__(self, key: SupportsIndex | slice, /) -> Message | list[Message]:
        if isinstance(key, slice):
            return list(self)[key]
        return super().__getitem__(key)


received_messages: MessageLog = MessageLog()
"""Every :class:`DevnullMessageBroker` appends here (4.x: ``devnull.MESSAGE_BUS``)."""


class DevnullMessageBroker(MessageBroker):
    """Publishes nowhere: appends each message to :data:`received_messages`, shared by every
    instance, which keeps only the last :data:`MESSAGE_BUS_LIMIT` (logged at DEBUG on the
    ``cqrs`` logger).

    4.x code reads that record as ``cqrs.message_brokers.devnull.MESSAGE_BUS`` (deprecated);
    new code inspects messages with :class:`cqrs.testing.InMemoryMessageBroker` instead.
    """

    async def send_message(self, message: Message) -> None:
        """Record ``message`` (dropping the oldest beyond the limit); never fails."""
        received_messages.append(message)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "Devnull broker dropped %s on topic %s", message.message_name, message.topic
            )
