"""Middlewares: code that runs around every request, stream and consumed event."""
