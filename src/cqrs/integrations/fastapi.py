"""Server-Sent Events for FastAPI: stream responses, resumable jobs, a mediator dependency.

Needs the ``fastapi`` extra: ``pip install 'cqrs-kit[fastapi]'``.
"""

from cqrs._internal.integrations.fastapi import jobs_router as jobs_router
from cqrs._internal.integrations.fastapi import mediator_dependency as mediator_dependency
from cqrs._internal.integrations.fastapi import sse_response as sse_response
from cqrs._internal.integrations.frames import Frame as Frame
from cqrs._internal.integrations.frames import SSESettings as SSESettings
from cqrs._internal.integrations.jobs import JobExpired as JobExpired
from cqrs._internal.integrations.jobs import JobNotFound as JobNotFound
from cqrs._internal.integrations.jobs import StreamJobs as StreamJobs
from cqrs._internal.integrations.replay import JobState as JobState
from cqrs._internal.integrations.replay import MemoryReplayBuffer as MemoryReplayBuffer
from cqrs._internal.integrations.replay import ReplayBuffer as ReplayBuffer
from cqrs._internal.integrations.replay import ReplayGap as ReplayGap
from cqrs._internal.integrations.sse import SSEResponse as SSEResponse
from cqrs._internal.integrations.sse import frames_of as frames_of
from cqrs._internal.integrations.sse import server_sent_events as server_sent_events

__all__ = [
    "Frame",
    "JobExpired",
    "JobNotFound",
    "JobState",
    "MemoryReplayBuffer",
    "ReplayBuffer",
    "ReplayGap",
    "SSEResponse",
    "SSESettings",
    "StreamJobs",
    "frames_of",
    "jobs_router",
    "mediator_dependency",
    "server_sent_events",
    "sse_response",
]
