"""Stores: one async protocol, several engines. ``open_store(url)`` picks one by URL."""

from __future__ import annotations

from ..errors import ConfigError
from .base import Store
from .memory import MemoryStore

__all__ = ["MemoryStore", "Store", "open_store"]


def open_store(url: str, **options: object) -> Store:
    """Make a (not yet opened) store for ``url``.

    ``memory://``, ``sqlite:///relative/or/absolute.db`` (``sqlite:///:memory:`` too),
    ``redis://host:port/db`` and ``postgresql://…``. Options go to the store's constructor.

    Raises:
        ConfigError: the scheme is unknown.
    """
    scheme, sep, _ = url.partition("://")
    if not sep:
        msg = f"store url {url!r} has no scheme; expected e.g. 'sqlite:///callstate.db' or 'memory://'"
        raise ConfigError(msg)
    match scheme:
        case "memory":
            return MemoryStore(url)
        case "sqlite":
            from .sqlite import SQLiteStore

            return SQLiteStore(url, **options)  # type: ignore[arg-type]
        case "redis" | "rediss":
            from .redis import RedisStore

            return RedisStore(url, **options)  # type: ignore[arg-type]
        case "postgresql" | "postgres":
            from .postgres import PostgresStore

            return PostgresStore(url, **options)  # type: ignore[arg-type]
    msg = f"unknown store scheme {scheme!r} in {url!r}; use memory, sqlite, redis or postgresql"
    raise ConfigError(msg)
