"""callstate: keep a voice agent's session state alive across barge-ins, handoffs and drops."""

from __future__ import annotations

from .archive import ArchiveRecord
from .errors import (
    CallstateError,
    CodecError,
    ConfigError,
    ConflictError,
    HandoffError,
    HandoffFormatError,
    HandoffStateError,
    PayloadTooLarge,
    SessionClosed,
    SessionError,
    SessionExpired,
    SessionFrozen,
    SessionNotFound,
    StaleEpochError,
    StorageError,
    TokenError,
    ToolArgumentsError,
    ToolError,
    UnknownTool,
    VersionError,
)
from .events import Event, decode_event, encode_event
from .handoff import HandoffPackage
from .keeper import Keeper
from .observe import RecoveryEvent
from .recovery import Preflight, RecoveryPlan
from .session import Session
from .state import SessionState, ToolCall, fold
from .storage import MemoryStore, Store, open_store
from .tools import ToolContext, ToolOutcome, ToolRegistry

__version__ = "0.1.0"

__all__ = [
    "ArchiveRecord",
    "CallstateError",
    "CodecError",
    "ConfigError",
    "ConflictError",
    "Event",
    "HandoffError",
    "HandoffFormatError",
    "HandoffPackage",
    "HandoffStateError",
    "Keeper",
    "MemoryStore",
    "PayloadTooLarge",
    "Preflight",
    "RecoveryEvent",
    "RecoveryPlan",
    "Session",
    "SessionClosed",
    "SessionError",
    "SessionExpired",
    "SessionFrozen",
    "SessionNotFound",
    "SessionState",
    "StaleEpochError",
    "StorageError",
    "Store",
    "TokenError",
    "ToolArgumentsError",
    "ToolCall",
    "ToolContext",
    "ToolError",
    "ToolOutcome",
    "ToolRegistry",
    "UnknownTool",
    "VersionError",
    "__version__",
    "decode_event",
    "encode_event",
    "fold",
    "open_store",
]
