"""The callstate error tree.

Every error callstate raises on purpose derives from :class:`CallstateError`::

    CallstateError
    ├── ConfigError                 bad arguments to Keeper/open_store/ToolRegistry
    ├── CodecError                  bytes that do not decode to a known record
    │   ├── VersionError            a record from a newer, unknown format version
    │   └── PayloadTooDeep          a value nested deeper than the configured cap
    ├── SessionError
    │   ├── SessionNotFound         no such session in the store
    │   ├── SessionExpired          past last interaction + resume window
    │   ├── SessionClosed           the handle was closed, ended or fenced
    │   │   └── SessionFrozen       the session was offered to another agent
    │   └── StaleEpochError         a newer owner holds the session (fencing)
    ├── TokenError                  resume token malformed, tampered, expired or misbound
    ├── HandoffError
    │   ├── HandoffFormatError      package bytes unsigned, tampered, truncated, too big
    │   └── HandoffStateError       package already accepted, reclaimed or unknown
    ├── StorageError                the store failed or stayed unreachable
    │   ├── ConflictError           a write raced another writer (seq/epoch/id clash)
    │   └── PayloadTooLarge         a value over the configured size cap
    └── ToolError
        ├── UnknownTool             no tool registered under that name
        └── ToolArgumentsError      arguments that the tool cannot take

Driver errors are mapped to these at the store boundary and chained with ``from``.
"""

from __future__ import annotations

__all__ = [
    "CallstateError",
    "CodecError",
    "ConfigError",
    "ConflictError",
    "HandoffError",
    "HandoffFormatError",
    "HandoffStateError",
    "PayloadTooDeep",
    "PayloadTooLarge",
    "SessionClosed",
    "SessionError",
    "SessionExpired",
    "SessionFrozen",
    "SessionNotFound",
    "StaleEpochError",
    "StorageError",
    "TokenError",
    "ToolArgumentsError",
    "ToolError",
    "UnknownTool",
    "VersionError",
]


class CallstateError(Exception):
    """Root of every error callstate raises on purpose."""


class ConfigError(CallstateError, ValueError):
    """An argument to a callstate constructor or function is invalid."""


class CodecError(CallstateError, ValueError):
    """Bytes that do not decode to a known callstate record."""


class VersionError(CodecError):
    """A record written by a newer, unknown format version."""


class PayloadTooDeep(CodecError):
    """A value is nested deeper than the configured cap, or contains itself; ``field``
    names it."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class SessionError(CallstateError):
    """A problem with one session; ``session_id`` names it."""

    def __init__(self, message: str, *, session_id: str | None = None) -> None:
        super().__init__(message)
        self.session_id = session_id


class SessionNotFound(SessionError, LookupError):
    """No session with this id exists in the store."""


class SessionExpired(SessionError):
    """The session's resume window has passed."""


class SessionClosed(SessionError):
    """The session handle may no longer record (ended, fenced or closed)."""


class SessionFrozen(SessionClosed):
    """The session was offered to another agent; its writes are refused."""


class StaleEpochError(SessionError):
    """A newer owner (higher epoch) holds the session; this writer is fenced."""

    def __init__(
        self,
        message: str,
        *,
        session_id: str | None = None,
        epoch: int | None = None,
        current_epoch: int | None = None,
    ) -> None:
        super().__init__(message, session_id=session_id)
        self.epoch = epoch
        self.current_epoch = current_epoch


class TokenError(CallstateError):
    """A resume token is malformed, tampered, signed by an unknown key or misbound."""


class HandoffError(CallstateError):
    """A handoff could not be offered or accepted."""


class HandoffFormatError(HandoffError, ValueError):
    """Handoff package bytes are unsigned, tampered, truncated, too large or unknown."""


class HandoffStateError(HandoffError):
    """The package was already accepted, reclaimed, or is unknown to the store."""


class StorageError(CallstateError):
    """The store failed, or stayed unreachable for longer than allowed."""


class ConflictError(StorageError):
    """A write raced another writer: a seq gap, a duplicate id or a changed epoch."""


class PayloadTooLarge(StorageError, ValueError):
    """A value is larger than the configured cap; ``field`` names it when known."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ToolError(CallstateError):
    """A tool could not be run as asked."""


class UnknownTool(ToolError, LookupError):
    """No tool is registered under the requested name."""


class ToolArgumentsError(ToolError, ValueError):
    """The arguments given do not fit the tool's signature."""
