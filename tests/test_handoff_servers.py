"""Handoff on the server stores: offer, accept once, late results and reclaim over Redis/PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

import callstate
from callstate.testing import FakeClock
from services import drop_pg_schema, drop_redis_prefix, postgres_url, redis_url, unique

SECRET = b"handoff-server-secret-0123456789"


@pytest.fixture(params=["sqlite", "redis", "postgres"])
async def make_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Callable[[], callstate.Store]]:
    """A factory of stores (one connection each) on one fresh namespace of the backend."""
    kind = request.param
    if kind == "sqlite":
        yield lambda: callstate.open_store(f"sqlite:///{tmp_path}/cs.db")
        return
    if kind == "redis":
        url, prefix = redis_url(), unique("handoff")
        yield lambda: callstate.open_store(url, prefix=prefix)
        await drop_redis_prefix(url, prefix)
        return
    url, schema = postgres_url(), unique("handoff")
    yield lambda: callstate.open_store(url, schema=schema)
    await drop_pg_schema(url, schema)


async def test_handoff_round_trip_on_each_backend(
    make_store: Callable[[], callstate.Store],
) -> None:
    """Offer with a call running, accept once elsewhere, land the result, then reclaim back."""
    started, release = asyncio.Event(), asyncio.Event()
    tools = callstate.ToolRegistry()

    @tools.tool(effect="write", idempotent=True)
    async def move_booking(booking_id: str) -> dict[str, str]:
        started.set()
        await release.wait()
        return {"moved": booking_id}

    clock = FakeClock()
    a = callstate.Keeper(make_store(), secret=SECRET, tools=tools, clock=clock)
    b = callstate.Keeper(make_store(), secret=SECRET, clock=clock)
    async with a, b:
        s = await a.start(agent="triage", caller="+15551234567")
        s.user_said("move B1 and then billing please")
        task = asyncio.create_task(s.run_tool("move_booking", {"booking_id": "B1"}, call_id="c1"))
        await started.wait()
        pkg = await s.handoff(to="billing", reason="billing")
        t = await b.accept(pkg.package_id, agent="billing")
        assert (2, "billing") == (t.state.epoch, t.state.agent)
        with pytest.raises(callstate.HandoffStateError, match="already accepted"):
            await a.accept(pkg.to_bytes())
        with pytest.raises(callstate.SessionFrozen):
            s.user_said("stale")
        release.set()
        await task
        await b.collect_late_results()
        assert ("succeeded", "held") == (t.state.calls["c1"].status, t.state.calls["c1"].delivery)

        back = await t.handoff(to="triage", reason="billing is closed")
        with pytest.raises(callstate.HandoffStateError, match="still open"):
            await b.reclaim(back)
        clock.advance(b.handoff_timeout)
        r = await b.reclaim(back)
        assert (3, "billing", "active") == (r.state.epoch, r.state.agent, r.state.status)
        with pytest.raises(callstate.HandoffStateError, match="already reclaimed"):
            await a.accept(back.package_id)
        stored = await a.load(s.id)
        assert (3, "billing", "succeeded") == (
            stored.epoch,
            stored.agent,
            stored.calls["c1"].status,
        )
