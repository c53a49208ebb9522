"""Redis Streams through redis-py: the broker, its publisher and subscriptions for the runner."""
