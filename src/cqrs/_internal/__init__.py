"""The implementation of ``cqrs``. Nothing here is public API: import from ``cqrs`` instead."""
