"""Calls in flight at a handoff complete into the new owner; owed results move with it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import callstate
from callstate.journal import events as ev
from callstate.testing import CapturingSink, FakeClock

SECRET = b"handoff-flow-secret-0123456789ab"


@dataclass
class Gate:
    """A real tool that runs until the test opens its gate."""

    started: asyncio.Event
    release: asyncio.Event
    runs: list[str]  # booking ids the write was run for


@dataclass
class Pair:
    a: callstate.Keeper  # the source agent's process
    b: callstate.Keeper  # the target agent's process
    clock: FakeClock
    gate: Gate


def _registry(gate: Gate) -> callstate.ToolRegistry:
    tools = callstate.ToolRegistry()

    @tools.tool(effect="write", idempotent=True)
    async def move_booking(booking_id: str) -> dict[str, str]:
        gate.runs.append(booking_id)
        gate.started.set()
        await gate.release.wait()
        return {"moved": booking_id}

    @tools.tool
    async def lookup(booking_id: str) -> dict[str, str]:
        return {"booking": booking_id, "time": "19:00"}

    return tools


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    """Two keepers with real tools, each with its own connection to one SQLite file."""
    clock = FakeClock()
    gate = Gate(asyncio.Event(), asyncio.Event(), [])
    url = f"sqlite:///{tmp_path}/cs.db"
    a = callstate.Keeper(url, secret=SECRET, clock=clock, tools=_registry(gate))
    b = callstate.Keeper(url, secret=SECRET, clock=clock, tools=_registry(gate))
    async with a, b:
        yield Pair(a, b, clock, gate)
        gate.release.set()  # let any tool still waiting finish before the keepers close


async def _conversation(k: callstate.Keeper) -> callstate.Session:
    s = await k.start(agent="triage", caller="+15551234567")
    s.user_said("I have a billing question about booking B1")
    await s.run_tool("lookup", {"booking_id": "B1"}, call_id="c0")
    u = s.agent_started("It is at seven; I'll pass you to billing")
    s.agent_finished(u)
    await s.flush()
    return s


async def _journal(k: callstate.Keeper, sid: str) -> list[ev.Event]:
    return [ev.decode_event(raw) for raw in await k.store.read_events(sid)]


async def test_trimming_keeps_a_call_still_running(pair: Pair) -> None:
    """A call in flight at the offer is never trimmed away, whatever max_items says."""
    s = await _conversation(pair.a)
    task = asyncio.create_task(s.run_tool("move_booking", {"booking_id": "B1"}, call_id="c1"))
    await pair.gate.started.wait()
    s.user_said("how long will it take")
    s.user_said("hello?")
    s.given_to_model("c0")  # else its outcome, owed to the model, is kept too
    pkg = await s.handoff(to="billing", max_items=1)
    assert "c1" == pkg.items[0]["id"]
    assert ["c1"] == pkg.in_flight
    pair.gate.release.set()
    await task


# -- calls in flight and owed results ---------------------------------------------------------


async def test_in_flight_call_completes_into_the_target_in_another_keeper(pair: Pair) -> None:
    """A tool running at the offer finishes; its result lands in the target, owed (held) there."""
    s = await _conversation(pair.a)
    task = asyncio.create_task(s.run_tool("move_booking", {"booking_id": "B1"}, call_id="c1"))
    await pair.gate.started.wait()
    pkg = await s.handoff(to="billing")
    assert ["c1"] == pkg.in_flight
    t = await pair.b.accept(pkg.to_bytes())
    assert "started" == t.state.calls["c1"].status
    pair.gate.release.set()
    outcome = await task
    assert ("succeeded", {"moved": "B1"}) == (outcome.status, outcome.result)
    await pair.b.collect_late_results()
    call = t.state.calls["c1"]
    assert ("succeeded", {"moved": "B1"}, "held") == (call.status, call.result, call.delivery)
    assert ["c1"] == [c.call_id for c in t.state.owed]
    tool_msgs = [m for m in t.context() if m.get("tool_call_id") == "c1"]
    assert '"moved":"B1"' in tool_msgs[0]["content"]
    stored = await pair.a.load(s.id)
    assert ("succeeded", "held") == (stored.calls["c1"].status, stored.calls["c1"].delivery)
    # the obligation moved: the target announces the write once the caller has spoken
    t.user_said("okay")
    assert "announced" == t.state.calls["c1"].delivery


async def test_in_flight_call_lands_at_once_when_this_keeper_accepted(pair: Pair) -> None:
    """Accepted in the same keeper, the late result is recorded in the target immediately."""
    s = await _conversation(pair.a)
    task = asyncio.create_task(s.run_tool("move_booking", {"booking_id": "B1"}, call_id="c1"))
    await pair.gate.started.wait()
    pkg = await s.handoff(to="billing")
    t = await pair.a.accept(pkg)
    pair.gate.release.set()
    await task
    assert ("succeeded", "held") == (t.state.calls["c1"].status, t.state.calls["c1"].delivery)
    journal = await _journal(pair.b, s.id)
    assert 1 == sum(isinstance(e, ev.ToolSucceeded) and e.call_id == "c1" for e in journal)


async def test_result_finished_before_accept_lands_on_accept(pair: Pair) -> None:
    """A call that finishes while the offer is open is recorded by the accept itself."""
    s = await _conversation(pair.a)
    task = asyncio.create_task(s.run_tool("move_booking", {"booking_id": "B1"}, call_id="c1"))
    await pair.gate.started.wait()
    pkg = await s.handoff(to="billing")
    pair.gate.release.set()
    await task
    t = await pair.b.accept(pkg)
    assert ("succeeded", "held") == (t.state.calls["c1"].status, t.state.calls["c1"].delivery)


async def test_in_flight_call_lands_in_the_source_after_a_reclaim(pair: Pair) -> None:
    """Reclaimed, the source's own late result lands in its new handle."""
    s = await _conversation(pair.a)
    task = asyncio.create_task(s.run_tool("move_booking", {"booking_id": "B1"}, call_id="c1"))
    await pair.gate.started.wait()
    pkg = await s.handoff(to="billing")
    pair.clock.advance(pair.a.handoff_timeout)
    r = await pair.a.reclaim(pkg)
    pair.gate.release.set()
    await task
    assert "succeeded" == r.state.calls["c1"].status


async def test_held_result_moves_with_the_session(pair: Pair) -> None:
    """A result held by a barge-in before the offer is still owed by the target."""
    s = await _conversation(pair.a)
    u = s.agent_started("Moving your booking now")
    task = asyncio.create_task(s.run_tool("move_booking", {"booking_id": "B1"}, call_id="c1"))
    await pair.gate.started.wait()
    s.agent_progress(u, spoken_text="Moving")
    s.interrupt(heard_text="Moving")
    pair.gate.release.set()
    await task
    assert "held" == s.state.calls["c1"].delivery
    pkg = await s.handoff(to="billing")
    assert (["c1"], []) == (pkg.held, pkg.in_flight)
    t = await pair.b.accept(pkg)
    assert ["c1"] == [c.call_id for c in t.state.owed]
    t.user_said("wait, what happened?")
    assert "announced" == t.state.calls["c1"].delivery


async def test_result_crosses_a_chain_of_handoffs(pair: Pair, tmp_path: Path) -> None:
    """A→B→C while a tool runs in A: its result lands in C, the current owner, owed there."""
    s = await _conversation(pair.a)
    task = asyncio.create_task(s.run_tool("move_booking", {"booking_id": "B1"}, call_id="c1"))
    await pair.gate.started.wait()
    first = await s.handoff(to="billing", max_items=2)
    b = await pair.b.accept(first)
    b.user_said("and my invoice?")
    second = await b.handoff(to="disputes", max_items=2)
    assert ["c1"] == second.in_flight
    async with callstate.Keeper(f"sqlite:///{tmp_path}/cs.db", secret=SECRET) as c_keeper:
        c = await c_keeper.accept(second, agent="disputes")
        assert (3, "disputes") == (c.state.epoch, c.state.agent)
        assert second.messages == c.context()
        assert c.context()[0]["content"].startswith("Earlier in this call:")
        pair.gate.release.set()
        await task
        await c_keeper.collect_late_results()
        # the caller spoke since the write was asked for: C must announce it now
        assert ("succeeded", "announced") == (
            c.state.calls["c1"].status,
            c.state.calls["c1"].delivery,
        )
        with pytest.raises(callstate.SessionFrozen):
            b.user_said("stale")


async def test_handoff_decisions_are_observable(pair: Pair) -> None:
    """Offer, accept and reclaim each emit a RecoveryEvent with the package id."""
    sink_a, sink_b = CapturingSink(), CapturingSink()
    pair.a.add_sink(sink_a)
    pair.b.add_sink(sink_b)
    s = await _conversation(pair.a)
    first = await s.handoff(to="billing")
    t = await pair.b.accept(first)
    second = await t.handoff(to="triage")
    pair.clock.advance(pair.b.handoff_timeout)
    await pair.b.reclaim(second)
    await sink_a.wait_for("handoff.offered")
    await sink_b.wait_for("handoff.reclaimed")
    assert [first.package_id] == [e.data["package_id"] for e in sink_a.of("handoff.offered")]
    assert [(first.package_id, "billing")] == [
        (e.data["package_id"], e.data["agent"]) for e in sink_b.of("handoff.accepted")
    ]
    assert [second.package_id] == [e.data["package_id"] for e in sink_b.of("handoff.reclaimed")]


@pytest.mark.parametrize("how", ["reclaim", "resume"])
async def test_stored_result_lands_before_in_doubt_resolution(pair: Pair, how: str) -> None:
    """Taken over elsewhere after the source finished, the stored result lands; no re-run."""
    s = await _conversation(pair.a)
    task = asyncio.create_task(s.run_tool("move_booking", {"booking_id": "B1"}, call_id="c1"))
    await pair.gate.started.wait()
    pkg = await s.handoff(to="billing")
    pair.gate.release.set()
    await task  # finished in A after the offer: stored for the next owner
    pair.clock.advance(pair.a.handoff_timeout)
    r = await (pair.b.reclaim(pkg) if how == "reclaim" else pair.b.resume(s.id))
    call = r.state.calls["c1"]
    assert ("succeeded", {"moved": "B1"}, False) == (call.status, call.result, call.in_doubt)
    assert ["B1"] == pair.gate.runs  # the write ran once, in A
    assert [] == [d.call_id for d in r.in_doubt]


class OutageStore:
    """A real SQLite store whose named methods fail while listed in ``failing``."""

    def __init__(self, inner: callstate.Store) -> None:
        self.inner = inner
        self.failing: set[str] = set()
        self.atomic_packages: bool = getattr(inner, "atomic_packages", False)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        async def call(*args: Any, **kw: Any) -> Any:
            if name in self.failing:
                raise callstate.StorageError(f"injected outage in {name}")
            return await attr(*args, **kw)

        return call


async def test_store_outage_while_collecting_leaves_the_result_for_later(
    pair: Pair, tmp_path: Path
) -> None:
    """A failing store makes collect land nothing and raise nothing; it lands once back."""
    flaky = OutageStore(callstate.open_store(f"sqlite:///{tmp_path}/cs.db"))
    s = await _conversation(pair.a)
    task = asyncio.create_task(s.run_tool("move_booking", {"booking_id": "B1"}, call_id="c1"))
    await pair.gate.started.wait()
    pkg = await s.handoff(to="billing")
    async with callstate.Keeper(flaky, secret=SECRET, clock=pair.clock) as c:
        t = await c.accept(pkg)
        pair.gate.release.set()
        await task
        flaky.failing.add("package_get")
        assert 0 == await c.collect_late_results()
        assert "started" == t.state.calls["c1"].status
        flaky.failing.clear()
        await c.collect_late_results()
        assert "succeeded" == t.state.calls["c1"].status


@pytest.mark.parametrize("atomic", [True, False], ids=["with-the-offer", "after-the-offer"])
async def test_store_outage_during_offer_withdraws_it(
    pair: Pair, tmp_path: Path, atomic: bool
) -> None:
    """If the package cannot be stored, handoff raises StorageError, the session records
    again and no package is left behind: whether the store keeps the package in the
    offer's transaction (SQLite) or the keeper stores it after the offer is durable."""
    flaky = OutageStore(callstate.open_store(f"sqlite:///{tmp_path}/cs.db"))
    flaky.atomic_packages = atomic  # as a store without atomic packages would say
    async with callstate.Keeper(flaky, secret=SECRET, clock=pair.clock, flush_timeout=0.3) as k:
        s = await k.start(agent="triage")
        flaky.failing.add("append" if atomic else "package_put")
        with pytest.raises(callstate.StorageError, match="injected outage"):
            await s.handoff(to="billing")
        flaky.failing.clear()
        s.user_said("still with me?")
        await s.flush()
        assert ("active", None) == (s.state.status, s.state.pending_handoff)
        offered = [e.package_id for e in s.state.recovery_log if isinstance(e, ev.HandoffOffered)]
        assert 1 == len(offered)
        assert None is await flaky.package_get(offered[0])


async def test_package_carries_what_the_model_was_given_and_is_owed(pair: Pair) -> None:
    """The package lists given and owed outcomes, never trims an owed one away, and the
    target owes its model what the source did, plus a write landing after the accept."""
    s = await _conversation(pair.a)
    s.given_to_model("c0")
    await s.run_tool("lookup", {"booking_id": "B2"}, call_id="cx")  # no model was given it
    s.user_said("and move B1 please")
    task = asyncio.create_task(s.run_tool("move_booking", {"booking_id": "B1"}, call_id="c1"))
    await pair.gate.started.wait()
    pkg = await s.handoff(to="billing", max_items=1)
    assert (2, ["c0"], ["cx"], ["c1"]) == (
        pkg.version,
        pkg.given_to_model,
        pkg.owed_to_model,
        pkg.in_flight,
    )
    assert "cx" == pkg.items[0]["id"]  # kept: its outcome is still owed to a model
    assert any(m.get("tool_call_id") == "cx" for m in pkg.messages)
    assert ["cx"] == pkg.to_state().owed_to_model
    t = await pair.b.accept(pkg.to_bytes())
    assert ["cx"] == [o.call_id for o in t.owed_to_model()]
    pair.gate.release.set()
    await task
    await pair.b.collect_late_results()
    assert ["cx", "c1"] == [o.call_id for o in t.owed_to_model()]
