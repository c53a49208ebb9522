"""Dispatch internals of 4.x; only the exceptions are kept here."""

__all__: list[str] = []
