"""The transactional outbox (4.x package): ``.repository``, ``.map``, ``.sqlalchemy``, ``.mock``."""

__all__: list[str] = []
