"""The transactional outbox: rows written with the business data, relayed to a broker."""
