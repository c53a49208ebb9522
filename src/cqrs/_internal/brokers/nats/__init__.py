"""NATS JetStream through nats-py: the broker, its subscriptions, and where messages live."""
