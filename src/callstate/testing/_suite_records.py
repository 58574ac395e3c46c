"""Store conformance, part three: the insert-only archive, follow-ups and packages."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from ..errors import ConfigError, ConflictError, HandoffStateError, StaleEpochError
from ..storage.abilities import keeps_log
from ..storage.base import (
    ArchiveRow,
    FollowUp,
    FollowUpRun,
    PackageMove,
    PackageRow,
    SessionRecord,
    Store,
)
from ._suite_base import T0, Suite, create, make_batch, new_id, seqs

__all__ = ["RecordsSuite"]


class RecordsSuite(Suite):
    """Store conformance, part three."""

    # -- archive -----------------------------------------------------------------------------

    async def test_archive_insert_and_get(self, store: Store) -> None:
        """An archive row reads back exactly, binary data included; an unknown id is None."""
        row = ArchiveRow(
            record_id=new_id("rec"),
            session_id="s1",
            caller_hash=None,
            ended_at=T0 + 0.25,
            outcome="recovered",
            data=b"\x00\xff binary \x80",
        )
        await store.archive_insert(row)
        assert row == await store.archive_get(row.record_id)
        assert await store.archive_get("nope") is None

    async def test_archive_is_insert_only(self, store: Store) -> None:
        """A second row with an existing record_id raises ConflictError; the first is unchanged."""
        rid = new_id("rec")
        first = ArchiveRow(
            record_id=rid,
            session_id="s1",
            caller_hash="h",
            ended_at=T0,
            outcome="completed",
            data=b"1",
        )
        await store.archive_insert(first)
        second = ArchiveRow(
            record_id=rid,
            session_id="s2",
            caller_hash=None,
            ended_at=T0 + 9,
            outcome="failed",
            data=b"2",
        )
        with pytest.raises(ConflictError):
            await store.archive_insert(second)
        assert first == await store.archive_get(rid)
        assert [first] == await store.archive_list()

    async def test_racing_archive_inserts_keep_exactly_one(self, store: Store) -> None:
        """Concurrent inserts of one record_id: one lands, the others get ConflictError."""
        rid = new_id("rec")

        async def insert(i: int) -> None:
            row = ArchiveRow(
                record_id=rid,
                session_id="s",
                caller_hash=None,
                ended_at=T0,
                outcome="completed",
                data=f"{i}".encode(),
            )
            await store.archive_insert(row)

        results = await asyncio.gather(
            *(insert(i) for i in range(self.racers)), return_exceptions=True
        )
        winners = [i for i, r in enumerate(results) if r is None]
        assert 1 == len(winners)
        assert all(isinstance(r, ConflictError) for r in results if r is not None)
        row = await store.archive_get(rid)
        assert row is not None
        assert f"{winners[0]}".encode() == row.data

    async def test_archive_list_filters_and_order(self, store: Store) -> None:
        """archive_list applies every filter given (``since`` inclusive), newest first."""

        def row(n: int, sid: str, caller: str | None, ended: float) -> ArchiveRow:
            return ArchiveRow(
                record_id=f"r{n}",
                session_id=sid,
                caller_hash=caller,
                ended_at=ended,
                outcome="completed",
                data=b"%d" % n,
            )

        rows = [
            row(1, "s1", "h1", T0 + 1),
            row(2, "s1", "h1", T0 + 4),
            row(3, "s2", "h1", T0 + 2),
            row(4, "s3", None, T0 + 3),
        ]
        for r in rows:
            await store.archive_insert(r)

        async def ids(**kw: object) -> list[str]:
            return [r.record_id for r in await store.archive_list(**kw)]  # type: ignore[arg-type]

        assert ["r2", "r4", "r3", "r1"] == await ids()
        assert ["r2", "r1"] == await ids(session_id="s1")
        assert ["r2", "r3", "r1"] == await ids(caller_hash="h1")
        assert ["r2", "r4", "r3"] == await ids(since=T0 + 2)
        assert ["r3"] == await ids(caller_hash="h1", since=T0 + 2, session_id="s2")
        assert ["r2", "r4"] == await ids(limit=2)
        assert [] == await ids(session_id="nope")

    # -- follow-ups ----------------------------------------------------------------------------

    @staticmethod
    def _followup(session_id: str, due: float, payload: bytes = b"job") -> FollowUp:
        return FollowUp(followup_id=new_id("f"), session_id=session_id, due_at=due, payload=payload)

    async def test_followup_claimed_only_when_due(self, store: Store) -> None:
        """A follow-up is not claimable before ``due_at`` and is claimable from then on."""
        f = self._followup("s1", T0 + 10, b"\x01payload")
        await store.followup_put(f)
        assert [] == await store.followup_claim(T0 + 9.5, "w1", 30)
        claimed = await store.followup_claim(T0 + 10, "w1", 30)
        expected = msgspec.structs.replace(
            f, status="claimed", claimed_by="w1", claimed_until=T0 + 40
        )
        assert [expected] == claimed

    async def test_followup_claimed_exactly_once(self, store: Store) -> None:
        """Racing claimers: every due follow-up goes to exactly one of them."""
        made = [self._followup(f"s{i}", T0 + i) for i in range(10)]
        for f in made:
            await store.followup_put(f)
        batches = await asyncio.gather(
            *(store.followup_claim(T0 + 20, f"w{i}", 30, limit=3) for i in range(self.racers))
        )
        claimed = [f.followup_id for batch in batches for f in batch]
        assert sorted(f.followup_id for f in made) == sorted(claimed)
        assert [] == await store.followup_claim(T0 + 20, "late", 30)

    async def test_followup_claim_order_and_limit(self, store: Store) -> None:
        """followup_claim takes the earliest due first, at most ``limit`` at a time."""
        made = [self._followup("s", T0 + d) for d in (5, 1, 3)]
        for f in made:
            await store.followup_put(f)
        first = await store.followup_claim(T0 + 10, "w", 30, limit=2)
        assert [T0 + 1, T0 + 3] == [f.due_at for f in first]
        rest = await store.followup_claim(T0 + 10, "w", 30, limit=2)
        assert [T0 + 5] == [f.due_at for f in rest]

    async def test_lapsed_followup_claim_can_be_reclaimed(self, store: Store) -> None:
        """A claim that lapsed goes to the next claimer; the first owner can no longer finish it."""
        f = self._followup("s1", T0)
        await store.followup_put(f)
        assert 1 == len(await store.followup_claim(T0, "w1", 30))
        assert [] == await store.followup_claim(T0 + 29, "w2", 30)
        again = await store.followup_claim(T0 + 30, "w2", 30)
        assert [(f.followup_id, "w2", T0 + 60)] == [
            (g.followup_id, g.claimed_by, g.claimed_until) for g in again
        ]
        assert not await store.followup_done(f.followup_id, "w1")
        assert await store.followup_done(f.followup_id, "w2")

    async def test_followup_done_only_by_its_owner_and_once(self, store: Store) -> None:
        """done by a non-owner (or of an unknown id) is False; once done it is never claimed."""
        f = self._followup("s1", T0)
        await store.followup_put(f)
        await store.followup_claim(T0, "w1", 30)
        assert not await store.followup_done(f.followup_id, "w2")
        assert not await store.followup_done("nope", "w1")
        assert await store.followup_done(f.followup_id, "w1")
        assert not await store.followup_done(f.followup_id, "w1")
        assert [] == await store.followup_claim(T0 + 1_000, "w3", 30)

    async def test_followup_cancel(self, store: Store) -> None:
        """cancel stops the session's pending follow-ups, returns how many, and spares others."""
        a1, a2 = self._followup("sa", T0), self._followup("sa", T0 + 1)
        b = self._followup("sb", T0)
        for f in (a1, a2, b):
            await store.followup_put(f)
        assert 2 == await store.followup_cancel("sa")
        assert 0 == await store.followup_cancel("sa")
        assert 0 == await store.followup_cancel("nope")
        claimed = await store.followup_claim(T0 + 10, "w", 30)
        assert [b.followup_id] == [f.followup_id for f in claimed]
        assert 0 == await store.followup_cancel("sb")  # claimed, no longer pending

    async def test_followup_put_replaces_a_pending_one(self, store: Store) -> None:
        """Putting a pending follow-up again moves its due time and payload."""
        f = self._followup("s", T0 + 5, b"old")
        await store.followup_put(f)
        await store.followup_put(msgspec.structs.replace(f, due_at=T0 + 50, payload=b"new"))
        assert [] == await store.followup_claim(T0 + 10, "w", 30)
        claimed = await store.followup_claim(T0 + 50, "w", 30)
        assert [(T0 + 50, b"new")] == [(g.due_at, g.payload) for g in claimed]

    async def test_followup_runs_are_kept_once_per_follow_up(self, store: Store) -> None:
        """A follow-up's run reads back by session, binary data intact; recording it
        again keeps the first; other sessions' runs stay apart; a purge keeps them."""
        log = store
        assert keeps_log(log)
        sid, other = new_id("s"), new_id("s")
        first = FollowUpRun(followup_id=new_id("f"), session_id=sid, data=b"\x00first\xff")
        await log.followup_record(first)
        await log.followup_record(msgspec.structs.replace(first, data=b"second"))
        later = FollowUpRun(followup_id=new_id("f"), session_id=sid, data=b"later")
        await log.followup_record(later)
        await log.followup_record(FollowUpRun(followup_id=new_id("f"), session_id=other, data=b"x"))
        await store.purge(sid)
        got = sorted(await log.followup_runs(sid), key=lambda r: r.data)
        assert sorted([first, later], key=lambda r: r.data) == got
        assert [] == await log.followup_runs(new_id("s"))

    # -- handoff packages ----------------------------------------------------------------------

    async def test_package_put_get(self, store: Store) -> None:
        """A stored package reads back exactly; an unknown id is None."""
        row = PackageRow(package_id=new_id("p"), session_id="s1", data=b"\x00signed", created_at=T0)
        await store.package_put(row)
        assert row == await store.package_get(row.package_id)
        assert await store.package_get("nope") is None

    async def test_package_duplicate_raises_conflict(self, store: Store) -> None:
        """A second package with an existing id raises ConflictError; the first is unchanged."""
        row = PackageRow(package_id=new_id("p"), session_id="s1", data=b"one", created_at=T0)
        await store.package_put(row)
        with pytest.raises(ConflictError):
            await store.package_put(msgspec.structs.replace(row, data=b"two", session_id="s2"))
        assert row == await store.package_get(row.package_id)

    async def test_package_transition_succeeds_once(self, store: Store) -> None:
        """Racing transitions offered→accepted: exactly one succeeds; a wrong from-status fails."""
        row = PackageRow(package_id=new_id("p"), session_id="s1", data=b"pkg", created_at=T0)
        await store.package_put(row)
        results = await asyncio.gather(
            *(
                store.package_transition(row.package_id, "offered", "accepted")
                for _ in range(self.racers)
            )
        )
        assert 1 == results.count(True)
        assert not await store.package_transition(row.package_id, "offered", "reclaimed")
        assert not await store.package_transition("nope", "offered", "accepted")
        stored = await store.package_get(row.package_id)
        assert stored is not None
        assert "accepted" == stored.status

    async def test_claim_moves_a_package_with_it(self, store: Store) -> None:
        """claim(package=...) moves the package as it takes the epoch; a package not in the
        move's from-status (or unknown) refuses the claim and changes nothing."""
        sid = await create(store)
        row = PackageRow(package_id=new_id("p"), session_id=sid, data=b"pkg", created_at=T0)
        await store.package_put(row)
        move = PackageMove(package_id=row.package_id, from_status="offered", to_status="accepted")
        assert 2 == await store.claim(sid, 1, "owner-b", T0 + 60, package=move)
        assert "accepted" == await _status(store, row.package_id)
        with pytest.raises(HandoffStateError, match="accepted, not offered"):
            await store.claim(sid, 2, "owner-c", T0 + 90, package=move)
        unknown = msgspec.structs.replace(move, package_id=new_id("p"))
        with pytest.raises(HandoffStateError, match="unknown to the store"):
            await store.claim(sid, 2, "owner-c", T0 + 90, package=unknown)
        rec = await store.get(sid)
        assert rec is not None
        assert (2, "owner-b", "accepted") == (
            rec.epoch,
            rec.lease_owner,
            await _status(store, row.package_id),
        )

    async def test_racing_claims_with_one_package_take_it_once(self, store: Store) -> None:
        """Of claims racing to move one package (accepts and a reclaim), exactly one wins."""
        sid = await create(store)
        row = PackageRow(package_id=new_id("p"), session_id=sid, data=b"pkg", created_at=T0)
        await store.package_put(row)
        moves = [
            PackageMove(package_id=row.package_id, from_status="offered", to_status=to)
            for to in ["reclaimed"] + ["accepted"] * (self.racers - 1)
        ]
        results = await asyncio.gather(
            *(store.claim(sid, 1, f"o{i}", T0 + 60, package=m) for i, m in enumerate(moves)),
            return_exceptions=True,
        )
        assert [2] == [r for r in results if not isinstance(r, BaseException)]
        assert all(isinstance(r, int | HandoffStateError | StaleEpochError) for r in results)
        rec = await store.get(sid)
        assert rec is not None
        assert 2 == rec.epoch

    async def test_a_stale_claim_leaves_its_package_offered_where_atomic(
        self, store: Store
    ) -> None:
        """A claim refused for its epoch leaves the package offered in a store with
        ``atomic_packages``; the others move the package first, as Store.claim says."""
        sid = await create(store)
        row = PackageRow(package_id=new_id("p"), session_id=sid, data=b"pkg", created_at=T0)
        await store.package_put(row)
        await store.claim(sid, 1, "owner-b", T0 + 60)
        move = PackageMove(package_id=row.package_id, from_status="offered", to_status="accepted")
        with pytest.raises(StaleEpochError):
            await store.claim(sid, 1, "owner-c", T0 + 90, package=move)
        atomic = getattr(store, "atomic_packages", False)
        assert ("offered" if atomic else "accepted") == await _status(store, row.package_id)

    async def test_a_batch_carries_its_package_or_is_refused(self, store: Store) -> None:
        """With ``atomic_packages`` a batch's package is stored with its events: a batch
        refused stores no package, and a package id already stored refuses the batch.
        Without, a batch carrying a package raises ConfigError and writes nothing."""
        sid = await create(store)
        row = PackageRow(package_id=new_id("p"), session_id=sid, data=b"pkg", created_at=T0)
        if not getattr(store, "atomic_packages", False):
            with pytest.raises(ConfigError, match="atomic_packages"):
                await store.append([make_batch(sid, 1, 2, 1, package=row)])
            other = SessionRecord(session_id=new_id("s"), epoch=1)
            with pytest.raises(ConfigError, match="atomic_packages"):
                await store.create(other, make_batch(other.session_id, 1, 1, 1, package=row))
            assert ([1], None, None) == (
                seqs(await store.read_events(sid)),
                await store.package_get(row.package_id),
                await store.get(other.session_id),
            )
            return
        [stale] = await store.append([make_batch(sid, 9, 2, 1, package=row)])
        assert isinstance(stale, StaleEpochError)
        assert None is await store.package_get(row.package_id)
        assert [None] == await store.append([make_batch(sid, 1, 2, 1, package=row)])
        assert row == await store.package_get(row.package_id)
        clash = msgspec.structs.replace(row, data=b"two")
        [error] = await store.append([make_batch(sid, 1, 3, 1, package=clash)])
        assert isinstance(error, ConflictError)
        assert ([1, 2], row) == (
            seqs(await store.read_events(sid)),
            await store.package_get(row.package_id),
        )
        other = SessionRecord(session_id=new_id("s"), epoch=1)
        first = make_batch(other.session_id, 1, 1, 1, package=clash)
        with pytest.raises(ConflictError):  # a new session's first batch, likewise
            await store.create(other, first)
        assert None is await store.get(other.session_id)
        fresh = msgspec.structs.replace(row, package_id=new_id("p"))
        await store.create(other, msgspec.structs.replace(first, package=fresh))
        assert fresh == await store.package_get(fresh.package_id)


async def _status(store: Store, package_id: str) -> str | None:
    row = await store.package_get(package_id)
    return None if row is None else row.status


class ClaimThenSuite(Suite):
    """Store conformance: a claim that records its ownership event in the same step."""

    async def test_claim_appends_its_batch_at_the_new_epoch(self, store: Store) -> None:
        """claim(then=...) appends the batch, written at the new epoch, after the claim;
        with a package the three go together."""
        sid = await create(store, events=2)
        row = PackageRow(package_id=new_id("p"), session_id=sid, data=b"pkg", created_at=T0)
        await store.package_put(row)
        move = PackageMove(package_id=row.package_id, from_status="offered", to_status="accepted")
        then = make_batch(sid, 2, 3, 1, agent="billing")
        assert 2 == await store.claim(sid, 1, "owner-b", T0 + 60, package=move, then=then)
        rec = await store.get(sid)
        assert rec is not None
        assert ([1, 2, 3], 3, 2, "billing", "accepted") == (
            seqs(await store.read_events(sid)),
            rec.seq,
            rec.epoch,
            rec.agent,
            await _status(store, row.package_id),
        )

    async def test_a_batch_that_does_not_follow_refuses_the_claim(self, store: Store) -> None:
        """A ``then`` batch not starting right after the stored seq raises ConflictError;
        a store with ``atomic_packages`` changes nothing, the others stop after the claim."""
        sid = await create(store, events=2)
        row = PackageRow(package_id=new_id("p"), session_id=sid, data=b"pkg", created_at=T0)
        await store.package_put(row)
        move = PackageMove(package_id=row.package_id, from_status="offered", to_status="accepted")
        with pytest.raises(ConflictError, match="journal ends at 2"):
            await store.claim(
                sid, 1, "owner-b", T0 + 60, package=move, then=make_batch(sid, 2, 5, 1)
            )
        rec = await store.get(sid)
        assert rec is not None
        atomic = getattr(store, "atomic_packages", False)
        assert ((1, "owner-a", "offered") if atomic else (2, "owner-b", "accepted")) == (
            rec.epoch,
            rec.lease_owner,
            await _status(store, row.package_id),
        )
        assert [1, 2] == seqs(await store.read_events(sid))

    async def test_claim_with_a_batch_alone_appends_it_at_the_new_epoch(self, store: Store) -> None:
        """claim(then=...) without a package: the new epoch and lease, then the batch."""
        sid = await create(store, events=2)
        then = make_batch(sid, 2, 3, 2, agent="billing")
        assert 2 == await store.claim(sid, 1, "owner-b", T0 + 60, then=then)
        rec = await store.get(sid)
        assert rec is not None
        assert ([1, 2, 3, 4], 4, 2, "owner-b", "billing") == (
            seqs(await store.read_events(sid)),
            rec.seq,
            rec.epoch,
            rec.lease_owner,
            rec.agent,
        )

    async def test_a_batch_alone_that_does_not_follow_refuses_the_claim(self, store: Store) -> None:
        """A ``then`` batch (no package) not starting right after the stored seq raises
        ConflictError; a store that claims in one step (``atomic_packages`` or
        ``atomic_claims``) changes nothing, the others stop after the claim."""
        sid = await create(store, events=2)
        with pytest.raises(ConflictError, match="journal ends at 2"):
            await store.claim(sid, 1, "owner-b", T0 + 60, then=make_batch(sid, 2, 4, 1))
        rec = await store.get(sid)
        assert rec is not None
        one_step = getattr(store, "atomic_packages", False) or getattr(
            store, "atomic_claims", False
        )
        assert ((1, "owner-a") if one_step else (2, "owner-b")) == (rec.epoch, rec.lease_owner)
        assert [1, 2] == seqs(await store.read_events(sid))
