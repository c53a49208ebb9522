"""Requests: message types, handlers, maps and bootstrap (4.x package)."""

__all__: list[str] = []
