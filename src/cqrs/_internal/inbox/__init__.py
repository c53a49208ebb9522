"""The inbox: consumer-side idempotency, so a redelivered event runs its handlers once."""
