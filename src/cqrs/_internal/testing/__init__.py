"""Test helpers for users of cqrs: in-memory brokers and the broker conformance suite."""
