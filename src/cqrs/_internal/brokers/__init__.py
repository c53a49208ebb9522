"""Message brokers: where notification events go."""
