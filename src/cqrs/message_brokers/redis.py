"""The Redis Streams broker (new in cqrs-kit; needs the redis extra)."""

from cqrs._internal.brokers.redis.consumer import RedisDelivery as RedisDelivery
from cqrs._internal.brokers.redis.consumer import RedisSubscription as RedisSubscription
from cqrs._internal.brokers.redis.options import StreamOptions as StreamOptions
from cqrs._internal.brokers.redis.producer import RedisMessageBroker as RedisMessageBroker
from cqrs._internal.brokers.redis.producer import RedisPublishError as RedisPublishError

__all__ = [
    "RedisDelivery",
    "RedisMessageBroker",
    "RedisPublishError",
    "RedisSubscription",
    "StreamOptions",
]
