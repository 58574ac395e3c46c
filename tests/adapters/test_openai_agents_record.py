"""``record``: the SDK's real ``RealtimeSession`` recorded into callstate over the loopback server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from agents.realtime import RealtimeAgent, RealtimePlaybackTracker

import callstate
from callstate.adapters._heard import heard_text
from callstate.adapters.openai_agents import CONTINUE_NOTE, RecordedCall, record
from callstate.testing import FakeClock
from callstate.testing.realtime_server import Call, RealtimeServer, Say

from .test_openai_realtime import Gates, make_tools


@pytest.fixture
async def server() -> AsyncIterator[RealtimeServer]:
    async with RealtimeServer() as srv:
        yield srv


@pytest.fixture
async def keeper() -> AsyncIterator[callstate.Keeper]:
    async with callstate.Keeper(
        "memory://", secret=b"k" * 32, tools=make_tools(Gates()), clock=FakeClock()
    ) as k:
        yield k


def config(server: RealtimeServer, **extra: Any) -> dict[str, Any]:
    """The SDK's model config pointing at the loopback server."""
    return {"url": f"{server.url}/realtime?model=gpt-realtime", "api_key": "sk-test", **extra}


@asynccontextmanager
async def running(call: RecordedCall, server: RealtimeServer) -> AsyncIterator[list[Any]]:
    """Open ``call``, read its events in the background, wait for the SDK's session config."""
    events: list[Any] = []
    async with call:
        task = asyncio.create_task(_read(call, events))
        await server.wait_for(lambda: _updates(server.current))
        try:
            yield events
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def _read(call: RecordedCall, events: list[Any]) -> None:
    async for event in call:
        events.append(event)


def _updates(session: Any) -> list[dict[str, Any]]:
    return [e for e in session.received if e["type"] == "session.update"]


def play_all(tracker: RealtimePlaybackTracker, server: RealtimeServer) -> None:
    """The caller's device played all the audio received (the newest item last)."""
    for item_id, ms in server.current.audio_ms.items():
        tracker.on_play_ms(item_id, 0, ms)


async def answered(server: RealtimeServer, tracker: RealtimePlaybackTracker, text: str) -> None:
    """The caller says ``text`` and hears the whole answer."""
    await server.user_speaks(text)
    await server.wait_for(lambda: server.current.active is None and bool(server.current.audio_ms))
    play_all(tracker, server)


def texts(state: callstate.SessionState) -> list[tuple[str, str]]:
    """The conversation as (kind, text) pairs, the assistant's as heard."""
    out = []
    for item in state.items:
        if item.kind == "user":
            out.append(("user", item.text))
        elif item.kind == "assistant":
            out.append(("assistant", item.text if item.done else item.spoken))
    return out


async def test_record_journals_the_callers_turns_and_the_agents_utterances(
    server: RealtimeServer, keeper: callstate.Keeper
) -> None:
    """Caller transcripts and the agent's spoken answers land in the callstate session."""
    s = await keeper.start(agent="booking")
    server.queue(Say("Hello, how can I help?"), Say("Sure."))
    tracker = RealtimePlaybackTracker()
    call = record(
        RealtimeAgent(name="booking"), s, model_config=config(server, playback_tracker=tracker)
    )
    async with running(call, server):
        await answered(server, tracker, "Hi there.")
        await server.user_speaks("Move my booking.")
        await server.wait_for(lambda: len(server.current.audio_ms) == 2)
        await server.wait_for(lambda: server.current.active is None)
    expected = [
        ("user", "Hi there."),
        ("assistant", "Hello, how can I help?"),
        ("user", "Move my booking."),
        ("assistant", "Sure."),
    ]
    assert expected == texts(s.state)


@pytest.mark.parametrize("played", [250, 0])
async def test_a_barge_in_truncates_at_the_played_position_and_callstate_hears_that_much(
    server: RealtimeServer, keeper: callstate.Keeper, played: int
) -> None:
    """With the playback tracker at ``played`` of 500 ms received, the item is cut there
    (at 0 too: audio received but not played yet, where the SDK sends no truncate)."""
    s = await keeper.start(agent="booking")
    tracker = RealtimePlaybackTracker()
    server.queue(Say("One two three four five six seven eight", 1000, 4, pause_after=2))
    call = record(
        RealtimeAgent(name="booking"), s, model_config=config(server, playback_tracker=tracker)
    )
    async with running(call, server):
        await server.user_speaks("Count for me.")
        await server.wait_for(lambda: sum(server.current.audio_ms.values()) == 500)
        item_id = next(iter(server.current.audio_ms))
        await server.wait_for(lambda: len(server.current.transcripts.get(item_id, "")) > 0)
        said = server.current.transcripts[item_id]
        if played:
            tracker.on_play_ms(item_id, 0, played)
        await server.barge_in()
        await server.wait_for(lambda: item_id in server.current.truncated)
        await server.user_speaks("Stop.", respond=False)
    assert {item_id: played} == server.current.truncated
    assert ("assistant", heard_text(said, played, 500)) == texts(s.state)[1]
    assert [] == [e for e in server.current.errors if e.get("code") != "response_cancel_not_active"]


async def test_a_handoff_between_realtime_agents_is_a_callstate_handoff_that_continues(
    server: RealtimeServer, keeper: callstate.Keeper
) -> None:
    """The SDK's handoff offers and accepts the call; the target is told to continue, and
    its ``session.update`` leaves the voice alone once audio played."""
    s = await keeper.start(agent="booking")
    billing = RealtimeAgent(name="billing", instructions="You handle bills.")
    booking = RealtimeAgent(name="booking", instructions="You book.", handoffs=[billing])
    server.queue(Say("Hello."), Call("transfer_to_billing", "{}", call_id="h1"), Say("Your bill."))
    tracker = RealtimePlaybackTracker()
    call = record(booking, s, model_config=config(server, playback_tracker=tracker))
    async with running(call, server) as events:
        await answered(server, tracker, "Hi.")
        await server.user_speaks("A billing question.")
        await server.wait_for(lambda: len(server.current.audio_ms) == 2)
        await server.wait_for(lambda: server.current.active is None)
        assert ["booking", "billing"] == [
            n for e in events if e.type == "handoff" for n in (e.from_agent.name, e.to_agent.name)
        ]
    assert "billing" == call.session.state.agent
    assert 2 == call.session.state.epoch
    update = _updates(server.current)[-1]["session"]
    assert update["instructions"].startswith("You handle bills.")
    assert CONTINUE_NOTE in update["instructions"]
    assert "voice" not in (update.get("audio") or {}).get("output", {})
    assert [] == [e for e in server.current.errors if e.get("code") == "cannot_update_voice"]
    outputs = [
        e["item"]["output"]
        for e in server.received
        if e["type"] == "conversation.item.create" and e["item"]["type"] == "function_call_output"
    ]
    assert [json.dumps({"assistant": "billing"})] == outputs


@pytest.mark.parametrize("how", ["drop", "expire"])
async def test_a_dropped_or_expired_connection_reopens_with_the_conversation_replayed(
    server: RealtimeServer, keeper: callstate.Keeper, how: str
) -> None:
    """A drop or ``session_expired`` opens a new Realtime session holding the conversation."""
    s = await keeper.start(agent="booking")
    server.queue(Say("Hello, how can I help?"))
    tracker = RealtimePlaybackTracker()
    call = record(
        RealtimeAgent(name="booking"), s, model_config=config(server, playback_tracker=tracker)
    )
    async with running(call, server):
        await answered(server, tracker, "Hi there.")
        await (server.drop() if how == "drop" else server.expire())
        second = await server.wait_sessions(2)
        await server.wait_for(lambda: len(second.items) >= 3)
        assert 1 == call.reconnects
    created = [e["item"] for e in second.received if e["type"] == "conversation.item.create"]
    spoken = [(i["role"], i["content"][0]["text"]) for i in created if i["role"] != "system"]
    assert [("user", "Hi there."), ("assistant", "Hello, how can I help?")] == spoken
    assert "system" == created[-1]["role"]
    assert [] == second.errors


def test_the_adapters_public_surface_is_pinned() -> None:
    """``callstate.adapters.openai_agents.__all__`` is exactly the documented names."""
    import callstate.adapters.openai_agents as adapter

    expected = [
        "CONTINUE_NOTE",
        "RecordedCall",
        "RecordedWorkflow",
        "continuing",
        "guard_agent",
        "guard_tool",
        "record",
        "record_workflow",
    ]
    assert expected == adapter.__all__
