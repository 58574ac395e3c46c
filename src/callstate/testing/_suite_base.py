"""Helpers shared by the parts of the store conformance suite (see ``conformance``)."""

from __future__ import annotations

import uuid
from typing import ClassVar

from ..journal.events import SessionStarted, UserTurn, decode_event, encode_event
from ..storage.base import Batch, SessionRecord, Store

__all__ = ["T0", "Suite", "create", "make_batch", "new_id", "seqs", "turn"]

T0 = 1_000.0  # an arbitrary, exactly representable point in time


def new_id(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:10]}"


def turn(seq: int, text: str | None = None) -> bytes:
    return encode_event(UserTurn(seq=seq, at=T0 + seq, text=text or f"turn {seq} — ok"))


def make_batch(session_id: str, epoch: int, first_seq: int, count: int, **meta: object) -> Batch:
    events = [turn(first_seq + i) for i in range(count)]
    return Batch(session_id=session_id, epoch=epoch, first_seq=first_seq, events=events, **meta)  # type: ignore[arg-type]


async def create(
    store: Store,
    label: str = "s",
    *,
    events: int = 1,
    agent: str = "triage",
    status: str = "active",
    at: float = T0,
    caller_hash: str | None = None,
    lease_owner: str | None = "owner-a",
    lease_until: float = T0 + 15,
) -> str:
    """Create a session at epoch 1 with ``events`` events; returns its id."""
    sid = new_id(label)
    started = encode_event(SessionStarted(seq=1, at=at, session_id=sid, agent=agent))
    first = Batch(
        session_id=sid,
        epoch=1,
        first_seq=1,
        events=[started] + [turn(seq) for seq in range(2, events + 1)],
        agent=agent,
        status=status,
        last_interaction_at=at,
    )
    record = SessionRecord(
        session_id=sid,
        epoch=1,
        agent=agent,
        status=status,
        caller_hash=caller_hash,
        created_at=at,
        last_interaction_at=at,
        lease_owner=lease_owner,
        lease_until=lease_until,
    )
    await store.create(record, first)
    return sid


def seqs(raw: list[bytes]) -> list[int]:
    return [decode_event(r).seq for r in raw]


class Suite:
    """Base of the suite's parts: settings a backend's subclass may tune."""

    #: Concurrent callers in the race tests.
    racers: ClassVar[int] = 20
