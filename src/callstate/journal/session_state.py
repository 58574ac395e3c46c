"""SessionState and what it holds: conversation items, tool calls, the held outbox.

Plain data, the fold's result (``state``); a snapshot encodes it (``snapshot``).
"""

from __future__ import annotations

from typing import Any, Final, Literal

import msgspec

from . import events as ev

__all__ = ["SNAPSHOT_VERSION", "TERMINAL", "Held", "Item", "SessionState", "ToolCall"]

SNAPSHOT_VERSION: Final = 4

CallStatus = Literal[
    "requested", "started", "succeeded", "failed", "cancelled", "in_doubt", "unknown"
]
#: Statuses after which a call never changes outcome again.
TERMINAL: Final = frozenset({"succeeded", "failed", "cancelled", "unknown"})
SessionStatus = Literal["active", "ended", "expired", "offered", "handed_off"]


class Item(msgspec.Struct, kw_only=True, gc=False):  # only str/float/bool: no cycles
    """One entry of the conversation, in order.

    ``kind`` is ``user``, ``assistant`` or ``call`` (a tool call requested at this
    point; its details live in ``SessionState.calls[id]``). The fold never changes an
    item in place (it replaces it), so treat items as read-only.
    """

    kind: Literal["user", "assistant", "call"]
    id: str = ""
    text: str = ""
    at: float = 0.0
    spoken: str = ""  # assistant: what the caller has heard so far
    done: bool = False  # assistant: finished or interrupted
    interrupted: bool = False
    unspoken: str = ""  # assistant: the rest, kept aside after a barge-in


class ToolCall(msgspec.Struct, kw_only=True):
    """One tool call and everything known about it."""

    call_id: str
    name: str
    args: dict[str, Any] = {}
    effect: ev.Effect = "read"
    idempotent: bool = False
    on_interrupt: ev.OnInterrupt = "complete"
    compensate: str | None = None
    timeout_s: float | None = None
    utterance_id: str | None = None
    turn: int = 0
    status: CallStatus = "requested"
    attempts: int = 0
    idempotency_key: str = ""
    progress: dict[str, Any] = {}
    result: Any = None
    error: str | None = None
    error_type: str = ""
    overtaken: bool = False
    overtaken_at: float | None = None  # when the barge-in that overtook it happened
    overtaken_turn: int = 0  # user turns seen at that barge-in
    compensates: str | None = None  # the call this one undoes
    wire_id: str | None = None  # the framework's id, when it reused one (call_id is then id#n)
    duplicate_of: str | None = None  # the call whose outcome this repeat of its intent took
    in_doubt: bool = False  # a crash left this call between start and result
    resolution: Literal["rerun", "unknown"] | None = None
    delivery: ev.Delivery | None = None
    requested_at: float = 0.0
    finished_at: float | None = None

    @property
    def terminal(self) -> bool:
        """True once the call has its one final outcome."""
        return self.status in TERMINAL


class Held(msgspec.Struct, kw_only=True, frozen=True):
    """One entry of the journaled outbox: a message, or agent speech (``utterance_id``
    set) recorded while the link was down and not heard yet."""

    message: Any = None
    utterance_id: str | None = None
    text: str = ""
    at: float = 0.0


class SessionState(msgspec.Struct, kw_only=True):
    """The live state of one session: plain data, a fold of its journal."""

    session_id: str = ""
    agent: str = ""
    caller: str | None = None
    epoch: int = 0
    seq: int = 0
    status: SessionStatus = "active"
    started_at: float = 0.0
    last_interaction_at: float = 0.0
    ended_at: float | None = None
    end_reason: str | None = None
    items: list[Item] = []
    calls: dict[str, ToolCall] = {}
    partial: str = ""  # the caller's unfinished utterance
    turn: int = 0  # final user turns so far
    current_utterance: str | None = None
    unspoken: str = ""  # unspoken rest of the last interrupted utterance
    userdata: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    personal: list[str] = []  # userdata keys that are personal (sealed at rest)
    on_hold: bool = False
    link_lost_at: float | None = None
    outbox_dropped: int = 0
    outbox: list[Held] = []  # held back while the link was down, oldest first
    token_epoch: int = 0  # tokens from an older epoch are superseded (a client resume, a handoff)
    pending_handoff: str | None = None
    handoff_to: str | None = None
    resumes: int = 0
    # the current run (start/resume/handoff → end/expiry): one archive record each
    run_seq: int = 0  # seq of the event that began it
    run_items: int = 0  # len(items) when it began
    run_started_at: float = 0.0
    run_via: str = ""  # start | resume | takeover | handoff | reclaim
    end_failed: bool = False
    recovery_log: list[ev.Event] = []  # link, barge-in, tool and ownership decisions
    summarized: int = 0  # the first N items are replaced by ``summary`` in the context
    summary: str = ""  # stands in for the items a handoff trimmed from the context
    #: call ids whose outcome landed but no adapter has put into its model's context yet,
    #: in landing order (``tool.context_delivered`` takes one off)
    owed_to_model: list[str] = []
    v: int = SNAPSHOT_VERSION

    @property
    def in_flight(self) -> list[ToolCall]:
        """Calls without a final outcome yet."""
        return [c for c in self.calls.values() if c.status not in TERMINAL]

    @property
    def owed(self) -> list[ToolCall]:
        """Completed calls whose spoken delivery is held for the caller."""
        return [c for c in self.calls.values() if c.delivery == "held"]
