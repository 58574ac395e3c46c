"""Outcomes owed to the model: journaled, replayed on attach, announced as they land."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import callstate
from callstate import StaleEpochError, ToolError, ToolOutcome
from callstate.journal import events as ev
from callstate.journal.snapshot import decode_state, encode_snapshot
from callstate.journal.state import fold
from callstate.testing import FakeClock

SECRET = b"s" * 32
CALLER = "+15551234567"


class Gates:
    """Per-attempt gates for a read tool: attempt N waits for ``gate[N]`` when set."""

    def __init__(self) -> None:
        self.started: dict[int, asyncio.Event] = {1: asyncio.Event(), 2: asyncio.Event()}
        self.gate: dict[int, asyncio.Event] = {}
        self.first: asyncio.Future[Any] | None = None  # the cut-off first attempt


def _registry(gates: Gates) -> callstate.ToolRegistry:
    tools = callstate.ToolRegistry()

    @tools.tool(effect="read")
    async def lookup(q: str, *, ctx: callstate.ToolContext) -> dict[str, Any]:
        gates.started.setdefault(ctx.attempt, asyncio.Event()).set()
        gate = gates.gate.get(ctx.attempt)
        if gate is not None:
            await gate.wait()
        return {"q": q, "attempt": ctx.attempt}

    return tools


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/cs.db"


@pytest.fixture
async def keeper(url: str, clock: FakeClock) -> AsyncIterator[callstate.Keeper]:
    async with callstate.Keeper(url, secret=SECRET, clock=clock, tools=_registry(Gates())) as k:
        yield k


class Got(list[ToolOutcome]):
    """A callback collecting outcomes; ``await got.first()`` waits for one."""

    def __init__(self) -> None:
        super().__init__()
        self.event = asyncio.Event()

    def __call__(self, outcome: ToolOutcome) -> None:
        self.append(outcome)
        self.event.set()

    async def first(self) -> None:
        await asyncio.wait_for(self.event.wait(), timeout=10)


# -- the fold ---------------------------------------------------------------------------


def test_the_fold_owes_each_landed_outcome_until_it_is_context_delivered() -> None:
    """Every terminal event owes its call to the model; tool.context_delivered pays it."""
    events: list[ev.Event] = [ev.SessionStarted(seq=1, session_id="s", agent="a")]
    for i, cid in enumerate(["c1", "c2", "c3", "c4", "c5"]):
        events.append(ev.ToolRequested(seq=2 + 2 * i, call_id=cid, name="t"))
        events.append(ev.ToolStarted(seq=3 + 2 * i, call_id=cid))
    events += [
        ev.ToolSucceeded(seq=12, call_id="c1", result=1),
        ev.ToolFailed(seq=13, call_id="c2", error="no"),
        ev.ToolCancelled(seq=14, call_id="c3"),
        ev.ToolInDoubt(seq=15, call_id="c4", resolution="unknown"),
        ev.ToolInDoubt(seq=16, call_id="c5", resolution="rerun"),
        ev.ToolContextDelivered(seq=17, call_id="c2", via="test"),
        ev.ToolContextDelivered(seq=18, call_id="c2"),
    ]
    state = fold(events)
    assert ["c1", "c3", "c4"] == state.owed_to_model
    assert ["c1", "c3", "c4"] == decode_state(encode_snapshot(state)).owed_to_model
    assert ["c1", "c3", "c4", "c5"] == fold(
        [ev.ToolSucceeded(seq=19, call_id="c5", result=2)], state
    ).owed_to_model


# -- the session API ----------------------------------------------------------------------


async def test_an_outcome_is_owed_to_the_model_until_it_is_given(keeper: callstate.Keeper) -> None:
    """run_tool's outcome is owed until given_to_model, which records it once."""
    s = await keeper.start(caller=CALLER)
    out = await s.run_tool("lookup", {"q": "x"}, call_id="c1")
    assert [out] == s.owed_to_model()
    assert s.given_to_model("c1", via="test") is True
    assert [] == s.owed_to_model()
    assert s.given_to_model("c1") is False
    delivered = [e for e in s.journal.pending if isinstance(e, ev.ToolContextDelivered)]
    assert [("c1", "test")] == [(e.call_id, e.via) for e in delivered]


async def test_given_to_model_refuses_an_unknown_call_naming_it(keeper: callstate.Keeper) -> None:
    """A call id the session never saw is a ToolError naming it; nothing is recorded."""
    s = await keeper.start(caller=CALLER)
    seq = s.state.seq
    with pytest.raises(ToolError, match="'nope'"):
        s.given_to_model("nope")
    with pytest.raises(ToolError, match="callback"):
        s.on_outcome("not callable")  # type: ignore[arg-type]
    assert seq == s.state.seq


async def test_what_is_owed_survives_a_resume_in_another_keeper(url: str, clock: FakeClock) -> None:
    """A resume in another keeper (another process) still owes what was never given."""
    tools = _registry(Gates())
    async with callstate.Keeper(url, secret=SECRET, clock=clock, tools=tools) as a:
        s = await a.start(caller=CALLER)
        await s.run_tool("lookup", {"q": "given"}, call_id="c1")
        await s.run_tool("lookup", {"q": "owed"}, call_id="c2")
        s.given_to_model("c1")
        await s.flush()
        token = s.resume_token()
    async with callstate.Keeper(url, secret=SECRET, clock=clock, tools=tools) as b:
        s2 = await b.resume(token)
        assert ["c2"] == [o.call_id for o in s2.owed_to_model()]
        assert s2.recovery is not None
        assert [("c2", {"q": "owed", "attempt": 1})] == [
            (o.call_id, o.result) for o in s2.recovery.owed_to_model
        ]
        assert [] == s2.recovery.running


# -- on_outcome: results that land while no adapter watches ------------------------------


async def _rerun_session(
    url: str, clock: FakeClock, gates: Gates
) -> tuple[callstate.Keeper, callstate.Keeper, callstate.Session]:
    """A read cut off in keeper ``a`` (attempt 1 never ends), resumed in keeper ``b``."""
    gates.gate[1] = asyncio.Event()  # the first attempt hangs: its worker is "dead"
    tools = _registry(gates)
    a = await callstate.Keeper(url, secret=SECRET, clock=clock, tools=tools).__aenter__()
    s = await a.start(caller=CALLER)
    gates.first = asyncio.ensure_future(s.run_tool("lookup", {"q": "x"}, call_id="c1"))
    await asyncio.wait_for(gates.started[1].wait(), timeout=10)
    b = await callstate.Keeper(url, secret=SECRET, clock=clock, tools=tools).__aenter__()
    return a, b, await b.resume(s.resume_token(), takeover=True)


async def test_a_rerun_landing_after_attach_reaches_on_outcome(url: str, clock: FakeClock) -> None:
    """A call the resume re-runs, landing after the adapter attached, is called back."""
    gates = Gates()
    gates.gate[2] = asyncio.Event()
    a, b, s2 = await _rerun_session(url, clock, gates)
    try:
        assert s2.recovery is not None
        assert ["c1"] == s2.recovery.running
        assert [] == s2.owed_to_model()
        got = Got()
        s2.on_outcome(got, owed=True)
        await asyncio.wait_for(gates.started[2].wait(), timeout=10)
        gates.gate[2].set()
        await got.first()
        assert [("c1", "succeeded", {"q": "x", "attempt": 2})] == [
            (o.call_id, o.status, o.result) for o in got
        ]
        assert ["c1"] == [o.call_id for o in s2.owed_to_model()]
    finally:
        gates.gate[1].set()
        await b.__aexit__(None, None, None)
        await a.__aexit__(None, None, None)


async def test_a_rerun_landing_before_attach_is_replayed_once(url: str, clock: FakeClock) -> None:
    """A re-run that ended before the adapter attached is replayed to it, once."""
    gates = Gates()
    a, b, s2 = await _rerun_session(url, clock, gates)
    try:
        await s2.run_tool("lookup", {"q": "x"}, call_id="c1")  # awaits the re-run
        assert s2.state.calls["c1"].terminal
        got, later = Got(), Got()
        s2.on_outcome(got, owed=True)
        s2.on_outcome(later)  # not replayed: only what lands from now on
        await got.first()
        await asyncio.sleep(0.05)
        assert [("c1", 2)] == [(o.call_id, o.attempt) for o in got]
        assert [] == later
    finally:
        gates.gate[1].set()
        await b.__aexit__(None, None, None)
        await a.__aexit__(None, None, None)


async def test_a_replayed_outcome_given_meanwhile_is_skipped(keeper: callstate.Keeper) -> None:
    """An owed outcome given before its replay runs is not replayed."""
    s = await keeper.start(caller=CALLER)
    await s.run_tool("lookup", {"q": "x"}, call_id="c1")
    got = Got()
    s.on_outcome(got, owed=True)
    s.given_to_model("c1")
    await asyncio.sleep(0.05)
    assert [] == got


async def test_a_late_outcome_from_a_handoff_source_reaches_on_outcome(
    url: str, clock: FakeClock
) -> None:
    """A call still running in a handoff's source lands in the target and is called back."""
    gates = Gates()
    gates.gate[1] = asyncio.Event()
    async with callstate.Keeper(url, secret=SECRET, clock=clock, tools=_registry(gates)) as k:
        s = await k.start(caller=CALLER, agent="triage")
        run = asyncio.ensure_future(s.run_tool("lookup", {"q": "x"}, call_id="c1"))
        await asyncio.wait_for(gates.started[1].wait(), timeout=10)
        target = await k.accept(await s.handoff(to="billing"))
        assert target.recovery is not None
        assert ["c1"] == target.recovery.running
        got = Got()
        target.on_outcome(got, owed=True)
        gates.gate[1].set()
        await run
        await got.first()
        assert [("c1", "succeeded")] == [(o.call_id, o.status) for o in got]
        assert ["c1"] == [o.call_id for o in target.owed_to_model()]


async def test_an_async_callback_runs_and_a_failing_one_is_isolated(
    keeper: callstate.Keeper, caplog: pytest.LogCaptureFixture
) -> None:
    """An awaitable returned by a callback runs; a raising callback is logged, not raised."""
    s = await keeper.start(caller=CALLER)
    got: list[str] = []
    done = asyncio.Event()

    def broken(_o: ToolOutcome) -> None:
        raise RuntimeError("boom")

    async def deliver(o: ToolOutcome) -> None:
        await asyncio.sleep(0)
        got.append(o.call_id)
        s.given_to_model(o.call_id)
        done.set()

    s.on_outcome(broken)
    unsubscribe = s.on_outcome(deliver)
    await s.run_tool("lookup", {"q": "x"}, call_id="c1")
    await asyncio.wait_for(done.wait(), timeout=10)
    unsubscribe()
    await s.run_tool("lookup", {"q": "y"}, call_id="c2")
    await asyncio.sleep(0.05)
    assert ["c1"] == got
    assert ["c2"] == [o.call_id for o in s.owed_to_model()]
    assert "on_outcome callback failed" in caplog.text


# -- the fenced signal ----------------------------------------------------------------------


async def test_a_fenced_session_says_so_once(url: str, clock: FakeClock) -> None:
    """A takeover by a second keeper fences the old handle: one session.fenced event,
    the ``fenced`` flag, and ``wait_fenced`` returning the StaleEpochError."""
    async with callstate.Keeper(url, secret=SECRET, clock=clock) as a:
        s = await a.start(caller=CALLER)
        await s.flush()
        waiter = asyncio.ensure_future(s.wait_fenced())
        async with callstate.Keeper(url, secret=SECRET, clock=clock) as b:
            await b.resume(s.resume_token(), takeover=True)
            assert s.fenced is False
            s.user_said("still here?")
            with pytest.raises(StaleEpochError):
                await s.flush()
            assert s.fenced is True
            assert isinstance(await asyncio.wait_for(waiter, timeout=10), StaleEpochError)
            with pytest.raises(StaleEpochError):
                s.user_said("again")
            with pytest.raises(StaleEpochError):
                await s.flush()
        assert 1 == a.observer.counts["session.fenced"]
