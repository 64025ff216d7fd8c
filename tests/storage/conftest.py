"""The storage tests use the shared conversation-store fixtures."""

from tests.stores import backend, databases, empty_url, new_id, store_url

__all__ = ["backend", "databases", "empty_url", "new_id", "store_url"]
