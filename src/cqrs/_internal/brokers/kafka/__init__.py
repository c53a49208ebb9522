"""Kafka through aiokafka: the 4.x adapters, the broker, and subscriptions for the runner."""
