"""Stores: one async protocol, several engines. ``open_store(url)`` picks one by URL."""

from __future__ import annotations

import inspect

from ..errors import ConfigError
from ._options import check_text
from .base import Store
from .memory import MemoryStore

__all__ = ["MemoryStore", "Store", "open_store"]


def _store_class(scheme: str, url: str) -> type[Store]:
    match scheme:
        case "memory":
            return MemoryStore
        case "sqlite":
            from .sqlite import SQLiteStore

            return SQLiteStore
        case "redis" | "rediss":
            from .redis import RedisStore

            return RedisStore
        case "postgresql" | "postgres":
            from .postgres import PostgresStore

            return PostgresStore
    msg = f"unknown store scheme {scheme!r} in {url!r}; use memory, sqlite, redis or postgresql"
    raise ConfigError(msg)


def open_store(url: str, **options: object) -> Store:
    """Make a (not yet opened) store for ``url``.

    ``memory://``, ``sqlite:///relative/or/absolute.db`` (``sqlite:///:memory:`` too),
    ``redis://host:port/db`` and ``postgresql://…``. Options go to the store's constructor.

    Raises:
        ConfigError: the URL is not text, malformed, or has an unknown scheme; or an
            option is unknown to the store or has a bad value (the message names it).
    """
    text = check_text(url, "store url")
    scheme, sep, _ = text.partition("://")
    if not sep:
        msg = f"store url {text!r} has no scheme; expected e.g. 'sqlite:///callstate.db' or 'memory://'"
        raise ConfigError(msg)
    cls = _store_class(scheme, text)
    try:
        inspect.signature(cls).bind(text, **options)
    except TypeError as exc:
        msg = f"{cls.__name__} options {sorted(options)}: {exc}"
        raise ConfigError(msg) from exc
    return cls(text, **options)  # type: ignore[call-arg]
