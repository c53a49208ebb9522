"""Encoding events for the wire."""
