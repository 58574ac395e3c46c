"""Function calls the model gets wrong, through a live Pipecat pipeline."""

from __future__ import annotations

import json
from typing import Any

from callstate import Keeper
from callstate.testing import FakeClock

from .test_pipecat_harness import Bot, Reply
from .test_pipecat_tools import Tools, tool_messages


def failure(bot: Bot, call_id: str) -> dict[str, Any]:
    """The failure Pipecat's context holds for ``call_id`` (empty until it lands)."""
    for m in tool_messages(bot.context.messages, call_id):
        content = m["content"]
        if content != "IN_PROGRESS":
            value: dict[str, Any] = json.loads(content)
            return value
    return {}


async def test_unknown_names_and_non_object_arguments_are_journaled_failed() -> None:
    """A name nobody registered, ``null`` and a list for arguments: failed calls, journaled."""
    tools = Tools()
    async with Keeper("memory://", tools=tools.registry, clock=FakeClock()) as keeper:
        s = await keeper.start()
        calls: list[tuple[str, str, Any]] = [
            ("c1", "teleport", {"to": "mars"}),
            ("c2", "move_booking", None),
            ("c3", "check_availability", ["20:00"]),
        ]
        async with Bot(s, [Reply("One moment.", calls=calls), Reply("Sorry.")]) as bot:
            await bot.user.say("move my booking")
            await bot.until(lambda: all(failure(bot, c) for c in ("c1", "c2", "c3")))
            got = {c: failure(bot, c) for c in ("c1", "c2", "c3")}
        await s.flush()
        stored = (await keeper.load(s.id)).calls
    assert [] == tools.ran
    assert {"c1": "UnknownTool", "c2": "ToolArgumentsError", "c3": "ToolArgumentsError"} == {
        cid: stored[cid].error_type for cid in ("c1", "c2", "c3")
    }
    assert (
        {"failed"}
        == {stored[c].status for c in ("c1", "c2", "c3")}
        == {g["status"] for g in got.values()}
    )
    assert "no tool named 'teleport'" in (stored["c1"].error or "")
    assert "must be a JSON object, got null" in (stored["c2"].error or "")
    assert "must be a JSON object, got an array" in (stored["c3"].error or "")
    assert stored["c2"].error == got["c2"]["error"]
    assert ["c1", "c2", "c3"] == [m["tool_call_id"] for m in s.context() if m["role"] == "tool"]


async def test_a_reused_call_id_runs_and_is_answered_with_its_own_result() -> None:
    """``c1`` sent again with another time runs again; Pipecat gets the new result, not the old."""
    tools = Tools()
    tools.release["check_availability"].set()
    async with Keeper("memory://", tools=tools.registry, clock=FakeClock()) as keeper:
        s = await keeper.start()
        replies = [
            Reply("Checking.", calls=[("c1", "check_availability", {"time": "19:00"})]),
            Reply("Seven is free."),
            Reply("Checking.", calls=[("c1", "check_availability", {"time": "21:00"})]),
            Reply("Nine is free."),
        ]
        async with Bot(s, replies) as bot:
            await bot.user.say("is seven free")
            await bot.until(lambda: len(bot.llm.seen) == 2)
            await bot.user.say("and nine?")
            await bot.until(lambda: len(bot.llm.seen) == 4)
            results = [json.loads(m["content"]) for m in tool_messages(bot.llm.seen[3], "c1")]
    assert ["check_availability", "check_availability"] == tools.ran
    assert "21:00" == results[-1]["time"]  # Pipecat keys its tool messages by id alone
    journaled = {
        m["tool_call_id"]: json.loads(m["content"])["result"]["time"]
        for m in s.context()
        if m["role"] == "tool"
    }
    assert {"c1": "19:00", "c1#2": "21:00"} == journaled
    assert "c1" == s.state.calls["c1#2"].wire_id


async def test_a_reused_call_id_with_the_same_arguments_is_answered_again() -> None:
    """``c1`` asked again with the same time in a new turn: not run again, Pipecat still answered."""
    tools = Tools()
    tools.release["check_availability"].set()
    async with Keeper("memory://", tools=tools.registry, clock=FakeClock()) as keeper:
        s = await keeper.start()
        replies = [
            Reply("Checking.", calls=[("c1", "check_availability", {"time": "19:00"})]),
            Reply("Seven is free."),
            Reply("Checking again.", calls=[("c1", "check_availability", {"time": "19:00"})]),
            Reply("Still free."),
        ]
        async with Bot(s, replies) as bot:
            await bot.user.say("is seven free")
            await bot.until(lambda: len(bot.llm.seen) == 2)
            await bot.user.say("sure about seven?")
            await bot.until(lambda: len(bot.llm.seen) == 4)
            answers = [m["content"] for m in tool_messages(bot.llm.seen[3], "c1")]
    assert ["check_availability"] == tools.ran
    assert [{"time": "19:00", "available": True}] * 2 == [json.loads(a) for a in answers]
    assert "Still free." == s.context()[-1]["content"]
