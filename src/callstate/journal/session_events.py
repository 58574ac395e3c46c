"""Session lifecycle and handoff events: who owns the session, and how it began and ended."""

from __future__ import annotations

from typing import Any, Literal

from .event_base import EventBase


class SessionStarted(EventBase, frozen=True, tag="session.started"):
    session_id: str
    agent: str
    caller: str | None = None
    epoch: int = 1
    userdata: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    personal: list[str] = []  # userdata keys that are personal (sealed at rest)
    sealed: str | None = None  # as stored: caller and personal userdata, encrypted


class SessionResumed(EventBase, frozen=True, tag="session.resumed"):
    epoch: int
    gap_s: float = 0.0
    via: Literal["resume", "takeover", "handoff"] = "resume"
    owner: str = ""
    # how the new owner came: "token" (a client: older tokens are superseded), "id"
    # (trusted server code) or "caller" (a ring-back); "" before this was recorded
    channel: str = ""
    # why the previous owner lost the session: "lease_expired" (its worker stopped
    # heartbeating), "released" (it let go without ending), "link_lost" (the caller's
    # link was down), "taken_over" (taken from a live owner), "ended" (a ring-back
    # after the end); "" before this was recorded
    cause: str = ""


class SessionEnded(EventBase, frozen=True, tag="session.ended"):
    reason: str = "ended"
    failed: bool = False  # the call ended in failure (archive outcome `failed`)


class SessionExpiredEvent(EventBase, frozen=True, tag="session.expired"):
    reason: str = "resume window passed"
    # why nobody resumed it: "lease_expired" (its owner's lease had lapsed: a lost
    # worker), "link_lost" (the caller's link was down), "idle" (the owner was live, the
    # caller silent), "ended" (it had ended); "" before this was recorded
    cause: str = ""


class HandoffOffered(EventBase, frozen=True, tag="handoff.offered"):
    package_id: str
    to_agent: str
    reason: str = ""


class HandoffAccepted(EventBase, frozen=True, tag="handoff.accepted"):
    package_id: str
    agent: str
    epoch: int
    from_agent: str = ""
    trimmed: int = 0  # the session's first N items are summarized in the target's context
    summary: str = ""  # the summary standing in for them


class HandoffReclaimed(EventBase, frozen=True, tag="handoff.reclaimed"):
    package_id: str
    epoch: int
