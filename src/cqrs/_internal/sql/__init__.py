"""SQLAlchemy building blocks shared by the outbox, the inbox and saga storage."""
