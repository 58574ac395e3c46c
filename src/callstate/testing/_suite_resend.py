"""Store conformance: a claim sent again with its claim id (a retry after a lost reply)."""

from __future__ import annotations

import asyncio

import pytest

from ..errors import ConfigError, HandoffStateError, StaleEpochError
from ..storage.base import PackageMove, PackageRow, Store
from ._suite_base import T0, Suite, create, make_batch, new_id, seqs

__all__ = ["ResendSuite"]


class ResendSuite(Suite):
    """Store conformance: claims recognise themselves by their claim id, and only themselves."""

    async def test_claim_sent_again_with_its_claim_id_returns_the_same_epoch(
        self, store: Store
    ) -> None:
        """A claim repeated with its claim id returns the epoch it took and changes nothing."""
        sid = await create(store, events=2)
        assert 2 == await store.claim(sid, 1, "owner-b", T0 + 60, claim_id="c-1")
        assert 2 == await store.claim(sid, 1, "owner-b", T0 + 60, claim_id="c-1")
        rec = await store.get(sid)
        assert rec is not None
        assert (2, "owner-b", T0 + 60, 2) == (rec.epoch, rec.lease_owner, rec.lease_until, rec.seq)

    async def test_another_claim_id_still_meets_the_fence(self, store: Store) -> None:
        """A competitor's claim at the taken epoch is stale; an old claim id does not pass
        once a later claim moved the epoch on."""
        sid = await create(store)
        assert 2 == await store.claim(sid, 1, "owner-b", T0 + 60, claim_id="c-b")
        with pytest.raises(StaleEpochError) as exc:
            await store.claim(sid, 1, "owner-c", T0 + 90, claim_id="c-c")
        assert (1, 2) == (exc.value.epoch, exc.value.current_epoch)
        with pytest.raises(StaleEpochError):
            await store.claim(sid, 1, "owner-c", T0 + 90)  # no id: one of its own
        assert 3 == await store.claim(sid, 2, "owner-d", T0 + 95, claim_id="c-d")
        with pytest.raises(StaleEpochError) as exc:
            await store.claim(sid, 1, "owner-b", T0 + 60, claim_id="c-b")
        assert 3 == exc.value.current_epoch
        rec = await store.get(sid)
        assert rec is not None
        assert (3, "owner-d") == (rec.epoch, rec.lease_owner)

    async def test_claim_with_package_and_batch_sent_again_is_done_once(self, store: Store) -> None:
        """A claim with a package move and a batch, repeated with its claim id, returns the
        same epoch without moving or appending twice; another id is refused."""
        sid = await create(store, events=2)
        row = PackageRow(package_id=new_id("p"), session_id=sid, data=b"pkg", created_at=T0)
        await store.package_put(row)
        move = PackageMove(package_id=row.package_id, from_status="offered", to_status="accepted")
        then = make_batch(sid, 2, 3, 1, agent="billing")
        for _ in range(2):
            got = await store.claim(
                sid, 1, "owner-b", T0 + 60, package=move, then=then, claim_id="c-pkg"
            )
            assert 2 == got
        with pytest.raises(HandoffStateError):
            await store.claim(sid, 1, "owner-c", T0 + 60, package=move, then=then, claim_id="c-x")
        rec = await store.get(sid)
        pkg = await store.package_get(row.package_id)
        assert rec is not None
        assert pkg is not None
        assert ([1, 2, 3], 2, "owner-b", "accepted") == (
            seqs(await store.read_events(sid)),
            rec.epoch,
            rec.lease_owner,
            pkg.status,
        )

    async def test_claim_with_a_batch_alone_sent_again_is_done_once(self, store: Store) -> None:
        """A claim with a batch and no package, repeated with its claim id, returns the
        same epoch and stores the batch once; another id meets the fence."""
        sid = await create(store, events=2)
        then = make_batch(sid, 2, 3, 2)
        for _ in range(2):
            assert 2 == await store.claim(sid, 1, "owner-b", T0 + 60, then=then, claim_id="c-b")
        with pytest.raises(StaleEpochError):
            await store.claim(sid, 1, "owner-c", T0 + 60, then=then, claim_id="c-x")
        rec = await store.get(sid)
        assert rec is not None
        assert ([1, 2, 3, 4], 2, "owner-b") == (
            seqs(await store.read_events(sid)),
            rec.epoch,
            rec.lease_owner,
        )

    async def test_racing_claims_sent_twice_keep_one_winner(self, store: Store) -> None:
        """Racing claimers, each sending its claim twice with its own id: one wins both
        times, every other one is stale both times."""
        sid = await create(store)

        async def twice(i: int) -> list[int | BaseException]:
            out: list[int | BaseException] = []
            for _ in range(2):
                try:
                    out.append(await store.claim(sid, 1, f"o{i}", T0 + 60, claim_id=f"c{i}"))
                except StaleEpochError as exc:
                    out.append(exc)
            return out

        results = await asyncio.gather(*(twice(i) for i in range(self.racers)))
        winners = [i for i, r in enumerate(results) if r == [2, 2]]
        assert 1 == len(winners)
        losers = [r for i, r in enumerate(results) if i != winners[0]]
        assert all(isinstance(x, StaleEpochError) for r in losers for x in r)
        rec = await store.get(sid)
        assert rec is not None
        assert (2, f"o{winners[0]}") == (rec.epoch, rec.lease_owner)

    async def test_an_empty_claim_id_is_refused(self, store: Store) -> None:
        """claim_id="" raises ConfigError naming the field; the session is not claimed."""
        sid = await create(store)
        with pytest.raises(ConfigError, match="claim_id"):
            await store.claim(sid, 1, "owner-b", T0 + 60, claim_id="")
        rec = await store.get(sid)
        assert rec is not None
        assert 1 == rec.epoch
