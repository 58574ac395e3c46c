"""Store conformance, part two: listing, claims, leases, purge and the caller index."""

from __future__ import annotations

import asyncio

import pytest

from ..errors import SessionNotFound, StaleEpochError
from ..storage.base import ArchiveRow, Batch, FollowUp, PackageRow, SessionRecord, Store
from ._suite_base import T0, Suite, create, make_batch, new_id, seqs, turn

__all__ = ["OwnershipSuite"]


class OwnershipSuite(Suite):
    """Store conformance, part two."""

    # -- listing -----------------------------------------------------------------------

    async def test_list_sessions_filters_and_order(self, store: Store) -> None:
        """list_sessions applies every filter given and lists the newest interaction first."""
        a = await create(store, "a", at=T0 + 1, status="active", lease_until=T0 + 100)
        b = await create(store, "b", at=T0 + 3, status="ended", lease_until=T0 + 5)
        c = await create(store, "c", at=T0 + 2, status="active", lease_until=T0 + 8)

        async def ids(**kw: object) -> list[str]:
            return [r.session_id for r in await store.list_sessions(**kw)]  # type: ignore[arg-type]

        assert [b, c, a] == await ids()
        assert [c, a] == await ids(statuses=["active"])
        assert [b, c, a] == await ids(statuses=["active", "ended"])
        assert [] == await ids(statuses=[])
        assert [b, c] == await ids(lease_before=T0 + 50)
        assert [c, a] == await ids(interaction_before=T0 + 3)
        assert [c] == await ids(
            statuses=["active"], lease_before=T0 + 50, interaction_before=T0 + 3
        )
        assert [b, c] == await ids(limit=2)

    # -- ownership ---------------------------------------------------------------------

    async def test_claim_takes_next_epoch_and_lease(self, store: Store) -> None:
        """claim returns epoch+1 and records the new owner and lease, keeping the journal."""
        sid = await create(store, events=3)
        assert 2 == await store.claim(sid, 1, "owner-b", T0 + 60)
        rec = await store.get(sid)
        assert rec is not None
        assert (2, "owner-b", T0 + 60, 3) == (rec.epoch, rec.lease_owner, rec.lease_until, rec.seq)
        assert 3 == await store.claim(sid, 2, "owner-c", T0 + 70)

    async def test_claim_with_old_epoch_is_stale(self, store: Store) -> None:
        """A second claim expecting the old epoch raises StaleEpochError and changes nothing."""
        sid = await create(store)
        await store.claim(sid, 1, "owner-b", T0 + 60)
        with pytest.raises(StaleEpochError) as exc:
            await store.claim(sid, 1, "owner-c", T0 + 90)
        assert (sid, 1, 2) == (exc.value.session_id, exc.value.epoch, exc.value.current_epoch)
        rec = await store.get(sid)
        assert rec is not None
        assert (2, "owner-b", T0 + 60) == (rec.epoch, rec.lease_owner, rec.lease_until)

    async def test_claim_of_unknown_session(self, store: Store) -> None:
        """Claiming a session that does not exist raises SessionNotFound."""
        with pytest.raises(SessionNotFound):
            await store.claim("nope", 1, "owner-b", T0)

    async def test_racing_claims_exactly_one_wins(self, store: Store) -> None:
        """Concurrent claims with the same expected epoch: exactly one wins, the rest are stale."""
        sid = await create(store)
        results = await asyncio.gather(
            *(store.claim(sid, 1, f"owner-{i}", T0 + 60) for i in range(self.racers)),
            return_exceptions=True,
        )
        winners = [i for i, r in enumerate(results) if r == 2]
        assert 1 == len(winners)
        assert all(isinstance(r, StaleEpochError) for r in results if r != 2)
        rec = await store.get(sid)
        assert rec is not None
        assert (2, f"owner-{winners[0]}") == (rec.epoch, rec.lease_owner)

    async def test_claim_fences_the_old_owner(self, store: Store) -> None:
        """After a claim, appends at the old epoch are refused; the new epoch's land."""
        sid = await create(store, events=2)
        epoch = await store.claim(sid, 1, "owner-b", T0 + 60)
        old, new = (
            await store.append([make_batch(sid, 1, 3, 1)]),
            await store.append([make_batch(sid, epoch, 3, 1)]),
        )
        assert isinstance(old[0], StaleEpochError)
        assert [None] == new
        assert [1, 2, 3] == seqs(await store.read_events(sid))

    async def test_leases_renew_lapse_and_release(self, store: Store) -> None:
        """Only the holder renews or releases a lease; a lapsed lease lists as stale."""
        mine = await create(store, "mine", lease_owner="owner-a", lease_until=T0 + 10)
        theirs = await create(store, "theirs", lease_owner="owner-b", lease_until=T0 + 10)
        held = await store.renew_leases("owner-a", [mine, theirs, "nope"], T0 + 40)
        assert [mine] == held
        stale = [r.session_id for r in await store.list_sessions(lease_before=T0 + 20)]
        assert [theirs] == stale
        await store.release_lease(mine, "owner-b")  # not the holder: no effect
        rec = await store.get(mine)
        assert rec is not None
        assert ("owner-a", T0 + 40) == (rec.lease_owner, rec.lease_until)
        await store.release_lease(mine, "owner-a")
        rec = await store.get(mine)
        assert rec is not None
        assert rec.lease_owner is None
        assert rec.lease_until < T0
        await store.claim(theirs, 1, "owner-c", T0 + 50)
        assert [] == await store.renew_leases("owner-b", [theirs], T0 + 60)

    # -- purge ---------------------------------------------------------------------------

    async def test_purge_drops_resume_state_and_keeps_the_rest(self, store: Store) -> None:
        """purge removes record, journal, snapshot and caller entries; archive etc. stay."""
        sid = await create(store, events=2, caller_hash="h")
        other = await create(store, "other", events=1, caller_hash="h")
        assert [None] == await store.append(
            [make_batch(sid, 1, 3, 1, snapshot=b"{}", snapshot_seq=3)]
        )
        await store.index_caller("h", sid, T0 + 5)
        await store.index_caller("h", other, T0 + 1)
        row = ArchiveRow(
            record_id=new_id("rec"),
            session_id=sid,
            caller_hash="h",
            ended_at=T0,
            outcome="completed",
            data=b"x",
        )
        await store.archive_insert(row)
        await store.followup_put(
            FollowUp(followup_id=new_id("f"), session_id=sid, due_at=T0, payload=b"p")
        )
        await store.package_put(PackageRow(package_id=new_id("p"), session_id=sid, data=b"pkg"))
        await store.purge(sid)
        assert await store.get(sid) is None
        with pytest.raises(SessionNotFound):
            await store.load(sid)
        with pytest.raises(SessionNotFound):
            await store.read_events(sid)
        assert [(other, T0 + 1)] == await store.lookup_caller("h")
        assert row == await store.archive_get(row.record_id)
        assert 1 == len(await store.followup_claim(T0, "w", 30))
        assert [1] == seqs(await store.read_events(other))
        await store.purge(sid)  # purging twice, or an unknown id, is harmless
        await store.purge("nope")

    async def test_purged_id_can_start_over(self, store: Store) -> None:
        """After a purge the same id can be created again, with a fresh journal and no
        snapshot parts of the purged session."""
        sid = await create(store, events=4)
        parted = make_batch(sid, 1, 5, 1, snapshot=b"h", snapshot_seq=5, snapshot_parts={0: b"p"})
        assert [None] == await store.append([parted])
        await store.purge(sid)
        record = SessionRecord(session_id=sid, epoch=1)
        await store.create(record, Batch(session_id=sid, epoch=1, first_seq=1, events=[turn(1)]))
        assert [1] == seqs(await store.read_events(sid))
        assert [None] == await store.append(
            [make_batch(sid, 1, 2, 1, snapshot=b"h2", snapshot_seq=2)]
        )
        assert {} == (await store.load(sid)).snapshot_parts

    # -- caller index ----------------------------------------------------------------------

    async def test_caller_index_most_recent_first(self, store: Store) -> None:
        """lookup_caller lists the caller's sessions newest first; re-indexing moves one up."""
        await store.index_caller("h1", "s-old", T0 + 1)
        await store.index_caller("h1", "s-new", T0 + 3)
        await store.index_caller("h1", "s-mid", T0 + 2)
        await store.index_caller("h2", "s-other", T0 + 9)
        assert [
            ("s-new", T0 + 3),
            ("s-mid", T0 + 2),
            ("s-old", T0 + 1),
        ] == await store.lookup_caller("h1")
        await store.index_caller("h1", "s-old", T0 + 4)
        assert ["s-old", "s-new", "s-mid"] == [s for s, _ in await store.lookup_caller("h1")]
        assert [] == await store.lookup_caller("h-unknown")
