"""Outcomes said in a reply the LiveKit adapter asks for: a result held for the caller
when the session is restored, one landing on a quiet line; not while the caller speaks,
and once said, journaled as said (announced), never asked for again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from livekit.agents import AgentSession

from callstate import Keeper
from callstate.adapters.livekit import attach, restore
from callstate.testing import FakeClock

from .test_livekit_bargein import HELD, model_texts
from .test_livekit_harness import (
    BOOKING,
    SECRET,
    Booker,
    GatedOutput,
    Reply,
    ScriptedLLM,
    Tools,
    system_texts,
    until,
)
from .test_livekit_owed import landed, resumed_mid_call, run_restored

MOVE = Reply(["Sure, ", "I'm moving ", "it now."], [("c1", "move_booking", BOOKING)])


def told(seen: list[dict[str, Any]], call_id: str) -> list[str]:
    return [t for t in system_texts(seen) if f"(call {call_id})" in t]


async def test_a_result_held_before_a_resume_is_said_after_restore_and_announced(
    tmp_path: Path,
) -> None:
    """A write held since a barge-in when the worker died is said by the restored agent
    without a caller's turn, journaled announced, then never asked for again."""
    url = f"sqlite:///{tmp_path}/calls.db"
    clock = FakeClock()
    tools = Tools()
    first = Keeper(url, tools=tools.registry, secret=SECRET, clock=clock)
    second = Keeper(url, tools=tools.registry, secret=SECRET, clock=clock)
    async with first, second:
        s = await first.start(caller="+15551234567", agent="booker")
        lk1: AgentSession[Any] = AgentSession(llm=ScriptedLLM([MOVE]))
        lk1.output.transcription = GatedOutput()
        rec1 = attach(lk1, s, end_on_close=False)
        await lk1.start(Booker(tools))
        run = lk1.run(user_input="move my booking to eight")
        await until(lambda: tools.ran == ["move_booking"] and s.state.items[-1].kind == "call")
        done = lk1.interrupt()  # the caller talks over the agent while the write runs
        await until(lambda: s.state.calls["c1"].overtaken)
        tools.release["move_booking"].set()
        await done
        await run
        assert ("succeeded", "held") == (s.state.calls["c1"].status, s.state.calls["c1"].delivery)
        await s.flush()  # then the worker dies before the caller's turn ends
        clock.advance(20)
        r = await second.resume(s.id)
        model = ScriptedLLM([Reply(["Your booking is now at eight."]), Reply(["Bye."])])
        lk, agent, rec = await restore(r, {"booker": lambda: Booker(tools)}, llm=model)
        lk.output.transcription = GatedOutput()
        await lk.start(agent)
        await until(lambda: r.state.calls["c1"].delivery == "announced")  # nobody spoke
        assert 1 == len(model.seen)
        [note] = told(model.seen[0], "c1")
        assert "tell them now" in note
        assert '"moved":true' in note
        assert [] == [t for t in model_texts(model.seen[0]) if HELD in t]
        assert "Your booking is now at eight." == r.state.items[-1].text
        await lk.run(user_input="thanks")
        assert [] == told(model.seen[1], "c1")  # said once
        assert [] == [t for t in model_texts(model.seen[1]) if HELD in t]
        assert 1 == second.observer.counts["result.announced"]
        await r.flush()
        await lk.aclose()
        await rec.wait_idle()
        await lk1.aclose()
        await rec1.wait_idle()
        clock.advance(20)
        again = await first.resume(s.id)  # a later resume owes the caller nothing more
        assert again.recovery is not None
        assert [] == again.recovery.owed
        assert "Still owed" not in again.recovery.resume_note


async def test_a_reply_asked_for_a_landed_outcome_marks_it_announced(tmp_path: Path) -> None:
    """The reply asked for an outcome landing on a quiet line, once played, journals it
    announced; the next turns are not told it again."""
    async with resumed_mid_call(tmp_path) as r:
        replies = [Reply(["Still working on it."]), Reply(["It's moved to eight."])]
        lk, rec, model = await run_restored(r, lambda: Booker(r.tools), replies)
        await lk.run(user_input="hello?")
        await landed(r)
        await until(lambda: r.session.state.calls["c1"].delivery == "announced")
        assert 2 == len(model.seen)  # the asked-for reply told it
        assert 1 == len(told(model.seen[1], "c1"))
        assert "It's moved to eight." == r.session.state.items[-1].text
        await lk.run(user_input="great")
        assert [] == told(model.seen[2], "c1")
        assert [] == [t for t in model_texts(model.seen[2]) if HELD in t]
        await lk.aclose()
        await rec.wait_idle()


@asynccontextmanager
async def vad_speech(lk: AgentSession[Any]) -> AsyncIterator[None]:
    """The caller speaking, as LiveKit's VAD reports it (the recognition hooks)."""
    activity = lk._activity
    assert activity is not None
    activity.on_start_of_speech(None, time.time())
    try:
        yield
    finally:
        activity.on_end_of_speech(None)


@pytest.mark.parametrize("speaking", ["vad", "user turn"])
async def test_the_reply_for_a_landed_outcome_waits_while_the_caller_speaks(
    speaking: str,
) -> None:
    """An outcome landing while the caller speaks (VAD speech, or a user turn LiveKit
    holds open) is asked for only once they stop, then said once."""
    tools = Tools()
    async with Keeper("memory://", tools=tools.registry, secret=SECRET, clock=FakeClock()) as k:
        s = await k.start(agent="booker")
        model = ScriptedLLM([Reply(["Hello."]), Reply(["Monday is free."])])
        lk: AgentSession[Any] = AgentSession(llm=model)
        lk.output.transcription = GatedOutput()
        rec = attach(lk, s, end_on_close=False)
        await lk.start(Booker(tools))
        await lk.run(user_input="hi")
        turn: AbstractAsyncContextManager[None] = (
            vad_speech(lk) if speaking == "vad" else lk._claim_user_turn()
        )
        async with turn:
            assert "speaking" == lk.user_state
            tools.release["check_availability"].set()
            await s.run_tool("check_availability", {"date": "mon"}, call_id="mon")
            for _ in range(50):  # the loop runs the landing and whatever it schedules
                await asyncio.sleep(0.001)
            assert 1 == len(model.seen)  # not while the caller speaks
        await until(lambda: 2 == len(model.seen))
        assert 1 == len(told(model.seen[1], "mon"))
        await until(lambda: s.state.calls["mon"].delivery == "delivered")  # a read
        await lk.aclose()
        await rec.wait_idle()
