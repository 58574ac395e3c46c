"""A Pipecat pipeline hands off to a LiveKit AgentSession: each outcome reaches the target
model once, whether the source's model was still owed it or it lands after the accept."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from livekit.agents import AgentSession

from callstate import ConfigError, Keeper
from callstate.adapters.livekit import attach, restore, seed_agent
from callstate.adapters.pipecat import seed_context
from callstate.testing import FakeClock

from . import test_livekit_harness as lkh
from .test_pipecat_harness import Bot, Reply
from .test_pipecat_tools import BOOKING, Tools

SECRET = b"handoff-across-frameworks-key-01"


def outputs(seen: list[dict[str, Any]], call_id: str) -> list[dict[str, Any]]:
    return [
        json.loads(o["output"])
        for o in lkh.items_of(seen, "function_call_output")
        if o["call_id"] == call_id
    ]


def notes(seen: list[dict[str, Any]], call_id: str) -> list[str]:
    return [t for t in lkh.system_texts(seen) if f"(call {call_id})" in t]


async def _source(k: Keeper, tools: Tools) -> tuple[Any, asyncio.Task[Any]]:
    """A Pipecat call that ended for a transfer: ``w1`` finished after the pipeline
    stopped (owed to the model), ``w2`` still running (gated by ``tools``)."""
    s = await k.start(caller="+15551234567", agent="booker")
    tools.release["check_availability"].set()
    replies = [
        Reply("Let me check.", calls=[("r1", "check_availability", {"time": "20:00"})]),
        Reply("Eight is free."),
    ]
    async with Bot(s, replies) as bot:
        await bot.user.say("is eight free")
        await bot.until(lambda: len(bot.llm.seen) == 2)
        await bot.until(lambda: "r1" not in s.state.owed_to_model)
    tools.release["cancel_booking"].set()
    await s.run_tool("cancel_booking", {"booking_id": "B0"}, call_id="w1")
    s.user_said("and move B1 to eight please")
    w2 = asyncio.create_task(s.run_tool("move_booking", BOOKING, call_id="w2"))
    await lkh.until(lambda: "move_booking" in tools.ran)
    return s, w2


async def test_owed_and_running_writes_reach_the_livekit_model_once(tmp_path: Path) -> None:
    """Owed at the offer (even past max_items) and landing after the accept: each write's
    result is in the LiveKit model's context once, told once, and nothing stays owed."""
    url = f"sqlite:///{tmp_path}/calls.db"
    clock = FakeClock()
    pc_tools, lk_tools = Tools(), lkh.Tools()
    async with (
        Keeper(url, tools=pc_tools.registry, secret=SECRET, clock=clock) as a,
        Keeper(url, tools=lk_tools.registry, secret=SECRET, clock=clock) as b,
    ):
        s, w2 = await _source(a, pc_tools)
        assert ["w1"] == s.state.owed_to_model
        pkg = await s.handoff(to="billing", max_items=2)
        assert (["w1"], ["w2"]) == (pkg.owed_to_model, pkg.in_flight)
        t = await b.accept(pkg.to_bytes())
        model = lkh.ScriptedLLM(
            [lkh.Reply(["Cancelled, and moving it."]), lkh.Reply(["It's moved."])]
        )
        lk, agent, rec = await restore(t, {"billing": lambda: lkh.Booker(lk_tools)}, llm=model)
        lk.output.transcription = lkh.GatedOutput()
        await lk.start(agent)
        await lk.run(user_input="did you cancel it?")
        first = model.seen[0]
        assert (["succeeded"], [], ["running"]) == (
            [o["status"] for o in outputs(first, "w1")],
            notes(first, "w1"),
            [o["status"] for o in outputs(first, "w2")],
        )
        pc_tools.release["move_booking"].set()
        await w2
        await b.collect_late_results()
        await lkh.until(lambda: [] == t.owed_to_model())
        await lk.run(user_input="and the move?")
        await lk.run(user_input="thanks")
        second, third = model.seen[1], model.seen[2]
        assert (["succeeded"], ["succeeded"], 1, 0, 0) == (
            [o["status"] for o in outputs(second, "w1")],
            [o["status"] for o in outputs(second, "w2")],
            len(notes(second, "w2")),
            len(notes(second, "w1")),
            len(notes(third, "w2")),
        )
        await lk.aclose()
        await rec.wait_idle()


async def test_seeding_from_the_package_records_its_outcomes_as_given(tmp_path: Path) -> None:
    """An agent seeded from the package itself, for the accepted session, is not told the
    owed write again on attach; the write landing after the accept still is."""
    url = f"sqlite:///{tmp_path}/calls.db"
    clock = FakeClock()
    pc_tools, lk_tools = Tools(), lkh.Tools()
    async with (
        Keeper(url, tools=pc_tools.registry, secret=SECRET, clock=clock) as a,
        Keeper(url, tools=lk_tools.registry, secret=SECRET, clock=clock) as b,
    ):
        s, w2 = await _source(a, pc_tools)
        pkg = await s.handoff(to="billing")
        t = await b.accept(pkg.to_bytes())
        agent = await seed_agent(lkh.Booker(lk_tools), pkg, session=t)
        assert [] == t.owed_to_model()  # w1 is in the seeded context
        model = lkh.ScriptedLLM([lkh.Reply(["Done."]), lkh.Reply(["Moved."])])
        lk: AgentSession[Any] = AgentSession(llm=model)
        lk.output.transcription = lkh.GatedOutput()
        rec = attach(lk, t)
        await lk.start(agent)
        pc_tools.release["move_booking"].set()
        await w2
        await b.collect_late_results()
        await lkh.until(lambda: [] == t.owed_to_model())
        await lk.run(user_input="so?")
        seen = model.seen[0]
        assert ([], 1, ["succeeded"]) == (
            notes(seen, "w1"),
            len(notes(seen, "w2")),
            [o["status"] for o in outputs(seen, "w2")],
        )
        await lk.aclose()
        await rec.wait_idle()


async def test_a_pipecat_context_seeded_from_the_package_holds_the_owed_write_as_given(
    tmp_path: Path,
) -> None:
    """seed_context(pkg, session=t) puts the owed write in the context and records it
    given; the package of another session is refused, naming both."""
    url = f"sqlite:///{tmp_path}/calls.db"
    clock = FakeClock()
    tools = Tools()
    async with (
        Keeper(url, tools=tools.registry, secret=SECRET, clock=clock) as a,
        Keeper(url, tools=tools.registry, secret=SECRET, clock=clock) as b,
    ):
        s, w2 = await _source(a, tools)
        pkg = await s.handoff(to="billing")
        t = await b.accept(pkg.to_bytes())
        other = await b.start(agent="billing")
        with pytest.raises(ConfigError, match=repr(other.id)):
            seed_context(None, pkg, session=other)
        assert ["w1"] == [o.call_id for o in t.owed_to_model()]
        ctx = seed_context(None, pkg, session=t)
        [w1] = [m for m in ctx.get_messages() if m.get("tool_call_id") == "w1"]
        assert '"status":"succeeded"' in str(w1["content"])
        assert [] == t.owed_to_model()
        tools.release["move_booking"].set()
        await w2
