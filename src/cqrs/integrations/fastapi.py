"""Server-Sent Events for FastAPI: stream responses, resumable jobs, a mediator dependency,
and the shutdown hook that ends open streams.

Needs the ``fastapi`` extra: ``pip install 'cqrs-kit[fastapi]'``.
"""

from cqrs._internal.integrations.fastapi import JobStarted as JobStarted
from cqrs._internal.integrations.fastapi import event_stream_openapi as event_stream_openapi
from cqrs._internal.integrations.fastapi import jobs_router as jobs_router
from cqrs._internal.integrations.fastapi import mediator_dependency as mediator_dependency
from cqrs._internal.integrations.fastapi import server_sent_events as server_sent_events
from cqrs._internal.integrations.fastapi import sse_response as sse_response
from cqrs._internal.integrations.starlette import SSEResponse as SSEResponse
from cqrs._internal.integrations.starlette import SSEShutdown as SSEShutdown
from cqrs._internal.sse.frames import Frame as Frame
from cqrs._internal.sse.frames import Reason as Reason
from cqrs._internal.sse.frames import SSESettings as SSESettings
from cqrs._internal.sse.jobs import MAX_EVENT_ID as MAX_EVENT_ID
from cqrs._internal.sse.jobs import JobExpired as JobExpired
from cqrs._internal.sse.jobs import JobNotFound as JobNotFound
from cqrs._internal.sse.jobs import StreamJobs as StreamJobs
from cqrs._internal.sse.jobs import TooManyJobs as TooManyJobs
from cqrs._internal.sse.replay import BufferUnavailable as BufferUnavailable
from cqrs._internal.sse.replay import JobState as JobState
from cqrs._internal.sse.replay import MemoryReplayBuffer as MemoryReplayBuffer
from cqrs._internal.sse.replay import ReplayBuffer as ReplayBuffer
from cqrs._internal.sse.replay import ReplayGap as ReplayGap
from cqrs._internal.sse.stream import frames_of as frames_of

__all__ = [
    "MAX_EVENT_ID",
    "BufferUnavailable",
    "Frame",
    "JobExpired",
    "JobNotFound",
    "JobStarted",
    "JobState",
    "MemoryReplayBuffer",
    "Reason",
    "ReplayBuffer",
    "ReplayGap",
    "SSEResponse",
    "SSESettings",
    "SSEShutdown",
    "StreamJobs",
    "TooManyJobs",
    "event_stream_openapi",
    "frames_of",
    "jobs_router",
    "mediator_dependency",
    "server_sent_events",
    "sse_response",
]
