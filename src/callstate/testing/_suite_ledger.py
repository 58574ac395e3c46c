"""Store conformance, part five: the follow-up ledger (attempts, marks, last error)."""

from __future__ import annotations

import pytest

from ..storage.abilities import keeps_ledger
from ..storage.base import FollowUp, FollowUpLedger, Store
from ._suite_base import T0, Suite, new_id

__all__ = ["LedgerSuite"]


def _ledger(store: Store) -> FollowUpLedger:
    if not keeps_ledger(store):
        pytest.skip("the store keeps no follow-up ledger")
    return store


class LedgerSuite(Suite):
    """Store conformance, part five."""

    @staticmethod
    async def _claimed(store: Store, owner: str = "w1", at: float = T0) -> FollowUp:
        f = FollowUp(followup_id=new_id("f"), session_id=new_id("s"), due_at=at, payload=b"p")
        await store.followup_put(f)
        claimed = await store.followup_claim(at, owner, 30)
        assert [f.followup_id] == [c.followup_id for c in claimed]
        return f

    async def test_start_counts_once_per_claim(self, store: Store) -> None:
        """followup_start counts 1 per claim (a resent start counts once), 0 for a non-owner."""
        ledger = _ledger(store)
        f = await self._claimed(store)
        assert 1 == await ledger.followup_start(f.followup_id, "w1", T0 + 1)
        assert 1 == await ledger.followup_start(f.followup_id, "w1", T0 + 2)
        assert 0 == await ledger.followup_start(f.followup_id, "w2", T0 + 2)
        assert 0 == await ledger.followup_start("nope", "w1", T0 + 2)
        # the claim lapses (the keeper died in the callback): the next start is attempt 2
        assert 1 == len(await store.followup_claim(T0 + 30, "w2", 30))
        assert 2 == await ledger.followup_start(f.followup_id, "w2", T0 + 31)
        got = await ledger.followup_get(f.followup_id)
        assert got is not None
        assert ("running", 2, T0 + 31) == (got.state, got.attempts, got.updated_at)

    async def test_settle_retrying_then_dead(self, store: Store) -> None:
        """A retry is due again at retry_at with its error kept; a final failure is dead."""
        ledger = _ledger(store)
        f = await self._claimed(store)
        await ledger.followup_start(f.followup_id, "w1", T0)
        assert not await ledger.followup_settle(
            f.followup_id, "w2", mark="retrying", error="x", now=T0, retry_at=T0 + 5
        )
        assert await ledger.followup_settle(
            f.followup_id,
            "w1",
            mark="retrying",
            error="ValueError: boom",
            now=T0 + 1,
            retry_at=T0 + 5,
        )
        got = await ledger.followup_get(f.followup_id)
        assert got is not None
        assert ("retrying", 1, "ValueError: boom", T0 + 5) == (
            got.state,
            got.attempts,
            got.last_error,
            got.due_at,
        )
        assert [] == await store.followup_claim(T0 + 4, "w1", 30)
        assert 1 == len(await store.followup_claim(T0 + 5, "w1", 30))
        assert 2 == await ledger.followup_start(f.followup_id, "w1", T0 + 5)
        assert await ledger.followup_settle(
            f.followup_id, "w1", mark="dead", error="ValueError: again", now=T0 + 6
        )
        got = await ledger.followup_get(f.followup_id)
        assert got is not None
        assert ("dead", 2, "ValueError: again") == (got.state, got.attempts, got.last_error)
        assert [] == await store.followup_claim(T0 + 1_000, "w1", 30)

    async def test_settle_succeeded_clears_the_error(self, store: Store) -> None:
        """A success after a failure is succeeded, with no error left and never claimed again."""
        ledger = _ledger(store)
        f = await self._claimed(store)
        await ledger.followup_settle(
            f.followup_id, "w1", mark="retrying", error="E: 1", now=T0, retry_at=T0
        )
        await store.followup_claim(T0, "w1", 30)
        assert await ledger.followup_settle(
            f.followup_id, "w1", mark="succeeded", error=None, now=T0
        )
        got = await ledger.followup_get(f.followup_id)
        assert got is not None
        assert ("succeeded", None) == (got.state, got.last_error)
        assert [] == await store.followup_claim(T0 + 1_000, "w1", 30)

    async def test_retry_revives_dead_and_orphaned_only(self, store: Store) -> None:
        """retry makes a dead or orphaned follow-up due now (attempts kept); others refuse."""
        ledger = _ledger(store)
        # distinct claim times: a resent claim takes back only what it claimed itself
        dead, orphan, ok = [await self._claimed(store, at=T0 + i) for i in range(3)]
        await ledger.followup_start(dead.followup_id, "w1", T0)
        await ledger.followup_settle(dead.followup_id, "w1", mark="dead", error="E", now=T0)
        await ledger.followup_settle(
            orphan.followup_id, "w1", mark="orphaned", error="no cb", now=T0, retry_at=T0 + 600
        )
        await ledger.followup_settle(ok.followup_id, "w1", mark="succeeded", error=None, now=T0)
        assert not await ledger.followup_retry(ok.followup_id, T0 + 10)
        assert not await ledger.followup_retry("nope", T0 + 10)
        assert await ledger.followup_retry(dead.followup_id, T0 + 10)
        assert await ledger.followup_retry(orphan.followup_id, T0 + 10)
        assert not await ledger.followup_retry(dead.followup_id, T0 + 11)  # pending now
        got = await ledger.followup_get(dead.followup_id)
        assert got is not None
        assert ("pending", 1, T0 + 10) == (got.state, got.attempts, got.due_at)
        claimed = await store.followup_claim(T0 + 10, "w2", 30)
        assert sorted([dead.followup_id, orphan.followup_id]) == sorted(
            c.followup_id for c in claimed
        )

    async def test_list_and_get(self, store: Store) -> None:
        """list shows follow-ups in every state, latest due first; get of an unknown id is None."""
        ledger = _ledger(store)
        a = await self._claimed(store, at=T0)
        b = FollowUp(followup_id=new_id("f"), session_id="sb", due_at=T0 + 50, payload=b"\x00q")
        await store.followup_put(b)
        await store.followup_cancel("sb")
        await ledger.followup_settle(a.followup_id, "w1", mark="succeeded", error=None, now=T0)
        listed = await ledger.followup_list()
        assert [(b.followup_id, "cancelled"), (a.followup_id, "succeeded")] == [
            (f.followup_id, f.state) for f in listed
        ]
        assert [b.followup_id] == [f.followup_id for f in await ledger.followup_list(limit=1)]
        got = await ledger.followup_get(b.followup_id)
        assert got is not None
        assert (b"\x00q", "sb", 0) == (got.payload, got.session_id, got.attempts)
        assert None is await ledger.followup_get("nope")
