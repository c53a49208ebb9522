"""A replay buffer in Redis Streams for resumable jobs served by several processes.

``StreamJobs(mediator, buffer=RedisReplayBuffer(url="redis://..."))`` lets any server process
that shares the Redis and the key ``prefix`` stream (and resume) a job started by another.
Needs the ``redis`` extra: ``pip install 'cqrs-kit[redis]'``.
"""

from cqrs._internal.sse.redis_replay import RedisReplayBuffer as RedisReplayBuffer

__all__ = ["RedisReplayBuffer"]
