"""JetStream's acknowledgements of pipelined publishes, all on one inbox.

Each publish names a reply subject ``<inbox>.<n>``; JetStream answers there once the
message is stored (a ``PubAck``), or with the reason it was not. One subscription receives
every answer and completes the future of its publish, so any number of publishes are in
flight on one connection, each with a plain timer rather than nats-py's ``wait_for`` and
response parsing per message. nats-py restores the subscription after a reconnection.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

from cqrs._internal._optional import require

with require("nats-py", extra="nats", feature="cqrs.message_brokers.nats"):
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js.errors import APIError, NoStreamResponseError

__all__ = ["PubAcks"]

_NO_RESPONDERS = "503"


class PubAcks:
    """Publishes and waits for their acknowledgements; call :meth:`start` first."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._prefix = ""
        self._tokens = itertools.count()
        self._waiting: dict[str, asyncio.Future[Msg]] = {}

    async def start(self) -> None:
        """Subscribe to the inbox of the answers."""
        self._prefix = self._client.new_inbox() + "."
        subscribe: Any = self._client.subscribe  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
        await subscribe(self._prefix + "*", cb=self._answered)

    async def publish(
        self, subject: str, body: bytes, headers: dict[str, str], within: float
    ) -> None:
        """Publish and wait up to ``within`` seconds for JetStream to store the message.

        Raises ``TimeoutError`` when no answer came (the message may be stored or not),
        ``NoStreamResponseError`` when no stream took the subject (or JetStream is not
        up yet), nats-py's ``APIError`` subclasses when JetStream refused it, and nats-py's
        connection errors when it could not be sent.
        """
        token = str(next(self._tokens))
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Msg] = loop.create_future()
        self._waiting[token] = answer
        try:
            await self._client.publish(subject, body, reply=self._prefix + token, headers=headers)
            timer = loop.call_later(within, _expire, answer)
            try:
                msg = await answer
            finally:
                timer.cancel()
        finally:
            del self._waiting[token]
        if msg.headers and msg.headers.get("Status") == _NO_RESPONDERS:
            raise NoStreamResponseError
        if b'"error"' in msg.data:
            error = json.loads(msg.data).get("error")
            if error is not None:
                APIError.from_error(error)  # raises the error's own class
                raise APIError(description=str(error))

    async def _answered(self, msg: Msg) -> None:
        answer = self._waiting.get(msg.subject[len(self._prefix) :])
        if answer is not None and not answer.done():
            answer.set_result(msg)


def _expire(answer: asyncio.Future[Msg]) -> None:
    if not answer.done():
        answer.set_exception(TimeoutError("no acknowledgement from JetStream in time"))
