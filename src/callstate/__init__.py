"""callstate: keep a voice agent's session state alive across barge-ins, handoffs and drops."""

from __future__ import annotations

from .archive.calls import CallRecord, FollowUpResult
from .archive.fleet import FleetStats
from .archive.health import Health
from .archive.records import ArchiveRecord
from .continuity.plan import Preflight, RecoveryPlan
from .errors import (
    CallEnded,
    CallstateError,
    CodecError,
    ConfigError,
    ConflictError,
    HandoffError,
    HandoffFormatError,
    HandoffStateError,
    PayloadTooDeep,
    PayloadTooLarge,
    SealError,
    SessionActive,
    SessionClosed,
    SessionError,
    SessionExpired,
    SessionFrozen,
    SessionNotFound,
    StaleEpochError,
    StorageError,
    TokenError,
    TokenSuperseded,
    ToolArgumentsError,
    ToolError,
    UnknownTool,
    VersionError,
)
from .handoff.package import HandoffPackage
from .journal.events import Event, decode_event, encode_event
from .journal.limits import Limits
from .journal.state import SessionState, ToolCall, fold
from .keeper import Keeper
from .observe.recovery import RecoveryEvent
from .session import Session
from .storage import MemoryStore, Store, open_store
from .tools.registry import ToolContext, ToolOutcome, ToolRegistry

__version__ = "0.1.0"

__all__ = [
    "ArchiveRecord",
    "CallEnded",
    "CallRecord",
    "CallstateError",
    "CodecError",
    "ConfigError",
    "ConflictError",
    "Event",
    "FleetStats",
    "FollowUpResult",
    "HandoffError",
    "HandoffFormatError",
    "HandoffPackage",
    "HandoffStateError",
    "Health",
    "Keeper",
    "Limits",
    "MemoryStore",
    "PayloadTooDeep",
    "PayloadTooLarge",
    "Preflight",
    "RecoveryEvent",
    "RecoveryPlan",
    "SealError",
    "Session",
    "SessionActive",
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
    "TokenSuperseded",
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
