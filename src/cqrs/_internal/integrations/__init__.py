"""Integrations with web frameworks and brokers; each module imports its framework lazily."""
