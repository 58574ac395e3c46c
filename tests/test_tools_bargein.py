"""Barge-in during tool calls: truncation, overtaken calls, held results, reconciliation."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import callstate
from callstate.observe.recovery import RecoveryEvent
from callstate.testing import FakeClock


class Rig:
    """A keeper on a real SQLite file, its registry, and the recovery events it emitted."""

    def __init__(self, keeper: callstate.Keeper, tools: callstate.ToolRegistry) -> None:
        self.keeper = keeper
        self.tools = tools
        self.events: list[RecoveryEvent] = []
        keeper.observer.sinks.append(self.events.append)

    async def kinds(self) -> list[str]:
        await self.keeper.observer.drain()
        return [e.kind for e in self.events]


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    """A running keeper with an empty registry."""
    tools = callstate.ToolRegistry()
    keeper = callstate.Keeper(f"sqlite:///{tmp_path}/cs.db", tools=tools, clock=FakeClock())
    async with keeper:
        yield Rig(keeper, tools)


def _tool_result(s: callstate.Session, call_id: str) -> dict[str, Any]:
    [m] = [m for m in s.context() if m.get("tool_call_id") == call_id]
    result: dict[str, Any] = json.loads(m["content"])
    return result


async def test_interrupt_truncates_to_what_was_heard(rig: Rig) -> None:
    """The utterance becomes what the caller heard; the rest is kept as unspoken."""
    s = await rig.keeper.start()
    s.user_said("Can I move my booking?")
    u = s.agent_started("Sure, I can move it to eight or nine tonight.")
    s.agent_progress(u, spoken_text="Sure, I can move it")
    assert [] == s.interrupt(audio_end_ms=900)  # heard defaults to the last progress
    assert "to eight or nine tonight." == s.state.unspoken
    assert {"role": "assistant", "content": "Sure, I can move it"} == s.context()[-1]
    await s.flush()
    stored = await rig.keeper.load(s.id)
    assert ("Sure, I can move it", "to eight or nine tonight.") == (
        stored.items[-1].text,
        stored.items[-1].unspoken,
    )


async def test_interrupt_marks_in_flight_calls_overtaken(rig: Rig) -> None:
    """Calls running at the barge-in are overtaken; a read that may be cancelled is cancelled."""
    gate = asyncio.Event()
    entered = asyncio.Semaphore(0)

    @rig.tools.tool(effect="write")
    async def move(to: str) -> str:
        entered.release()
        await gate.wait()
        return to

    @rig.tools.tool(on_interrupt="cancel")
    async def search(q: str) -> str:
        entered.release()
        await gate.wait()
        return q

    s = await rig.keeper.start()
    w = asyncio.create_task(s.run_tool("move", {"to": "20:00"}, call_id="w1"))
    r = asyncio.create_task(s.run_tool("search", {"q": "slots"}, call_id="r1"))
    await entered.acquire()
    await entered.acquire()
    assert ["w1", "r1"] == s.interrupt(heard_text="")
    read = await r
    gate.set()
    write = await w
    assert ("cancelled", "interrupted", True) == (read.status, read.error, read.overtaken)
    assert ("succeeded", True) == (write.status, write.overtaken)
    assert "tool.cancelled" in await rig.kinds()


async def test_a_write_from_an_interrupted_generation_is_not_run(rig: Rig) -> None:
    """The hallucinated end_call: its generation was cut off before the call started."""
    hung_up: list[str] = []

    @rig.tools.tool(effect="write")
    async def end_call(reason: str) -> None:
        hung_up.append(reason)

    @rig.tools.tool
    async def lookup() -> str:
        return "found"

    s = await rig.keeper.start()
    s.user_said("Hold on, one more thing")
    u = s.agent_started("Great, have a nice day! Goodbye.")
    s.interrupt(heard_text="Great,")
    out = await s.run_tool("end_call", {"reason": "done"}, call_id="c1", utterance_id=u)
    read = await s.run_tool("lookup", {}, call_id="c2", utterance_id=u)
    assert [] == hung_up
    assert ("cancelled", "generation interrupted") == (out.status, out.error)
    assert "succeeded" == read.status  # a read that completes through barge-ins still runs
    await s.flush()
    assert "cancelled" == (await rig.keeper.load(s.id)).calls["c1"].status
    assert "tool.cancelled" in await rig.kinds()


async def test_the_generation_defaults_to_the_utterance_since_the_caller_spoke(
    rig: Rig,
) -> None:
    """Without utterance_id, a call belongs to the latest utterance after the last user turn."""
    ran: list[int] = []

    @rig.tools.tool(effect="write")
    async def end_call() -> None:
        ran.append(1)

    s = await rig.keeper.start()
    u = s.agent_started("Goodbye!")
    s.interrupt(heard_text="Good")
    cut = await s.run_tool("end_call", call_id="c1")
    s.user_said("Yes, please hang up")
    fresh = await s.run_tool("end_call", call_id="c2")
    assert (u, None) == (s.state.calls["c1"].utterance_id, s.state.calls["c2"].utterance_id)
    assert ("cancelled", "succeeded", [1]) == (cut.status, fresh.status, ran)


async def test_a_write_landing_after_a_barge_in_is_held_then_announced(rig: Rig) -> None:
    """The result is in the context at once, owed until the turn ends, then announced."""
    gate, entered = asyncio.Event(), asyncio.Event()

    @rig.tools.tool(effect="write")
    async def move_booking(booking_id: str, time: str) -> dict[str, str]:
        entered.set()
        await gate.wait()
        return {"booking_id": booking_id, "time": time}

    s = await rig.keeper.start()
    s.user_said("Move my booking to eight")
    u = s.agent_started("Sure, moving it now, this takes a moment.")
    task = asyncio.create_task(
        s.run_tool("move_booking", {"booking_id": "B1", "time": "20:00"}, call_id="c1")
    )
    await entered.wait()
    s.interrupt(heard_text="Sure,", utterance_id=u)
    gate.set()
    out = await task
    assert ("succeeded", "held", True) == (out.status, out.delivery, out.overtaken)
    assert ["c1"] == [c.call_id for c in s.state.owed]
    result = _tool_result(s, "c1")
    assert ("succeeded", "held") == (result["status"], result["delivery"])
    s.user_said("Actually, what's the weather like?")
    assert ([], "announced") == (s.state.owed, s.state.calls["c1"].delivery)
    assert "announced" == _tool_result(s, "c1")["delivery"]
    kinds = await rig.kinds()
    assert ["result.held", "result.announced", "interrupt.reconciled"] == [
        k for k in kinds if k.startswith(("result.", "interrupt."))
    ]
    await s.flush()
    assert "announced" == (await rig.keeper.load(s.id)).calls["c1"].delivery


@pytest.mark.parametrize(
    ("turn", "decision"),
    [("okay, go on", "delivered"), ("And can I bring my dog?", "discarded")],
)
async def test_a_held_read_is_delivered_or_discarded_by_the_new_turn(
    rig: Rig, turn: str, decision: str
) -> None:
    """A read still wanted is delivered; one the caller moved past is discarded."""
    gate, entered = asyncio.Event(), asyncio.Event()

    @rig.tools.tool
    async def opening_hours() -> str:
        entered.set()
        await gate.wait()
        return "9 to 5"

    s = await rig.keeper.start()
    task = asyncio.create_task(s.run_tool("opening_hours", call_id="c1"))
    await entered.wait()
    s.interrupt()
    gate.set()
    assert "held" == (await task).delivery
    s.user_said(turn)
    assert decision == s.state.calls["c1"].delivery
    assert f"result.{decision}" in await rig.kinds()


async def test_a_result_landing_after_the_turn_ended_is_decided_at_once(rig: Rig) -> None:
    """If the caller already finished a turn since the barge-in, the held result is decided on landing."""
    gate, entered = asyncio.Event(), asyncio.Event()

    @rig.tools.tool(effect="write")
    async def cancel_order() -> str:
        entered.set()
        await gate.wait()
        return "cancelled"

    s = await rig.keeper.start()
    task = asyncio.create_task(s.run_tool("cancel_order", call_id="c1"))
    await entered.wait()
    s.interrupt()
    s.user_said("hello? are you there?")
    gate.set()
    assert "announced" == (await task).delivery


async def test_contradict_compensates_a_write_once(rig: Rig) -> None:
    """A contradicted write is undone through the guard, once; its delivery is compensated."""
    undone: list[tuple[str, Any]] = []

    @rig.tools.tool(effect="write", compensate="restore_booking")
    async def move_booking(booking_id: str, time: str) -> dict[str, str]:
        return {"booking_id": booking_id, "old_time": "19:00"}

    @rig.tools.tool(effect="write", idempotent=True)
    async def restore_booking(booking_id: str, time: str, *, ctx: callstate.ToolContext) -> str:
        assert ctx.compensates is not None
        undone.append((booking_id, ctx.compensates.result))
        return "restored"

    s = await rig.keeper.start()
    await s.run_tool("move_booking", {"booking_id": "B1", "time": "20:00"}, call_id="c1")
    s.interrupt()
    s.user_said("No! Don't move it!")
    first = await s.contradict("c1", reason="caller said no")
    again = await s.contradict("c1")
    assert [("B1", {"booking_id": "B1", "old_time": "19:00"})] == undone
    assert ("c1~undo", "succeeded", True) == (first.call_id, first.status, again.deduplicated)
    assert "compensated" == s.state.calls["c1"].delivery
    assert "compensated" == _tool_result(s, "c1")["delivery"]
    assert "result.compensated" in await rig.kinds()


async def test_contradict_refuses_what_cannot_be_undone(rig: Rig) -> None:
    """Reads, writes without a compensate tool, failed writes and unknown calls raise ToolError."""

    @rig.tools.tool
    async def read() -> int:
        return 1

    @rig.tools.tool(effect="write")
    async def plain_write() -> int:
        return 1

    @rig.tools.tool(effect="write", compensate="undo")
    async def failing_write() -> int:
        raise RuntimeError("no")

    @rig.tools.tool(effect="write")
    async def undo() -> None:
        return None

    s = await rig.keeper.start()
    await s.run_tool("read", call_id="r")
    await s.run_tool("plain_write", call_id="w")
    await s.run_tool("failing_write", call_id="f")
    for call_id, needle in [
        ("r", "is a read"),
        ("w", "no compensate tool"),
        ("f", "ended 'failed'"),
        ("zz", "no call 'zz'"),
    ]:
        with pytest.raises(callstate.ToolError, match=needle):
            await s.contradict(call_id)


async def test_a_result_outliving_its_handle_lands_on_the_new_one(rig: Rig) -> None:
    """Taken over while a write runs: it is not re-run; its outcome lands, held, on the new handle."""
    gate, entered = asyncio.Event(), asyncio.Event()
    runs: list[int] = []

    @rig.tools.tool(effect="write")
    async def charge() -> str:
        runs.append(1)
        entered.set()
        await gate.wait()
        return "charged"

    s = await rig.keeper.start()
    task = asyncio.create_task(s.run_tool("charge", call_id="c1"))
    await entered.wait()
    s2 = await rig.keeper.resume(s.id)
    assert [] == s2.in_doubt  # still running in this process: not in doubt
    gate.set()
    out = await task
    assert ("succeeded", [1]) == (out.status, runs)
    assert ("succeeded", "held") == (s2.state.calls["c1"].status, s2.state.calls["c1"].delivery)
    await s2.flush()
    assert "succeeded" == (await rig.keeper.load(s.id)).calls["c1"].status


def _count_walks(monkeypatch: pytest.MonkeyPatch, name: str) -> list[int]:
    """Count each evaluation of ``SessionState.<name>`` (a walk over every call): the
    returned list gets the number of calls walked, once per look."""
    from callstate.journal.session_state import SessionState

    looks: list[int] = []
    walk = getattr(SessionState, name)

    def counted(state: SessionState) -> Any:
        looks.append(len(state.calls))
        return walk.fget(state)

    monkeypatch.setattr(SessionState, name, property(counted))
    return looks


async def _long_call(
    rig: Rig, calls: int
) -> tuple[callstate.Session, asyncio.Event, asyncio.Event]:
    """A session with ``calls`` settled read calls, and the gate (with its "entered"
    signal) that holds a later call of a negative ``day`` in flight."""
    gate, entered = asyncio.Event(), asyncio.Event()

    @rig.tools.tool
    async def opening_hours(day: int) -> str:
        if day < 0:
            entered.set()
            await gate.wait()
        return "9 to 5"

    s = await rig.keeper.start()
    for day in range(calls):
        await s.run_tool("opening_hours", {"day": day}, call_id=f"c{day}")
    return s, gate, entered


async def test_a_turn_of_a_long_call_walks_its_calls_only_while_something_is_held(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With 60 settled calls and nothing held, caller turns stop looking for held
    results after one look; a result held after a later barge-in is still found and
    delivered at the caller's next turn."""
    looks = _count_walks(monkeypatch, "owed")
    s, gate, entered = await _long_call(rig, 60)
    for turn in range(20):
        s.user_said(f"turn {turn}")
    assert [60] == looks  # one look finds nothing held; the next 19 turns skip it
    task = asyncio.create_task(s.run_tool("opening_hours", {"day": -1}, call_id="late"))
    await entered.wait()
    s.interrupt()
    gate.set()
    assert "held" == (await task).delivery
    s.user_said("okay, go on")
    assert "delivered" == s.state.calls["late"].delivery
    s.user_said("thanks")
    s.user_said("bye")
    assert 3 == len(looks)  # the held one's turn, then one look that finds none
    await s.close()


async def test_a_barge_in_of_a_long_call_walks_its_calls_only_while_one_may_run(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With 60 settled calls, barge-ins stop looking for calls to overtake after one
    look; a call started later is still found and overtaken by the next barge-in."""
    looks = _count_walks(monkeypatch, "in_flight")
    s, gate, entered = await _long_call(rig, 60)
    looks.clear()
    for turn in range(10):
        s.agent_started(f"Here is answer {turn}, which goes on for a while.")
        assert [] == s.interrupt(heard_text="Here is")
    assert [60] == looks  # one look finds every call settled; the next 9 skip it
    task = asyncio.create_task(s.run_tool("opening_hours", {"day": -1}, call_id="late"))
    await entered.wait()
    s.agent_started("One moment while I check.")
    assert ["late"] == s.interrupt(heard_text="One")
    gate.set()
    assert (await task).overtaken
    await s.close()
