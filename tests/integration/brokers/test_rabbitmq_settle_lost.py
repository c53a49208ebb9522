"""An ack whose channel died with the connection raises ``DeliveryLostError`` (not a client
error of aio-pika or aiormq), and the message is delivered again on the next connection."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from cqrs.errors import DeliveryLostError
from cqrs.message_brokers.amqp import AMQPMessageBroker
from tests.integration.brokers.conftest import RABBIT_PORT, RABBIT_URL, QueueJanitor
from tests.integration.brokers.support import order_messages
from tests.support import LONG_TEST_TIMEOUT, PATIENCE, wait_until_async
from tests.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(LONG_TEST_TIMEOUT)]


def channel_gone(delivery: Any) -> bool:
    """Whether the client knows the delivery's channel is closed (aio-pika raises
    ``ChannelInvalidStateError`` for the channel of a message once it is)."""
    from aiormq.exceptions import ChannelInvalidStateError

    try:
        return bool(delivery.raw.channel.is_closed)
    except ChannelInvalidStateError:
        return True


async def test_an_ack_after_the_connection_was_cut_is_a_delivery_lost_error(
    janitor: QueueJanitor,
) -> None:
    name = f"cqrs-settle-lost-{uuid.uuid4().hex[:10]}"
    janitor.add(name)
    [message] = order_messages(1, name)
    publisher = AMQPMessageBroker.from_url(RABBIT_URL, "cqrs-test")
    async with TcpProxy(RABBIT_PORT) as proxy, publisher:
        through_proxy = AMQPMessageBroker.from_url(
            proxy.url("amqp", "/").replace("amqp://", "amqp://guest:guest@"), "cqrs-test"
        )
        async with through_proxy:
            subscription = await through_proxy.subscribe(name, prefetch=1)
            await publisher.send_message(message)
            first = await anext(aiter(subscription))
            proxy.refuse()
            # an ack written before the client noticed the cut is lost silently (AMQP acks
            # are not confirmed); the error is for the ack after it noticed
            await wait_until_async(lambda: channel_gone(first), "the client to notice the cut")
            with pytest.raises(DeliveryLostError, match="the channel it came on is gone") as lost:
                await first.ack()
            assert isinstance(lost.value, ConnectionError)
            await subscription.close()
        again = AMQPMessageBroker.from_url(RABBIT_URL, "cqrs-test")
        async with again:
            subscription = await again.subscribe(name, prefetch=1)
            async with asyncio.timeout(PATIENCE):
                second = await anext(aiter(subscription))
            await second.ack()
            await subscription.close()
    assert second.message.message_id == first.message.message_id == message.message_id
    assert second.attempt >= 2
