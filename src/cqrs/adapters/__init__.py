"""Broker client adapters (4.x package)."""

__all__: list[str] = []
