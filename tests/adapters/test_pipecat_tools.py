"""Tool calls in a live Pipecat pipeline: a barge-in never loses a result."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from callstate import Keeper, ToolRegistry
from callstate.testing import FakeClock

from .test_pipecat_harness import Bot, Reply

BOOKING = {"booking_id": "B1", "time": "20:00"}


class Tools:
    """A registry whose tools wait for the test to let them finish, and say when they run."""

    def __init__(self) -> None:
        self.registry = ToolRegistry()
        self.ran: list[str] = []
        self.release = {
            "move_booking": asyncio.Event(),
            "cancel_booking": asyncio.Event(),
            "check_availability": asyncio.Event(),
        }
        reg = self.registry

        @reg.tool(effect="read")
        async def check_availability(time: str) -> dict[str, Any]:
            self.ran.append("check_availability")
            await self.release["check_availability"].wait()
            return {"time": time, "available": True}

        @reg.tool(effect="write", idempotent=True)
        async def move_booking(booking_id: str, time: str) -> dict[str, Any]:
            self.ran.append("move_booking")
            await self.release["move_booking"].wait()
            return {"booking_id": booking_id, "time": time, "moved": True}

        @reg.tool(effect="write")
        async def cancel_booking(booking_id: str) -> dict[str, Any]:
            self.ran.append("cancel_booking")
            await self.release["cancel_booking"].wait()
            return {"booking_id": booking_id, "cancelled": True}


def tool_messages(messages: list[Any], call_id: str) -> list[Any]:
    return [m for m in messages if m.get("role") == "tool" and m.get("tool_call_id") == call_id]


def contents(messages: list[Any]) -> list[str]:
    return [m["content"] for m in messages if isinstance(m.get("content"), str)]


def placeholders(messages: list[Any]) -> list[str]:
    """Pipecat's stand-ins for a missing result, wherever they appear in the messages."""
    return [c for c in contents(messages) if "CANCELLED" in c or c == "IN_PROGRESS"]


def placeholder(bot: Bot, call_id: str) -> bool:
    """True once Pipecat's aggregator wrote the call's IN_PROGRESS placeholder."""
    return [{"IN_PROGRESS"}] == [
        {m["content"]} for m in tool_messages(bot.context.messages, call_id)
    ]


def settled(bot: Bot, call_id: str) -> bool:
    """True once the call's tool message holds something other than the placeholder."""
    return any(m["content"] != "IN_PROGRESS" for m in tool_messages(bot.context.messages, call_id))


@pytest.mark.parametrize("processor_after_output", [False, True])
async def test_barge_in_during_a_sync_function_keeps_its_result(
    processor_after_output: bool,
) -> None:
    """A sync call cut off by a barge-in finishes and its result replaces the placeholder."""
    tools = Tools()
    async with Keeper("memory://", tools=tools.registry, clock=FakeClock()) as keeper:
        s = await keeper.start()
        replies = [
            Reply("Sure, one moment.", calls=[("c1", "move_booking", BOOKING)]),
            Reply("Yes, still for two, and it is moved to eight."),
        ]
        async with Bot(s, replies, processor_after_output=processor_after_output) as bot:
            await bot.user.say("move my booking to eight")
            await bot.until(lambda: tools.ran == ["move_booking"] and placeholder(bot, "c1"))
            await bot.user.start_speaking()  # the caller talks over the running call
            await bot.until(lambda: s.state.calls["c1"].overtaken)
            tools.release["move_booking"].set()
            await bot.until(lambda: s.state.calls["c1"].delivery == "held" and settled(bot, "c1"))
            await bot.user.finish("is it still for two?")
            await bot.until(lambda: len(bot.llm.seen) == 2)
            final = bot.context.messages
            assistant = bot.aggregators.assistant()
            await bot.until(lambda: not assistant.has_function_calls_in_progress)
    call = s.state.calls["c1"]
    assert "succeeded" == call.status
    assert "announced" == call.delivery
    assert ["move_booking"] == tools.ran  # ran once, never re-run
    result = {"booking_id": "B1", "time": "20:00", "moved": True}
    assert [json.dumps(result)] == [m["content"] for m in tool_messages(final, "c1")]
    assert [] == placeholders(final)
    seen = bot.llm.seen[1]  # what the model got for the caller's new turn
    assert [json.dumps(result)] == [m["content"] for m in tool_messages(seen, "c1")]
    notes = [m["content"] for m in seen if m["role"] == "system" and "c1" in m["content"]]
    assert 1 == len(notes)
    assert "Tell them now what was done" in notes[0]


async def test_barge_in_before_the_call_reaches_the_context_leaves_no_orphan() -> None:
    """A barge-in while the call's in-progress frame waits behind speech leaves no open call."""
    tools = Tools()
    async with Keeper("memory://", tools=tools.registry, clock=FakeClock()) as keeper:
        s = await keeper.start()
        replies = [Reply("Sure, one moment.", calls=[("c1", "move_booking", BOOKING)])]
        async with Bot(s, replies) as bot:
            bot.playback.pause_after(0)  # "one moment" is still waiting to play
            await bot.user.say("move my booking to eight")
            await bot.until(lambda: tools.ran == ["move_booking"])
            await bot.user.start_speaking()
            await bot.until(lambda: s.state.calls["c1"].overtaken)
            bot.playback.resume()
            tools.release["move_booking"].set()
            assistant = bot.aggregators.assistant()
            await bot.until(
                lambda: settled(bot, "c1") and not assistant.has_function_calls_in_progress
            )
            final = bot.context.messages
    assert '"moved": true' in tool_messages(final, "c1")[0]["content"]
    assert [] == placeholders(final)
    said = next(i for i in s.state.items if i.kind == "assistant")
    assert ("", "Sure, one moment.") == (said.text, said.unspoken)  # nothing of it played


async def test_result_landing_after_the_new_turn_runs_the_model_to_announce_it() -> None:
    """A result that lands after the caller's new turn is written and announced at once."""
    tools = Tools()
    async with Keeper("memory://", tools=tools.registry, clock=FakeClock()) as keeper:
        s = await keeper.start()
        replies = [
            Reply("One moment.", calls=[("c1", "move_booking", BOOKING)]),
            Reply("Still working on it."),
            Reply("Done: your booking is at eight."),
        ]
        async with Bot(s, replies) as bot:
            await bot.user.say("move my booking to eight")
            await bot.until(lambda: tools.ran == ["move_booking"])
            await bot.user.say("hello?")
            await bot.until(lambda: len(bot.llm.seen) == 2)
            tools.release["move_booking"].set()
            await bot.until(lambda: len(bot.llm.seen) == 3)
    assert "announced" == s.state.calls["c1"].delivery
    seen = bot.llm.seen[2]
    assert '"moved": true' in tool_messages(seen, "c1")[0]["content"]
    assert any(m["role"] == "system" and "c1" in m["content"] for m in seen)
    assert "Done: your booking is at eight." == s.context()[-1]["content"]


async def test_barge_in_during_an_async_function_keeps_its_result() -> None:
    """An async call (cancel_on_interruption=False) overtaken by a barge-in is held, then announced."""
    tools = Tools()
    async with Keeper("memory://", tools=tools.registry, clock=FakeClock()) as keeper:
        s = await keeper.start()
        replies = [
            Reply("I'll move it.", calls=[("c1", "move_booking", BOOKING)]),
            Reply("While that runs: anything else?"),
            Reply("And it is done."),
        ]
        async with Bot(s, replies, async_functions=["move_booking"]) as bot:
            await bot.user.say("move my booking to eight")
            await bot.until(lambda: tools.ran == ["move_booking"])
            await bot.user.start_speaking()
            await bot.until(lambda: s.state.calls["c1"].overtaken)
            tools.release["move_booking"].set()
            await bot.until(lambda: s.state.calls["c1"].delivery == "held")
            seen_before = len(bot.llm.seen)
            await bot.user.finish("also, is there parking?")
            await bot.until(lambda: len(bot.llm.seen) > seen_before)
            final = bot.context.messages
    call = s.state.calls["c1"]
    assert ("succeeded", "announced") == (call.status, call.delivery)
    assert ["move_booking"] == tools.ran
    assert any('\\"moved\\": true' in c or '"moved": true' in c for c in contents(final))
    assert [] == placeholders(final)
    last = bot.llm.seen[-1]
    assert any(m["role"] == "system" and "c1" in m["content"] for m in last)


async def test_queued_write_of_an_interrupted_generation_never_runs() -> None:
    """With run_in_parallel=False, a write queued behind a barge-in is settled, not run."""
    tools = Tools()
    async with Keeper("memory://", tools=tools.registry, clock=FakeClock()) as keeper:
        s = await keeper.start()
        replies = [
            Reply(
                "Moving it and cancelling the old one.",
                calls=[
                    ("c1", "move_booking", BOOKING),
                    ("c2", "cancel_booking", {"booking_id": "B0"}),
                ],
            ),
            Reply("Okay, I kept the old booking."),
        ]
        async with Bot(s, replies, run_in_parallel=False) as bot:
            await bot.user.say("move it, and cancel the other one")
            await bot.until(lambda: tools.ran == ["move_booking"])
            await bot.user.start_speaking()
            await bot.until(lambda: "c2" in s.state.calls and s.state.calls["c2"].terminal)
            tools.release["move_booking"].set()
            await bot.user.finish("no wait, keep the old one")
            await bot.until(lambda: len(bot.llm.seen) == 2)
            assistant = bot.aggregators.assistant()
            await bot.until(lambda: not assistant.has_function_calls_in_progress)
            final = bot.context.messages
    assert ["move_booking"] == tools.ran  # cancel_booking never ran
    c2 = s.state.calls["c2"]
    assert "cancelled" == c2.status
    assert [json.dumps({"status": "cancelled", "error": c2.error})] == [
        m["content"] for m in tool_messages(final, "c2")
    ]
    assert "succeeded" == s.state.calls["c1"].status
    assert [] == placeholders(final)


@pytest.mark.parametrize(
    ("new_turn", "decision", "note"),
    [
        ("okay, go on", "delivered", "give it to them now"),
        ("actually, do you have parking?", "discarded", "do not bring up its result"),
    ],
)
async def test_a_read_overtaken_by_a_barge_in_is_voiced_as_the_reconciler_decides(
    new_turn: str, decision: str, note: str
) -> None:
    """A held read is delivered after a backchannel and dropped after a new question."""
    tools = Tools()
    async with Keeper("memory://", tools=tools.registry, clock=FakeClock()) as keeper:
        s = await keeper.start()
        replies = [
            Reply("Let me check.", calls=[("c1", "check_availability", {"time": "20:00"})]),
            Reply("Right."),
        ]
        async with Bot(s, replies) as bot:
            await bot.user.say("is eight free?")
            await bot.until(lambda: tools.ran == ["check_availability"] and placeholder(bot, "c1"))
            await bot.user.start_speaking()
            await bot.until(lambda: s.state.calls["c1"].overtaken)
            tools.release["check_availability"].set()
            await bot.until(lambda: s.state.calls["c1"].delivery == "held" and settled(bot, "c1"))
            await bot.user.finish(new_turn)
            await bot.until(lambda: len(bot.llm.seen) == 2)
    assert decision == s.state.calls["c1"].delivery
    seen = bot.llm.seen[1]
    assert '"available": true' in tool_messages(seen, "c1")[0]["content"]  # the model knows
    notes = [m["content"] for m in seen if m["role"] == "system" and "(call c1)" in m["content"]]
    assert 1 == len(notes)
    assert note in notes[0]
