"""The sweep: stale sessions, expiry, purging, and due follow-ups.

``keeper.sweep()`` runs every ``sweep_every`` seconds in the background and can be
awaited directly. One pass:

1. renews this keeper's own leases (a keeper is never stale to itself);
2. reports sessions whose lease lapsed while active as ``session.stale`` (once per
   session and epoch); any keeper may then take them over with ``keeper.resume``,
   which claims epoch+1 and so fences the old owner. A stale session frozen by an
   offer whose package was never stored (its keeper died in between) is withdrawn:
   claimed at epoch+1 with ``HandoffReclaimed``, so it is never left frozen with no
   package to accept;
3. expires sessions past ``last_interaction_at + resume_window``: claims them
   (epoch+1, fencing a zombie owner), appends ``SessionExpiredEvent``, writes the
   call's archive record (``abandoned`` when it never ended) and those of runs a
   takeover superseded, schedules follow-ups;
4. purges the resume state (journal, snapshot, caller index) of expired sessions
   ``purge_after`` seconds after their window closed; with the default of 0 that
   happens in the same pass that expires them. The archive is never purged;
5. runs follow-ups that are due.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import msgspec

from ..archive.close import archive_run
from ..archive.records import build_record, ended_outcome
from ..errors import SessionNotFound, StaleEpochError
from ..journal import events as ev
from ..storage.base import Batch, SessionRecord
from .causes import lost_cause
from .restore import fenced_error, restore_state

if TYPE_CHECKING:
    from ..archive.followups import FollowUps
    from ..archive.records import Archive
    from ..runtime.host import Host

__all__ = ["SweepResult", "Sweeper"]

_PAGE = 500


class SweepResult(msgspec.Struct, kw_only=True):
    """What one sweep pass found and did (session ids)."""

    stale: list[str] = []
    expired: list[str] = []
    purged: list[str] = []
    #: offers withdrawn because their package was never stored
    withdrawn: list[str] = []
    followups: int = 0


class Sweeper:
    """Sweep passes of one keeper (see the module docstring)."""

    def __init__(self, host: Host, archive: Archive, followups: FollowUps) -> None:
        self._host = host
        self._archive = archive
        self._followups = followups
        self._stale_reported: set[tuple[str, int]] = set()
        #: passes the background sweeper could not finish (a failing store)
        self.errors = 0

    async def loop(self, every: float) -> None:
        """Run a pass every ``every`` seconds, for ever; a failed pass is counted in
        ``errors`` (a failing store must not kill the sweeper)."""
        while True:
            await asyncio.sleep(every)
            try:
                await self.run()
            except Exception:
                self.errors += 1

    async def expire_session(self, rec: SessionRecord, now: float) -> bool:
        """Expire one session past its window; False when it was not this keeper's to do.

        Safe to race: of several keepers expiring one session, the claim lets exactly one
        through, and the archive refuses a second record for the same call.
        """
        host = self._host
        store = host.store
        if rec.status == "expired":
            return False
        try:
            epoch = await store.claim(rec.session_id, rec.epoch, host.owner, now + host.lease_ttl)
        except (
            StaleEpochError,
            SessionNotFound,
        ):  # someone moved it first; the next pass re-checks
            return False
        old = host.handles.pop(rec.session_id, None)
        if old is not None:  # a handle of ours idled past the window: it is fenced too
            old.fence(fenced_error(rec.session_id, old.state.epoch, epoch))
        state = restore_state(await store.load(rec.session_id), host.sealer)
        if state.status == "expired" or now <= state.last_interaction_at + host.resume_window:
            # another keeper expired it after our listing, or it saw activity since: leave it
            await store.release_lease(rec.session_id, host.owner)
            return False
        cause = lost_cause(
            state, lease_owner=rec.lease_owner, lease_until=rec.lease_until, now=now, resumed=False
        )
        if state.status == "ended":  # closed at its end, as the end's own write would be
            closed = state.ended_at or now
            record = build_record(state, outcome=ended_outcome(state), closed_at=closed)
        else:
            record = build_record(state, outcome="abandoned", closed_at=now, lost=cause)
        expired = ev.SessionExpiredEvent(seq=state.seq + 1, at=now, cause=cause)
        batch = Batch(
            session_id=rec.session_id,
            epoch=epoch,
            first_seq=expired.seq,
            events=[ev.encode_event(expired)],
            agent=state.agent,
            status="expired",
            last_interaction_at=state.last_interaction_at,
        )
        (error,) = await store.append([batch])
        if error is not None:
            return False
        # an ended call was archived when it ended; inserting again heals a lost write
        await archive_run(self._archive, self._followups, state, record)
        await store.release_lease(rec.session_id, host.owner)
        if host.purge_after <= 0:
            await store.purge(rec.session_id)
        host.emit(  # last: a reader sees the expiry complete
            "session.expired",
            rec.session_id,
            outcome=record.outcome,
            record_id=record.record_id,
            idle_s=now - state.last_interaction_at,
        )
        return True

    async def withdraw_offer(self, rec: SessionRecord, now: float) -> bool:
        """Withdraw the offer freezing stale session ``rec`` if its package was never
        stored; False when there is nothing to withdraw or another keeper moved first."""
        host = self._host
        store = host.store
        state = restore_state(await store.load(rec.session_id), host.sealer)
        pid = state.pending_handoff
        if state.status != "offered" or pid is None or await store.package_get(pid) is not None:
            return False  # an offer with a package is the acceptor's (or reclaim's) to end
        try:
            epoch = await store.claim(rec.session_id, state.epoch, host.owner, now + host.lease_ttl)
        except (StaleEpochError, SessionNotFound):
            return False
        withdrawn = ev.HandoffReclaimed(seq=state.seq + 1, at=now, package_id=pid, epoch=epoch)
        batch = Batch(
            session_id=rec.session_id,
            epoch=epoch,
            first_seq=withdrawn.seq,
            events=[ev.encode_event(withdrawn)],
            agent=state.agent,
            status="active",
        )
        (error,) = await store.append([batch])
        await store.release_lease(rec.session_id, host.owner)
        if error is not None:  # it recorded more since our read: not ours to withdraw
            return False
        host.emit("handoff.reclaimed", rec.session_id, package_id=pid, epoch=epoch, withdrawn=True)
        return True

    async def _pages(self, **filters: object) -> list[SessionRecord]:
        return await self._host.store.list_sessions(limit=_PAGE, **filters)  # type: ignore[arg-type]

    async def run(self) -> SweepResult:
        """One sweep pass (see the module docstring)."""
        host = self._host
        store = host.store
        now = host.clock.now()
        result = SweepResult()
        own = [sid for sid, s in host.handles.items() if s.error is None]
        if own:
            await store.renew_leases(host.owner, own, now + host.lease_ttl)

        seen: set[tuple[str, int]] = set()
        for rec in await self._pages(statuses=["active", "offered"], lease_before=now):
            if rec.status == "offered" and await self.withdraw_offer(rec, now):
                result.withdrawn.append(rec.session_id)
                continue  # active again and unowned: reported stale by the next pass
            key = (rec.session_id, rec.epoch)
            seen.add(key)
            result.stale.append(rec.session_id)
            if key not in self._stale_reported:
                host.emit(
                    "session.stale",
                    rec.session_id,
                    owner=rec.lease_owner,
                    lapsed_s=now - rec.lease_until if rec.lease_until else None,
                    epoch=rec.epoch,
                )
        self._stale_reported = seen

        cutoff = now - host.resume_window
        while True:
            page = await self._pages(
                statuses=["active", "offered", "ended"], interaction_before=cutoff
            )
            done = [rec for rec in page if await self.expire_session(rec, now)]
            result.expired.extend(r.session_id for r in done)
            if len(page) < _PAGE or not done:
                break

        if host.purge_after > 0:
            for rec in await self._pages(
                statuses=["expired"], interaction_before=cutoff - host.purge_after
            ):
                await store.purge(rec.session_id)
                result.purged.append(rec.session_id)
        else:
            result.purged.extend(result.expired)

        result.followups = await self._followups.run_due(now)
        return result
