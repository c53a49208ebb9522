"""Server-Sent Events without a web framework: frames, frame streams, jobs, replay buffers.

Nothing here imports a web framework; the ASGI response and the FastAPI router live in
``cqrs._internal.integrations``.
"""
