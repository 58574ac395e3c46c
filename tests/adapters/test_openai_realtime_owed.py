"""Outcomes owed to the model reach a Realtime session however late they land.

A read cut off in one keeper is re-run by the resume in another; its result lands
before the adapter attaches, while it attaches, or later on a line with nothing on it.
"""
# ruff: noqa: F811 - the fixtures are imported from the sibling module

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from openai import AsyncOpenAI

import callstate
from callstate.adapters.openai_realtime import ResumedEvent, connect
from callstate.testing import FakeClock
from callstate.testing.realtime_server import RealtimeServer, Say

from .test_openai_realtime import (  # noqa: F401 - fixtures
    MODEL,
    assert_clean,
    client,
    clock,
    of_type,
    outputs,
    server,
    until,
)

SECRET = b"0123456789abcdef0123456789abcdef"
CONFIG: dict[str, Any] = {
    "type": "realtime",
    "instructions": "You look things up.",
    "tools": [{"type": "function", "name": "lookup", "parameters": {"type": "object"}}],
}


class Attempts:
    """Gates per attempt of the ``lookup`` read: attempt N waits for ``gate[N]``."""

    def __init__(self) -> None:
        self.started = {1: asyncio.Event(), 2: asyncio.Event()}
        self.gate = {1: asyncio.Event(), 2: asyncio.Event()}

    def registry(self) -> callstate.ToolRegistry:
        tools = callstate.ToolRegistry()

        @tools.tool(effect="read")
        async def lookup(q: str, *, ctx: callstate.ToolContext) -> dict[str, Any]:
            self.started[ctx.attempt].set()
            await self.gate[ctx.attempt].wait()
            return {"q": q, "attempt": ctx.attempt}

        return tools


@pytest.fixture
async def rerun(
    tmp_path: Path, clock: FakeClock
) -> AsyncIterator[tuple[Attempts, callstate.Session]]:
    """A read cut off in keeper ``a`` (its attempt never ends), resumed by keeper ``b``."""
    attempts = Attempts()
    url = f"sqlite:///{tmp_path}/cs.db"
    tools = attempts.registry()
    async with callstate.Keeper(url, secret=SECRET, clock=clock, tools=tools) as a:
        s = await a.start(caller="+15551234567", agent="lookup")
        s.user_said("What is x?")
        first = asyncio.ensure_future(s.run_tool("lookup", {"q": "x"}, call_id="c1"))
        await asyncio.wait_for(attempts.started[1].wait(), timeout=10)
        async with callstate.Keeper(url, secret=SECRET, clock=clock, tools=tools) as b:
            s2 = await b.resume(s.id)  # a worker takes over by id
            await asyncio.wait_for(attempts.started[2].wait(), timeout=10)
            yield attempts, s2
            attempts.gate[2].set()
        attempts.gate[1].set()
        await asyncio.gather(first, return_exceptions=True)


def is_resumed(e: Any) -> bool:
    return isinstance(e, ResumedEvent)


def creates(server: RealtimeServer) -> list[dict[str, Any]]:
    return [e for e in server.current.received if e["type"] == "response.create"]


async def test_a_rerun_landing_before_attach_is_replayed_and_given(
    server: RealtimeServer, client: AsyncOpenAI, rerun: tuple[Attempts, callstate.Session]
) -> None:
    """A re-run that ended before the adapter attached goes in with the replay, given once."""
    attempts, s2 = rerun
    attempts.gate[2].set()
    await s2.run_tool("lookup", {"q": "x"}, call_id="c1")  # awaits the re-run
    assert ["c1"] == [o.call_id for o in s2.owed_to_model()]
    server.queue(Say("x is found."))
    async with connect(client, s2, model=MODEL, config=CONFIG) as conn:
        await until(conn, is_resumed)
        await until(conn, of_type("response.done"))
    assert 1 == len(outputs(server.current.received, "c1"))
    assert 1 == len(creates(server))
    assert [] == s2.owed_to_model()
    assert_clean(server)


async def test_a_rerun_landing_during_attach_is_answered_once(
    server: RealtimeServer, client: AsyncOpenAI, rerun: tuple[Attempts, callstate.Session]
) -> None:
    """A re-run landing while the replay goes in is answered once, with one response.create."""
    attempts, s2 = rerun
    server.queue(Say("x is found."))
    attempts.gate[2].set()  # lands while the adapter dials and replays
    async with connect(client, s2, model=MODEL, config=CONFIG) as conn:
        await until(conn, is_resumed)
        await until(conn, of_type("response.done"))
    assert 1 == len(outputs(server.current.received, "c1"))
    assert 1 == len(creates(server))
    assert [] == s2.owed_to_model()
    assert_clean(server)


async def test_a_rerun_landing_on_a_quiet_line_is_answered_at_once(
    server: RealtimeServer, client: AsyncOpenAI, rerun: tuple[Attempts, callstate.Session]
) -> None:
    """A re-run landing after the replay was acknowledged, with nothing on the line, is sent."""
    attempts, s2 = rerun
    server.queue(Say("x is found."))
    async with connect(client, s2, model=MODEL, config=CONFIG) as conn:
        resumed = (await until(conn, is_resumed))[-1]
        assert [] == resumed.outputs  # the call was still running at the replay
        attempts.gate[2].set()  # the line stays silent: no server event will come
        await server.wait_for(lambda: creates(server))
        await until(conn, of_type("response.done"))
    sent = [e["type"] for e in server.current.received][-2:]
    assert ["conversation.item.create", "response.create"] == sent
    assert 1 == len(outputs(server.current.received, "c1"))
    assert [] == s2.owed_to_model()
    assert_clean(server)
