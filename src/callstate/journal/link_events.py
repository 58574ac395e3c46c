"""App state and link events: userdata patches, link loss, and the journaled outbox."""

from __future__ import annotations

from typing import Any

from .event_base import EventBase


class UserdataPatch(EventBase, frozen=True, tag="userdata.patch"):
    set: dict[str, Any] = {}
    unset: list[str] = []
    sealed: str | None = None  # as stored: the personal keys of ``set``, encrypted


class LinkLost(EventBase, frozen=True, tag="link.lost"):
    reason: str = ""


class LinkRestored(EventBase, frozen=True, tag="link.restored"):
    gap_s: float = 0.0
    flushed: int = 0
    dropped: int = 0


class OutboxDropped(EventBase, frozen=True, tag="link.outbox_dropped"):
    count: int = 1


class OutboxQueued(EventBase, frozen=True, tag="link.outbox_queued"):
    """A message (or agent speech) held back while the link is down."""

    message: Any = None
    utterance_id: str | None = None  # held agent speech: queued again = its text updated
    text: str = ""  # the held speech's text
    dropped: int = 0  # the oldest held entries dropped first to make room


class OutboxSent(EventBase, frozen=True, tag="link.outbox_sent"):
    """The oldest ``count`` held entries went out once the link was back."""

    count: int = 0
