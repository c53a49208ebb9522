"""The message sent to a broker and the broker interface."""

from __future__ import annotations

import abc
import base64
import dataclasses
import uuid
from typing import Any

from cqrs._internal.errors import CQRSError

__all__ = ["Message", "MessageBroker", "PublishError"]


class PublishError(CQRSError, ConnectionError):
    """A broker did not confirm a message within its deadline: it may not have been stored.

    Every bundled broker raises it (or a subclass naming the broker) from ``send_message``
    rather than let a publish pass silently; ``except PublishError`` catches them all.
    """


@dataclasses.dataclass
class Message:
    """One notification event on its way to a broker.

    ``payload`` is the event as a dict; ``payload_bytes`` the encoded body when a serializer
    produced one (brokers send those bytes as they are); ``content_type`` and ``headers`` are
    set for non-JSON encodings.
    """

    message_name: str
    topic: str
    payload: Any
    message_id: uuid.UUID = dataclasses.field(default_factory=uuid.uuid4)
    payload_bytes: bytes | None = None
    content_type: str | None = None
    headers: dict[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The 4.x dict shape: camelCase keys, plus the encoding fields when set."""
        result: dict[str, Any] = {
            "messageName": self.message_name,
            "topic": self.topic,
            "payload": self.payload,
            "messageId": self.message_id.hex,
        }
        if self.content_type is not None:
            result["content_type"] = self.content_type
            result["headers"] = self.headers
            if self.payload_bytes is not None:
                result["payload_bytes"] = base64.b64encode(self.payload_bytes).decode("ascii")
                result["payload_bytes_encoding"] = "base64"
        return result


class MessageBroker(abc.ABC):
    """Sends notification messages to a broker.

    ``send_message`` raises when the message could not be handed to the broker; the mediator
    lets that error reach the caller once the other events are done, so a lost notification
    is never silent.
    """

    @abc.abstractmethod
    async def send_message(self, message: Message) -> None:
        """Publish ``message``; raise if the broker did not take it."""
        raise NotImplementedError
