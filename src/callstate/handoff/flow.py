"""Offer, accept and reclaim a handoff: freezing, exactly-once acceptance, fencing.

This is the I/O side of :mod:`callstate.handoff`, driven by ``Session.handoff``,
``Keeper.accept`` and ``Keeper.reclaim``.

**Fencing.** Offering records ``HandoffOffered`` (the session is frozen from that
moment: its recording methods and ``flush`` raise ``SessionFrozen``) and stores the
signed package with it: in the offer's own transaction where the store has
``atomic_packages``, otherwise once the offer is durable. A failure on the way
withdraws the offer (``HandoffReclaimed`` at the same epoch), so the session is never
left frozen by an offer nobody can see.

**Exactly once.** Accept and reclaim each make one store call (``Store.claim`` with a
``PackageMove`` and a ``then`` batch) that moves the stored package out of ``offered``
(``accepted`` or ``reclaimed``), claims the session from the epoch the package was
offered at (``epoch + 1``) and records ``HandoffAccepted`` or ``HandoffReclaimed``
right after the offer's seq. Only one of them can move the package, the claim is
conditional on the epoch, and the event on nothing having been recorded since the
offer.

**A crash between the steps** (stores without ``atomic_packages`` take them one after
another) can leave the package moved but the session unclaimed, or claimed without
its event, still frozen; a crash after the last step leaves the session accepted by a
keeper that never used it. Repeating the same accept (or reclaim), in the same or
another keeper, finishes it: it finds the package already in its own target status
and the session as the interrupted call left it, claims it (from a dead keeper only
once that keeper's lease lapsed), records the event if it is missing and owns the
session. ``keeper.resume(session_id)`` takes it over in any case. An offer whose
keeper died before its package was stored is withdrawn by the sweep (see
:mod:`callstate.continuity.sweep`). Each step is a named kill point
(:mod:`callstate.storage.killpoints`).

**Late results** of calls still running at the offer: see :mod:`callstate.tools.late`.
"""

from __future__ import annotations

import dataclasses
import inspect
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ..continuity.ownership import Owned, Ownership
from ..continuity.resume import fresh_token
from ..errors import (
    ConfigError,
    ConflictError,
    HandoffError,
    HandoffFormatError,
    HandoffStateError,
    PayloadTooLarge,
    SessionNotFound,
    StaleEpochError,
)
from ..journal import events as ev
from ..journal.context import build_messages
from ..journal.state import SessionState
from ..runtime.handle import Handle
from ..storage.base import Batch, PackageMove, PackageRow, claim_in_steps, storable_text
from ..storage.killpoints import kill_point
from ..tools.late import watch
from .package import HandoffPackage, build_payload, default_summarize, trim_point

if TYPE_CHECKING:
    from ..runtime.host import Host
    from ..tools.runs import ToolRuns

__all__ = ["HandoffFlow", "Summarize"]

#: ``summarize(messages) -> str`` (or an awaitable of it): the trimmed part, summarized.
Summarize = Callable[[list[dict[str, Any]]], "str | Awaitable[str]"]

H = TypeVar("H", bound=Handle)
_Ref = HandoffPackage | bytes | bytearray | memoryview | str


class HandoffFlow(Generic[H]):
    """Offer, accept and reclaim for one keeper (see the module docstring).

    Attributes:
        summarize: the default ``summarize`` for a trimmed conversation.
        max_bytes: largest package offered or accepted.
        timeout: seconds an offer stays open before its source may reclaim it.
    """

    def __init__(
        self,
        host: Host,
        ownership: Ownership[H],
        tools: ToolRuns,
        *,
        summarize: Summarize | None,
        max_bytes: int,
        timeout: float,
    ) -> None:
        self.host = host
        self.ownership = ownership
        self.tools = tools
        self.summarize = summarize
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def offer(
        self,
        session: Handle,
        *,
        to: str,
        reason: str = "",
        summary: str | None = None,
        max_items: int | None = None,
        summarize: Summarize | None = None,
    ) -> HandoffPackage:
        """Freeze ``session``, store its signed package for agent ``to``, and return it."""
        return await _offer(
            self,
            session,
            to=to,
            reason=reason,
            summary=summary,
            max_items=max_items,
            summarize=summarize,
        )

    async def accept(self, ref: _Ref, *, agent: str | None = None) -> Owned[H]:
        """Accept a package exactly once: the target owns the session at ``epoch + 1``,
        with a fresh resume token for it."""
        owned = await _accept(self, ref, agent=agent)
        return dataclasses.replace(owned, token=fresh_token(self.host, owned.handle))

    async def reclaim(self, ref: _Ref, *, handoff_timeout: float | None = None) -> Owned[H]:
        """Take back a package nobody accepted in time (the source, at epoch+1)."""
        return await _reclaim(self, ref, handoff_timeout=handoff_timeout)


def _keys(host: Host) -> list[bytes]:
    if not host.secrets:
        msg = "handoff packages are signed: create the Keeper with secret=..."
        raise ConfigError(msg)
    return host.secrets


# -- offer ---------------------------------------------------------------------------------


async def _offer(
    flow: HandoffFlow[Any],
    session: Handle,
    *,
    to: str,
    reason: str = "",
    summary: str | None = None,
    max_items: int | None = None,
    summarize: Summarize | None = None,
) -> HandoffPackage:
    host = flow.host
    keys = _keys(host)
    if not isinstance(to, str) or not to:
        msg = f"handoff `to` must name the target agent, got {to!r}"
        raise HandoffError(msg)
    if max_items is not None and (
        isinstance(max_items, bool) or not isinstance(max_items, int) or max_items < 0
    ):
        msg = f"handoff `max_items` must be None or an int >= 0, got {max_items!r}"
        raise HandoffError(msg)
    session.check_writable()
    state = session.state
    package_id = uuid.uuid4().hex
    now = host.clock.now()
    # frozen from here on: nothing else can change the state the package is built from
    session.append(ev.HandoffOffered, package_id=package_id, to_agent=to, reason=reason)
    try:
        # count from the items the context still shows (an earlier handoff may have trimmed)
        cut = state.summarized + trim_point(
            state.items[state.summarized :], state.calls, max_items, set(state.owed_to_model)
        )
        earlier = state.summary
        if cut > state.summarized:
            earlier = await _summarize(state, cut, summarize or flow.summarize)
        payload = build_payload(
            state,
            package_id=package_id,
            to=to,
            created_at=now,
            reason=reason,
            summary=summary,
            trimmed=cut,
            earlier=earlier,
        )
        package = HandoffPackage(payload)
        data = package.to_bytes(keys)
        if len(data) > flow.max_bytes:
            msg = (
                f"handoff package for session {session.id!r} is {len(data)} bytes, over "
                f"handoff_max_bytes={flow.max_bytes}; pass max_items= to trim it"
            )
            raise PayloadTooLarge(msg)
        row = PackageRow(
            package_id=package_id,
            session_id=session.id,
            data=data,
            status="offered",
            created_at=now,
        )
        # a stored package always refers to a frozen session: it is stored with the
        # offer where the store can (one transaction), else once the offer is durable
        carried = host.flusher.carries_packages
        journal = session.journal
        if carried:
            journal.package = row
        await session.wait_durable(state.seq)
        kill_point("handoff.offer_durable")
        if not carried or journal.package is row:  # not in the batch that held the offer
            journal.package = None
            await host.store.package_put(row)
        kill_point("handoff.package_stored")
    except BaseException:
        session.journal.package = None
        _withdraw(session, package_id)
        raise
    session.emit(
        "handoff.offered",
        package_id=package_id,
        to_agent=to,
        from_agent=state.agent,
        bytes=len(data),
        trimmed=cut,
    )
    return package


async def _summarize(state: SessionState, cut: int, hook: Summarize | None) -> str:
    """Summarize what the context shows before item ``cut`` (an earlier summary included)."""
    trimmed = SessionState(
        items=state.items[:cut],
        calls=state.calls,
        summary=state.summary,
        summarized=state.summarized,
    )
    text: Any = (hook or default_summarize)(build_messages(trimmed))
    if inspect.isawaitable(text):
        text = await text
    if not isinstance(text, str):
        msg = f"summarize must return a str, got {type(text).__name__}"
        raise HandoffError(msg)
    return text


def _withdraw(session: Handle, package_id: str) -> None:
    """Unfreeze after a failed offer; the flusher lands it behind the offer."""
    if session.state.pending_handoff == package_id:
        session.append(ev.HandoffReclaimed, package_id=package_id, epoch=session.state.epoch)


# -- accept and reclaim --------------------------------------------------------------------


async def _load(
    flow: HandoffFlow[Any],
    ref: _Ref,
    *,
    need_row: bool = True,
) -> tuple[HandoffPackage, PackageRow | None]:
    """The stored package ``ref`` names, verified; the stored copy is authoritative.

    Without ``need_row``, package bytes that verify are used as they are (no read of
    the stored copy): the status transition that follows is what proves the offer.
    """
    keys = _keys(flow.host)
    verified: HandoffPackage | None = None  # verified here with this keeper's keys
    if isinstance(ref, HandoffPackage):
        package_id = ref.package_id
    elif isinstance(ref, bytes | bytearray | memoryview):
        verified = HandoffPackage.from_bytes(bytes(ref), secret=keys, max_bytes=flow.max_bytes)
        package_id = verified.package_id
        if not need_row:
            return verified, None
    elif isinstance(ref, str):
        package_id = ref
    else:
        msg = f"expected a HandoffPackage, its bytes or a package id, got {type(ref).__name__}"
        raise HandoffFormatError(msg)
    row = await flow.host.store.package_get(package_id) if storable_text(package_id) else None
    if row is None or row.status not in ("offered", "accepted", "reclaimed"):
        msg = f"handoff package {package_id!r:.80} is unknown to the store"
        raise HandoffStateError(msg)
    if verified is not None and verified.to_bytes() != row.data:
        msg = f"handoff package {package_id!r}: the bytes given differ from the stored offer"
        raise HandoffFormatError(msg)
    package = verified or HandoffPackage.from_bytes(row.data, secret=keys, max_bytes=flow.max_bytes)
    if package.package_id != package_id or package.session_id != row.session_id:
        msg = f"stored handoff package {package_id!r} does not match its row (session {row.session_id!r})"
        raise HandoffFormatError(msg)
    return package, row


async def _resume_point(host: Host, package: HandoffPackage, to_status: str) -> tuple[int, bool]:
    """Where an interrupted accept (or reclaim) of ``package`` like this one stands, for
    a package already in ``to_status``: the epoch to claim the session from, and whether
    its event is already recorded (the call finished and its keeper died before it used
    the session). The package moved but the session unclaimed is finished from the
    offer's epoch; a claim without its event, or a finished call, only from a keeper
    whose lease lapsed (or that had this keeper's owner id and has no live handle
    here), so a live one is not fenced in the middle of its own accept.

    Raises:
        HandoffStateError: the package was moved by another call (to another status, or
            by a keeper that still holds the session), or the session moved on.
    """
    store = host.store
    pid, sid = package.package_id, package.session_id
    row = await store.package_get(pid)
    if row is None:
        msg = f"handoff package {pid!r:.80} is unknown to the store"
        raise HandoffStateError(msg)
    rec = await store.get(sid)
    offer_seq = package.payload.seq
    if row.status == to_status and rec is not None:
        live = host.handles.get(sid)
        ours = rec.lease_owner == host.owner and (live is None or live.error is not None)
        lapsed = ours or rec.lease_until < host.clock.now()
        if rec.status == "offered" and rec.seq == offer_seq:
            if rec.epoch == package.epoch or lapsed:
                return rec.epoch, False  # moved, and never claimed or never recorded
        elif rec.status == "active" and rec.seq == offer_seq + 1 and lapsed:
            after = await store.read_events(sid, offer_seq)
            done = ev.decode_event(after[0]) if after else None
            if (
                isinstance(done, ev.HandoffAccepted | ev.HandoffReclaimed)
                and done.package_id == pid
                and done.epoch == rec.epoch
            ):
                return rec.epoch, True
    status = row.status
    msg = f"handoff package {pid!r} was already {status}; it cannot be {to_status} again"
    raise HandoffStateError(msg)


def _ownership_batch(package: HandoffPackage, to_status: str, now: float, epoch: int) -> Batch:
    """The event that ends the offer (``HandoffAccepted`` or ``HandoffReclaimed``), as the
    batch the claim to ``epoch`` appends: right after the offer."""
    seq = package.payload.seq + 1
    event: ev.Event
    if to_status == "accepted":
        event = ev.HandoffAccepted(
            seq=seq,
            at=now,
            package_id=package.package_id,
            agent=package.target_agent,
            epoch=epoch,
            from_agent=package.source_agent,
            trimmed=package.payload.trimmed,
            summary=package.payload.earlier,
        )
    else:
        event = ev.HandoffReclaimed(seq=seq, at=now, package_id=package.package_id, epoch=epoch)
    return Batch(
        session_id=package.session_id,
        epoch=epoch,
        first_seq=seq,
        events=[ev.encode_event(event)],
        agent=package.target_agent if to_status == "accepted" else "",  # "": unchanged
        status="active",
        # no last_interaction_at: an ownership change is no interaction, and a store
        # keeps the latest one it was given
    )


async def _take(
    flow: HandoffFlow[H], package: HandoffPackage, to_status: str, via: str
) -> Owned[H]:
    """Move the package out of ``offered``, claim its session at the offer's epoch + 1 and
    record that, in one store call (one transaction where the store can).

    The recorded event must directly follow the offer, so a session that recorded
    anything since (it cannot while frozen, so it was taken over) is refused. A package
    no longer offered is looked at again (:func:`_resume_point`): moved by another call
    (an error), or by an interrupted call like this one, which this one then finishes:
    it claims the session, records the event if it is missing, and owns the session.
    """
    host = flow.host
    sid, pid = package.session_id, package.package_id
    now = host.clock.now()
    move = PackageMove(package_id=pid, from_status="offered", to_status=to_status)
    until = now + host.lease_ttl
    store = host.store
    recorded = True

    async def claim(move: PackageMove | None, start: int) -> int:
        then = _ownership_batch(package, to_status, now, start + 1)
        if getattr(store, "atomic_packages", False):
            return await store.claim(sid, start, host.owner, until, package=move, then=then)

        def plain() -> Awaitable[int]:
            return store.claim(sid, start, host.owner, until)

        # step by step, through the plain claim any store has (see ``Store.claim``)
        return await claim_in_steps(store, plain, move, then)

    try:
        try:
            epoch = await claim(move, package.epoch)
        except HandoffStateError:  # not offered (any more): nothing was changed
            start, finished = await _resume_point(host, package, to_status)  # or raises
            if finished:  # only the session is left to take over
                recorded = False
                epoch = await store.claim(sid, start, host.owner, until)
            else:
                epoch = await claim(None, start)
    except StaleEpochError as exc:
        msg = (
            f"session {sid!r} is at epoch {exc.current_epoch}, no longer as offered in "
            f"handoff package {pid!r} (epoch {package.epoch}); it moved on without it"
        )
        raise HandoffStateError(msg) from exc
    except ConflictError as exc:
        msg = f"session {sid!r} recorded more after the offer of handoff package {pid!r}: {exc}"
        raise HandoffStateError(msg) from exc
    except SessionNotFound as exc:
        msg = f"session {sid!r} of handoff package {pid!r} is gone"
        raise HandoffStateError(msg) from exc
    kill_point("handoff.claimed")
    owned = await flow.ownership.own_claimed(sid, epoch, now=now, via=via, recorded=recorded)
    kill_point("handoff.owned")
    watch(flow.tools)  # the takeover landed what was stored; the rest is polled for
    return owned


async def _accept(flow: HandoffFlow[H], ref: _Ref, *, agent: str | None = None) -> Owned[H]:
    package, _ = await _load(flow, ref, need_row=False)
    if agent is not None and agent != package.target_agent:
        msg = (
            f"handoff package {package.package_id!r} was offered to agent "
            f"{package.target_agent!r}, not to {agent!r}"
        )
        raise HandoffStateError(msg)
    owned = await _take(flow, package, "accepted", "handoff")
    session = owned.handle
    session.emit(
        "handoff.accepted",
        package_id=package.package_id,
        agent=package.target_agent,
        from_agent=package.source_agent,
        epoch=session.state.epoch,
        latency_ms=max(0.0, flow.host.clock.now() - package.created_at) * 1000,
    )
    return owned


async def _reclaim(
    flow: HandoffFlow[H], ref: _Ref, *, handoff_timeout: float | None = None
) -> Owned[H]:
    package, row = await _load(flow, ref)
    if row is None:  # _load reads the row unless told not to
        msg = f"handoff package {package.package_id!r} is unknown to the store"
        raise HandoffStateError(msg)
    wait = flow.timeout if handoff_timeout is None else float(handoff_timeout)
    due = package.created_at + wait
    now = flow.host.clock.now()
    if row.status == "offered" and now < due:
        msg = (
            f"handoff package {package.package_id!r} is still open to agent "
            f"{package.target_agent!r} for {due - now:.1f}s (timeout {wait:g}s)"
        )
        raise HandoffStateError(msg)
    owned = await _take(flow, package, "reclaimed", "reclaim")
    session = owned.handle
    session.emit(
        "handoff.reclaimed",
        package_id=package.package_id,
        agent=package.source_agent,
        epoch=session.state.epoch,
    )
    return owned
