"""The callstate error tree.

Every error callstate raises on purpose derives from :class:`CallstateError`::

    CallstateError
    ├── ConfigError                 bad arguments to Keeper/open_store/ToolRegistry
    ├── CodecError                  bytes that do not decode to a known record
    │   ├── VersionError            a record from a newer, unknown format version
    │   ├── PayloadTooDeep          a value nested deeper than the configured cap
    │   └── SealError               a sealed value malformed, tampered or under an unknown key
    ├── SessionError
    │   ├── SessionNotFound         no such session in the store
    │   ├── SessionExpired          past last interaction + resume window
    │   ├── SessionClosed           the handle was closed, ended or fenced
    │   │   └── SessionFrozen       the session was offered to another agent
    │   └── StaleEpochError         a newer owner holds the session (fencing)
    ├── TokenError                  resume token malformed, tampered, expired or misbound
    │   ├── TokenSuperseded         a handoff or another client's resume took the call since
    │   ├── CallEnded               the call ended; its tokens resume it no more
    │   └── SessionActive           the session is live in another tab (pass takeover=True)
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
Every class has a ``code``: a stable snake_case string naming it in JSON APIs
(``{"error": exc.code, "message": str(exc)}``); a subclass never reuses its parent's.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "CallEnded",
    "CallstateError",
    "CodecError",
    "ConfigError",
    "ConflictError",
    "HandoffError",
    "HandoffFormatError",
    "HandoffStateError",
    "PayloadTooDeep",
    "PayloadTooLarge",
    "SealError",
    "SessionActive",
    "SessionClosed",
    "SessionError",
    "SessionExpired",
    "SessionFrozen",
    "SessionNotFound",
    "StaleEpochError",
    "StorageError",
    "TokenError",
    "TokenSuperseded",
    "ToolArgumentsError",
    "ToolError",
    "UnknownTool",
    "VersionError",
]


class CallstateError(Exception):
    """Root of every error callstate raises on purpose."""

    #: a stable snake_case name of the error, for JSON APIs
    code: ClassVar[str] = "callstate_error"


class ConfigError(CallstateError, ValueError):
    """An argument to a callstate constructor or function is invalid."""

    code = "config_error"


class CodecError(CallstateError, ValueError):
    """Bytes that do not decode to a known callstate record."""

    code = "codec_error"


class VersionError(CodecError):
    """A record written by a newer, unknown format version."""

    code = "version_error"


class PayloadTooDeep(CodecError):
    """A value is nested deeper than the configured cap, or contains itself; ``field``
    names it."""

    code = "payload_too_deep"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class SealError(CodecError):
    """A sealed (encrypted) value is malformed, tampered, or sealed under a key that is
    not among the configured secrets, or it must be opened without any secret."""

    code = "seal_error"


class SessionError(CallstateError):
    """A problem with one session; ``session_id`` names it."""

    code = "session_error"

    def __init__(self, message: str, *, session_id: str | None = None) -> None:
        super().__init__(message)
        self.session_id = session_id


class SessionNotFound(SessionError, LookupError):
    """No session with this id exists in the store."""

    code = "session_not_found"


class SessionExpired(SessionError):
    """The session's resume window has passed."""

    code = "session_expired"


class SessionClosed(SessionError):
    """The session handle may no longer record (ended, fenced or closed)."""

    code = "session_closed"


class SessionFrozen(SessionClosed):
    """The session was offered to another agent; its writes are refused."""

    code = "session_frozen"


class StaleEpochError(SessionError):
    """A newer owner (higher epoch) holds the session; this writer is fenced."""

    code = "stale_epoch"

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
    """A resume token is malformed, tampered, signed by an unknown key or misbound.

    ``session_id`` names the session when the token verified far enough to say.
    """

    code = "token_invalid"

    def __init__(self, message: str, *, session_id: str | None = None) -> None:
        super().__init__(message)
        self.session_id = session_id


class TokenSuperseded(TokenError):
    """The token is from before a handoff or another client's resume: a newer owner
    holds the call, and the token may not take it back. Resume with the fresh token
    that resume handed out instead.

    ``epoch`` is the token's, ``current_epoch`` the session's.
    """

    code = "token_superseded"

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


class CallEnded(TokenError):
    """The call ended; its tokens no longer resume it (``Keeper(resume_after_end=True)``
    allows it, and a ring-back by caller id always may)."""

    code = "call_ended"


class SessionActive(TokenError):
    """The session is live elsewhere: its owner holds a live lease and its link is up
    (another tab). ``keeper.resume(token, takeover=True)`` takes it anyway."""

    code = "session_active"


class HandoffError(CallstateError):
    """A handoff could not be offered or accepted."""

    code = "handoff_error"


class HandoffFormatError(HandoffError, ValueError):
    """Handoff package bytes are unsigned, tampered, truncated, too large or unknown."""

    code = "handoff_format"


class HandoffStateError(HandoffError):
    """The package was already accepted, reclaimed, or is unknown to the store."""

    code = "handoff_state"


class StorageError(CallstateError):
    """The store failed, or stayed unreachable for longer than allowed."""

    code = "storage_error"


class ConflictError(StorageError):
    """A write raced another writer: a seq gap, a duplicate id or a changed epoch."""

    code = "conflict"


class PayloadTooLarge(StorageError, ValueError):
    """A value is larger than the configured cap; ``field`` names it when known."""

    code = "payload_too_large"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ToolError(CallstateError):
    """A tool could not be run as asked."""

    code = "tool_error"


class UnknownTool(ToolError, LookupError):
    """No tool is registered under the requested name."""

    code = "unknown_tool"


class ToolArgumentsError(ToolError, ValueError):
    """The arguments given do not fit the tool's signature."""

    code = "tool_arguments"
