"""Taking and keeping ownership of sessions: create, claim, restore, heartbeat.

A session has one owner at a time, named by its epoch. Starting takes epoch 1; a
takeover claims epoch+1 *before* loading, so the previous owner can append nothing
after the state the new owner restores.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ..errors import ConfigError, ConflictError
from ..journal import events as ev
from ..journal.limits import check_limits
from ..journal.sealed import seal_event
from ..journal.snapshot import StoredParts
from ..journal.state import SessionState, apply
from ..runtime.handle import Handle
from ..storage.base import Batch, SessionRecord, storable_text
from ..tools.late import collect
from ..tools.lifecycle import recover_in_doubt
from .causes import lost_cause
from .restore import fenced_error
from .resume import Stored, continue_run, load_stored

if TYPE_CHECKING:
    from ..archive.followups import FollowUps
    from ..runtime.host import Host
    from ..tools.reconcile import InDoubtDecision
    from ..tools.runs import ToolRuns
    from .plan import RecoveryPlan

__all__ = ["Owned", "Ownership"]

H = TypeVar("H", bound=Handle)


@dataclass(frozen=True, slots=True)
class Owned(Generic[H]):
    """A session just taken over: its live handle, how it was recovered."""

    handle: H
    plan: RecoveryPlan
    #: how each call a crash left without an outcome was resolved (step 1)
    in_doubt: list[InDoubtDecision]
    #: a fresh resume token for its epoch (set by a resume or an accepted handoff)
    token: str | None = None


class Ownership(Generic[H]):
    """Creates, claims and keeps the sessions of one keeper.

    Args:
        host: the keeper's shared services.
        tools: its tool calls (in-doubt resolution and late outcomes on takeover).
        followups: its follow-ups (a reconnect cancels the pending ones).
        make: builds the live handle of a state this keeper now owns.
    """

    def __init__(
        self,
        host: Host,
        tools: ToolRuns,
        followups: FollowUps,
        make: Callable[[SessionState], H],
    ) -> None:
        self._host = host
        self._tools = tools
        self._followups = followups
        self._make = make

    async def create(
        self,
        *,
        agent: str,
        caller: str | None,
        session_id: str | None,
        userdata: dict[str, Any] | None,
        metadata: dict[str, Any] | None,
        personal: dict[str, Any] | None = None,
    ) -> H:
        """Create a session at epoch 1, durable with its first event, owned here, and
        report it (``session.started``).

        ``personal`` joins the userdata, its keys (and the keeper's) sealed at rest.
        """
        host = self._host
        for field, text in (("session_id", session_id), ("agent", agent), ("caller", caller)):
            if text is not None and not storable_text(text):
                msg = f"{field} must be text without NUL or lone surrogates, got {text!r:.80}"
                raise ConfigError(msg)
        if session_id is not None and session_id.startswith("cs1."):
            msg = f"session_id {session_id!r} may not start with 'cs1.', the resume token prefix"
            raise ConfigError(msg)
        if personal is not None and not isinstance(personal, dict):
            msg = f"personal must be a dict of userdata, got {type(personal).__name__}"
            raise ConfigError(msg)
        data = {**(userdata or {}), **(personal or {})}
        keys = [*host.personal, *(k for k in personal or {} if k not in host.personal)]
        if caller is not None:
            host.check_sealable("caller")  # the message leaves the number out: it goes to logs
        if any(k in data for k in keys):
            host.check_sealable(f"personal userdata {sorted(k for k in keys if k in data)!r}")
        sid = session_id or uuid.uuid4().hex
        now = host.clock.now()
        started = ev.SessionStarted(
            seq=1,
            at=now,
            session_id=sid,
            agent=agent,
            caller=caller,
            epoch=1,
            userdata=data,
            metadata=dict(metadata or {}),
            personal=keys,
        )
        check_limits(started, host.limits)
        state = apply(SessionState(), started)
        caller_hash = host.caller_hash(caller)
        record = SessionRecord(
            session_id=sid,
            epoch=1,
            agent=agent,
            caller_hash=caller_hash,
            created_at=now,
            last_interaction_at=now,
            lease_owner=host.owner,
            lease_until=now + host.lease_ttl,
        )
        first = Batch(
            session_id=sid,
            epoch=1,
            first_seq=1,
            events=[ev.encode_event(seal_event(started, host.sealer, session_id=sid))],
            agent=agent,
            last_interaction_at=now,
        )
        await host.store.create(record, first)
        session = self._make(state)
        host.adopt(session)
        if caller_hash is not None:
            await host.store.index_caller(caller_hash, sid, state.started_at)
        session.emit("session.started")
        return session

    async def take_over(
        self,
        session_id: str,
        expected_epoch: int,
        *,
        via: str,
        channel: str = "",
        previous: SessionRecord | None = None,
        stored: Stored | None = None,
    ) -> Owned[H]:
        """Claim the session at ``expected_epoch`` + 1, restore it and record the new
        ownership (``channel``: how the new owner came, see ``SessionResumed``).

        ``previous`` is the session's record as read before the claim: its lease tells
        why the old owner lost it (``SessionResumed.cause``). Given it, a store with
        ``atomic_packages`` or ``atomic_claims`` claims and journals ``SessionResumed`` in
        one transaction (see :meth:`_claim_recorded`; ``stored``: the session as already
        loaded before the claim, if it was); any other takes them one after the other.

        Raises:
            StaleEpochError: the session is no longer at ``expected_epoch``.
        """
        host = self._host
        now = host.clock.now()
        one_step = getattr(host.store, "atomic_packages", False) or getattr(
            host.store, "atomic_claims", False
        )
        if one_step and previous is not None and previous.epoch == expected_epoch:
            owned = await self._claim_recorded(previous, stored, now=now, via=via, channel=channel)
            if owned is not None:
                return owned
        # claim before loading: once claimed, the old owner can append nothing more
        epoch = await host.store.claim(session_id, expected_epoch, host.owner, now + host.lease_ttl)
        return await self.own_claimed(
            session_id, epoch, now=now, via=via, channel=channel, previous=previous
        )

    async def _claim_recorded(
        self, previous: SessionRecord, stored: Stored | None, *, now: float, via: str, channel: str
    ) -> Owned[H] | None:
        """Claim the session and journal its ``SessionResumed`` in one store transaction:
        one durable commit instead of two, the same fencing.

        The event is built from the state as loaded before the claim, and the claim
        carries it as the batch right after that state's last seq: if the old owner
        recorded anything since the load, the store refuses the whole claim (nothing
        changes) and None sends the caller the step-by-step way. Once claimed, the
        state is that load plus the event, so it is not loaded again.
        """
        host = self._host
        sid = previous.session_id
        if stored is None:
            stored = await load_stored(host, sid)
        if stored.record.epoch != previous.epoch:
            return None  # taken meanwhile: the plain claim raises what fits
        state = stored.state  # handed over: folded on here, never read as before again
        epoch = previous.epoch + 1
        gap = max(0.0, now - state.last_interaction_at)
        fields = self._resumed(
            state, epoch, now=now, gap=gap, via=via, channel=channel, previous=previous
        )
        event = ev.SessionResumed(seq=state.seq + 1, at=now, **fields)
        apply(state, event)
        batch = Batch(
            session_id=sid,
            epoch=epoch,
            first_seq=event.seq,
            events=[ev.encode_event(event)],  # nothing in it is sealed
            agent=state.agent,
            status=state.status,
            last_interaction_at=state.last_interaction_at,
        )
        try:
            await host.store.claim(
                sid, previous.epoch, host.owner, now + host.lease_ttl, then=batch
            )
        except ConflictError:
            return None  # the old owner recorded more after the load; nothing was claimed
        return await self._own(
            state, stored.record.snapshot_seq, epoch, gap=gap, via=via, parts=stored.parts
        )

    async def own_claimed(
        self,
        session_id: str,
        epoch: int,
        *,
        now: float,
        via: str,
        recorded: bool = False,
        channel: str = "",
        previous: SessionRecord | None = None,
    ) -> Owned[H]:
        """Restore a session this keeper just claimed at ``epoch`` and record the
        ownership (``SessionResumed``), unless the claim already stored the ownership
        event (``recorded``: a handoff's accept or reclaim).
        """
        host = self._host
        stored = await load_stored(host, session_id)
        state = stored.state
        gap = max(0.0, now - state.last_interaction_at)
        fields = None
        if not recorded:
            fields = self._resumed(
                state, epoch, now=now, gap=gap, via=via, channel=channel, previous=previous
            )
        return await self._own(
            state,
            stored.record.snapshot_seq,
            epoch,
            gap=gap,
            via=via,
            record=fields,
            parts=stored.parts,
        )

    def _resumed(
        self,
        state: SessionState,
        epoch: int,
        *,
        now: float,
        gap: float,
        via: str,
        channel: str,
        previous: SessionRecord | None,
    ) -> dict[str, Any]:
        """The fields of the ``SessionResumed`` a takeover of ``state`` records."""
        cause = ""
        if previous is not None:
            cause = lost_cause(
                state,
                lease_owner=previous.lease_owner,
                lease_until=previous.lease_until,
                now=now,
                resumed=True,
            )
        return {
            "epoch": epoch,
            "gap_s": gap,
            "via": via,
            "owner": self._host.owner,
            "channel": channel,
            "cause": cause,
        }

    async def _own(
        self,
        state: SessionState,
        snapshot_seq: int,
        epoch: int,
        *,
        gap: float,
        via: str,
        record: dict[str, Any] | None = None,
        parts: StoredParts | None = None,
    ) -> Owned[H]:
        """Make the live handle of a claimed ``state`` (recording ``SessionResumed`` with
        ``record``'s fields, if given), then resolve in-doubt calls and plan the recovery.

        ``parts`` are the snapshot parts the load that built ``state`` read: nobody but
        this owner writes at ``epoch``, so they are what is stored, and its next
        snapshot writes only the parts that changed since.
        """
        host = self._host
        session_id = state.session_id
        old = host.handles.get(session_id)
        if old is not None:
            old.fence(fenced_error(session_id, old.state.epoch, epoch))
        session = self._make(state)
        session.journal.snapshot_seq = snapshot_seq
        if parts is not None:
            parts.epoch = epoch
            session.journal.parts = parts
        if record is not None:
            session.append(ev.SessionResumed, **record)
        host.adopt(session)
        await session.flush()
        if session.state.in_flight:
            # outcomes a handoff's source stored meanwhile land before in-doubt resolution
            await collect(self._tools, session)
        # step 1: resolve the calls a crash left without an outcome; re-runs start now
        in_doubt = await recover_in_doubt(self._tools, session, via=via)
        # step 2: the recovery plan (a pure function of the state and step 1's
        # decisions); also cancels the follow-ups a reconnect makes moot
        recovery = await continue_run(self._followups, session, gap=gap, via=via, in_doubt=in_doubt)
        return Owned(session, recovery, in_doubt)

    async def heartbeat(self) -> None:
        """Renew the leases of every live session; fence handles a newer owner took."""
        host = self._host
        interval = host.lease_ttl / 3
        while True:
            await asyncio.sleep(interval)
            ids = [sid for sid, s in host.handles.items() if s.error is None]
            if not ids:
                continue
            try:
                held = set(
                    await host.store.renew_leases(
                        host.owner, ids, host.clock.now() + host.lease_ttl
                    )
                )
            except Exception:  # a failing store must not kill the heartbeat
                continue
            for sid in ids:
                if sid not in held and sid in host.handles:
                    s = host.handles[sid]
                    rec = await host.store.get(sid)
                    if rec is not None and rec.epoch > s.state.epoch:
                        s.fence(fenced_error(sid, s.state.epoch, rec.epoch))
