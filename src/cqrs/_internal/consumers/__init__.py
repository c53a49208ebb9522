"""Consumers: run an EventMediator from a broker subscription."""
