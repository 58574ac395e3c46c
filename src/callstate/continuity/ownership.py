"""Taking and keeping ownership of sessions: create, restore, claim, heartbeat.

A session has one owner at a time, named by its epoch. Starting takes epoch 1; a
takeover claims epoch+1 *before* loading, so the previous owner can append nothing
after the state the new owner restores.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

from ..errors import CodecError, ConfigError, StaleEpochError
from ..journal import events as ev
from ..journal.events import decode_event
from ..journal.snapshot import decode_state
from ..journal.state import SessionState, apply
from ..session import Session
from ..storage.base import Batch, Loaded, SessionRecord

if TYPE_CHECKING:
    from ..keeper import Keeper

__all__ = [
    "create_session",
    "fenced_error",
    "heartbeat",
    "own_claimed",
    "restore_state",
    "take_over",
]


def restore_state(loaded: Loaded) -> SessionState:
    """Rebuild a session's state from its snapshot and the events after it.

    Raises:
        CodecError: the snapshot or an event does not decode, or the journal skips a
            seq; the message names the session and the seq. Nothing stored is changed.
        VersionError: a record was written by a newer format version.
    """
    sid = loaded.record.session_id
    state = SessionState()
    if loaded.snapshot is not None:
        try:
            state = decode_state(loaded.snapshot)
        except CodecError as exc:
            seq = loaded.record.snapshot_seq
            msg = f"session {sid!r}: snapshot at seq {seq} cannot be read: {exc}"
            raise type(exc)(msg) from exc  # a VersionError stays a VersionError
    for raw in loaded.events:
        expected = state.seq + 1
        try:
            event = decode_event(raw)
        except CodecError as exc:
            msg = f"session {sid!r}: event at seq {expected} cannot be read: {exc}"
            raise type(exc)(msg) from exc
        if event.seq != expected:
            msg = f"session {sid!r}: the journal holds seq {event.seq} where seq {expected} belongs"
            raise CodecError(msg)
        apply(state, event)
    return state


def fenced_error(session_id: str, epoch: int, current: int) -> StaleEpochError:
    """The error a handle gets once a newer owner holds its session."""
    msg = f"session {session_id!r} was taken over at epoch {current}; this handle (epoch {epoch}) is fenced"
    return StaleEpochError(msg, session_id=session_id, epoch=epoch, current_epoch=current)


async def create_session(
    keeper: Keeper,
    *,
    agent: str,
    caller: str | None,
    session_id: str | None,
    userdata: dict[str, Any] | None,
    metadata: dict[str, Any] | None,
) -> Session:
    """Create a session at epoch 1, durable with its first event, owned by ``keeper``."""
    if session_id is not None and session_id.startswith("cs1."):
        msg = f"session_id {session_id!r} may not start with 'cs1.', the resume token prefix"
        raise ConfigError(msg)
    sid = session_id or uuid.uuid4().hex
    now = keeper.clock.now()
    started = ev.SessionStarted(
        seq=1,
        at=now,
        session_id=sid,
        agent=agent,
        caller=caller,
        epoch=1,
        userdata=dict(userdata or {}),
        metadata=dict(metadata or {}),
    )
    state = apply(SessionState(), started)
    record = SessionRecord(
        session_id=sid,
        epoch=1,
        agent=agent,
        caller_hash=keeper._caller_hash(caller),
        created_at=now,
        last_interaction_at=now,
        lease_owner=keeper.owner,
        lease_until=now + keeper.lease_ttl,
    )
    first = Batch(
        session_id=sid,
        epoch=1,
        first_seq=1,
        events=[ev.encode_event(started)],
        agent=agent,
        last_interaction_at=now,
    )
    await keeper.store.create(record, first)
    session = Session(keeper, state)
    keeper._adopt(session)
    await keeper._on_started(session)
    return session


async def take_over(
    keeper: Keeper,
    session_id: str,
    expected_epoch: int,
    *,
    via: str,
) -> Session:
    """Claim the session at ``expected_epoch`` + 1, restore it and record the new ownership.

    Raises:
        StaleEpochError: the session is no longer at ``expected_epoch``.
    """
    now = keeper.clock.now()
    # claim before loading: once claimed, the old owner can append nothing more
    epoch = await keeper.store.claim(
        session_id, expected_epoch, keeper.owner, now + keeper.lease_ttl
    )
    return await own_claimed(keeper, session_id, epoch, now=now, via=via)


async def own_claimed(
    keeper: Keeper,
    session_id: str,
    epoch: int,
    *,
    now: float,
    via: str,
    recorded: bool = False,
) -> Session:
    """Restore a session this keeper just claimed at ``epoch`` and record the ownership
    (``SessionResumed``), unless the claim already stored the ownership event
    (``recorded``: a handoff's accept or reclaim).
    """
    loaded = await keeper.store.load(session_id)
    state = restore_state(loaded)
    old = keeper._live.get(session_id)
    if old is not None:
        old._fence(fenced_error(session_id, old.state.epoch, epoch))
    session = Session(keeper, state)
    session._snapshot_seq = loaded.record.snapshot_seq
    gap = max(0.0, now - state.last_interaction_at)
    if not recorded:
        session._append(ev.SessionResumed, epoch=epoch, gap_s=gap, via=via, owner=keeper.owner)
    keeper._adopt(session)
    await session.flush()
    if session.state.in_flight:
        # outcomes a handoff's source stored meanwhile land before in-doubt resolution
        from ..tools.late import collect

        await collect(keeper, session)
    await keeper._after_resume(session, gap=gap, via=via)
    return session


async def heartbeat(keeper: Keeper) -> None:
    """Renew the leases of every live session; fence handles a newer owner took."""
    interval = keeper.lease_ttl / 3
    while True:
        await asyncio.sleep(interval)
        ids = [sid for sid, s in keeper._live.items() if s._error is None]
        if not ids:
            continue
        try:
            held = set(
                await keeper.store.renew_leases(
                    keeper.owner, ids, keeper.clock.now() + keeper.lease_ttl
                )
            )
        except Exception:  # a failing store must not kill the heartbeat
            continue
        for sid in ids:
            if sid not in held and sid in keeper._live:
                s = keeper._live[sid]
                rec = await keeper.store.get(sid)
                if rec is not None and rec.epoch > s.state.epoch:
                    s._fence(fenced_error(sid, s.state.epoch, rec.epoch))
