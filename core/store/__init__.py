"""State: conversations, runs, steps, approvals and the audit log (SQLModel)."""

from core.store.db import Store, default_sqlite_url

__all__ = ["Store", "default_sqlite_url"]
