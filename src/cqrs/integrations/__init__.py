"""Integrations with web frameworks (new in cqrs; not part of python-cqrs 4.x)."""

__all__: list[str] = []
