"""Tool call events: intent, start, progress, one terminal outcome, and delivery."""

from __future__ import annotations

from typing import Any, Literal

from .event_base import Delivery, Effect, EventBase, OnInterrupt


class ToolRequested(EventBase, frozen=True, tag="tool.requested"):
    call_id: str
    name: str
    args: dict[str, Any] = {}
    effect: Effect = "read"
    idempotent: bool = False
    on_interrupt: OnInterrupt = "complete"
    compensate: str | None = None
    timeout_s: float | None = None
    utterance_id: str | None = None  # the generation that asked for the call
    turn: int = 0  # user turns seen when the call was requested
    compensates: str | None = None  # the call this one undoes (a compensating call)
    wire_id: str | None = None  # the framework's id for it, when it reused an earlier one


class ToolStarted(EventBase, frozen=True, tag="tool.started"):
    call_id: str
    attempt: int = 1
    idempotency_key: str = ""


class ToolProgress(EventBase, frozen=True, tag="tool.progress"):
    call_id: str
    data: dict[str, Any] = {}


class ToolSucceeded(EventBase, frozen=True, tag="tool.succeeded"):
    call_id: str
    result: Any = None


class ToolFailed(EventBase, frozen=True, tag="tool.failed"):
    call_id: str
    error: str
    error_type: str = ""


class ToolCancelled(EventBase, frozen=True, tag="tool.cancelled"):
    call_id: str
    reason: str = ""


class ToolInDoubt(EventBase, frozen=True, tag="tool.in_doubt"):
    call_id: str
    resolution: Literal["rerun", "unknown"] = "unknown"


class ToolDeduplicated(EventBase, frozen=True, tag="tool.deduplicated"):
    """A repeat of an earlier call's intent (same tool, same arguments, same user turn):
    it did not run; it ends with the outcome of ``duplicate_of``, copied here."""

    call_id: str
    duplicate_of: str
    status: Literal["succeeded", "failed", "cancelled", "unknown"] = "unknown"
    result: Any = None
    error: str | None = None
    error_type: str = ""


class ToolDelivery(EventBase, frozen=True, tag="tool.delivery"):
    call_id: str
    decision: Delivery
    reason: str = ""


class ToolContextDelivered(EventBase, frozen=True, tag="tool.context_delivered"):
    """An adapter put the call's outcome into its model's context: no longer owed to it."""

    call_id: str
    via: str = ""  # who gave it (an adapter's name), for the record
