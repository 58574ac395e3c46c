"""Store conformance, part six: counting the archive for fleet figures."""

from __future__ import annotations

import random

import msgspec
import pytest

from ..storage.abilities import counts_figures, keeps_ledger
from ..storage.base import ArchiveRow, FollowUp, Store
from ..storage.figures import ArchiveFigures, Figures
from ..storage.histogram import RELATIVE_ERROR
from ._suite_base import Suite, new_id

__all__ = ["FiguresSuite"]


def _figures(store: Store) -> ArchiveFigures:
    if not counts_figures(store):
        pytest.skip("the store does not count its archive")
    return store


def _row(at: float, health: str | None, **columns: object) -> ArchiveRow:
    return ArchiveRow(
        record_id=new_id("r") + ":1",
        session_id=new_id("s"),
        caller_hash=None,
        ended_at=at - 1,
        outcome="completed",
        data=b"{}",
        closed_at=at,
        health=health,
        **columns,  # type: ignore[arg-type]
    )


class FiguresSuite(Suite):
    """Store conformance, part six."""

    async def test_figures_count_a_window_of_closed_legs(self, store: Store) -> None:
        """Legs closed in [since, until) are counted per class with their tool, in-doubt
        and recovery samples; legs outside it, and rows without closed_at, are not."""
        figures = _figures(store)
        t = random.uniform(1e6, 1e9)  # a window no other test writes into
        rows = [
            _row(t, "ok", tools=2),
            _row(t + 1, "recovered", tools=1, in_doubt=1, recover_s=4.5),
            _row(t + 2, "recovered", recover_s=0.25),
            _row(t + 3, None),
            _row(t - 1, "failed"),  # before the window
            _row(t + 10, "failed"),  # at until: outside
        ]
        rows.append(msgspec.structs.replace(_row(t + 1, "ok"), closed_at=None))  # archived before
        for r in rows:
            await store.archive_insert(r)
        got = await figures.archive_figures(t, t + 10)
        assert {"ok": 1, "recovered": 2, "unknown": 1} == got.legs
        assert (2, 1) == (got.with_tools, got.with_in_doubt)
        if got.recover is None:
            assert [0.25, 4.5] == sorted(got.recover_s)
        else:  # rolled up: exact count and max, percentiles within the stated error
            assert (2, 4.5) == (got.recover.count, got.recover.max)
            assert abs(got.recover.quantile(0.5) - 0.25) <= 0.25 * RELATIVE_ERROR * (1 + 1e-9)
        assert Figures() == await figures.archive_figures(t + 100, t + 200)

    async def test_figures_count_the_lag_of_succeeded_follow_ups(self, store: Store) -> None:
        """A follow-up that succeeded, due in the window, gives finished - due; a retrying
        one gives nothing until it succeeds."""
        figures = _figures(store)
        ledger = store if keeps_ledger(store) else None
        if ledger is None:
            pytest.skip("the store keeps no follow-up ledger")
        t = random.uniform(1e6, 1e9)
        ok = FollowUp(followup_id=new_id("f"), session_id=new_id("s"), due_at=t, payload=b"p")
        again = FollowUp(followup_id=new_id("f"), session_id=new_id("s"), due_at=t, payload=b"p")
        for f in (ok, again):
            await store.followup_put(f)
        claimed = await store.followup_claim(t + 2, "w1", 30)
        assert {ok.followup_id, again.followup_id} <= {c.followup_id for c in claimed}
        await ledger.followup_settle(ok.followup_id, "w1", mark="succeeded", error=None, now=t + 2)
        await ledger.followup_settle(
            again.followup_id, "w1", mark="retrying", error="boom", now=t + 2, retry_at=t + 60
        )
        got = await figures.archive_figures(t, t + 1)
        if got.followup_lag is None:
            assert [2.0] == got.followup_lag_s
        else:  # rolled up: exact count and max, percentiles within the stated error
            assert (1, 2.0) == (got.followup_lag.count, got.followup_lag.max)
            assert abs(got.followup_lag.quantile(0.5) - 2.0) <= 2.0 * RELATIVE_ERROR * (1 + 1e-9)
