"""Dispatch: each binding compiled once per type into an invoker that every mediator uses."""
