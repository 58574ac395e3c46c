"""The OpenAI Agents SDK adapter through the real ``RealtimeSession`` and the loopback server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from agents import function_tool
from agents.realtime import RealtimeAgent, RealtimeRunner, RealtimeSession

import callstate
from callstate.adapters.openai_agents import guard_agent
from callstate.testing import FakeClock
from callstate.testing.realtime_server import Call, RealtimeServer, Say

from .test_openai_realtime import Gates, make_tools


@function_tool
async def move_booking(booking_id: str, time: str) -> str:
    """Move a booking (its body never runs: callstate's registered tool does)."""
    raise AssertionError("the unguarded body ran")


@pytest.fixture
async def server() -> AsyncIterator[RealtimeServer]:
    async with RealtimeServer() as srv:
        yield srv


@pytest.fixture
def gates() -> Gates:
    return Gates()


@pytest.fixture
async def keeper(gates: Gates) -> AsyncIterator[callstate.Keeper]:
    async with callstate.Keeper("memory://", tools=make_tools(gates), clock=FakeClock()) as k:
        yield k


def outputs(received: list[dict[str, Any]], call_id: str) -> list[dict[str, Any]]:
    """The ``function_call_output`` items the SDK sent for ``call_id``."""
    return [
        e["item"]
        for e in received
        if e["type"] == "conversation.item.create"
        and e["item"]["type"] == "function_call_output"
        and e["item"]["call_id"] == call_id
    ]


async def until_event(rt: RealtimeSession, kind: str) -> None:
    """Read the session's events until one of type ``kind`` (a safety limit, no pacing)."""
    async with asyncio.timeout(5):
        async for event in rt:
            if kind == event.type:
                return


async def test_a_write_tool_call_runs_through_the_guard(
    server: RealtimeServer, keeper: callstate.Keeper, gates: Gates
) -> None:
    """The SDK's tool call runs callstate's registered write once and sends its outcome."""
    s = await keeper.start(agent="booking")
    agent = guard_agent(RealtimeAgent(name="booking", tools=[move_booking]), s)
    gates.move.set()
    server.queue(Call("move_booking", '{"booking_id": "B1", "time": "10:00"}', call_id="c1"))
    server.queue(Say("Moved."))
    runner = RealtimeRunner(agent)
    async with await runner.run(
        model_config={"url": f"{server.url}/realtime?model=gpt-realtime", "api_key": "sk-test"}
    ) as rt:
        await server.user_speaks("Move B1 to ten.")
        await until_event(rt, "tool_end")
    assert ["move_booking"] == gates.runs
    assert "succeeded" == s.state.calls["c1"].status
    sent = [json.loads(item["output"]) for item in outputs(server.received, "c1")]
    assert [{"booking_id": "B1", "time": "10:00", "moved": True}] == [o["result"] for o in sent]
