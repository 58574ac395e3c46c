"""The Pipecat adapter with Pipecat's ``OpenAIRealtimeLLMService``, against the strict
loopback Realtime server (``callstate.testing.realtime_server``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pipecat.frames.frames import LLMFullResponseEndFrame, LLMRunFrame

import callstate
from callstate.testing import FakeClock
from callstate.testing.realtime_server import Call, RealtimeServer, Say

from .pipecat_realtime_bot import RealtimeBot, openai_llm

#: input transcription on, so the caller's words come back as transcripts
TRANSCRIBED = {"audio": {"input": {"transcription": {"model": "gpt-4o-transcribe"}}}}
MOVE = json.dumps({"booking_id": "B1", "time": "20:00"})


class Gate:
    """Holds ``move_booking`` until the test lets it finish."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.runs = 0


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
async def server() -> AsyncIterator[RealtimeServer]:
    async with RealtimeServer(session=TRANSCRIBED) as srv:
        yield srv


@pytest.fixture
def seen() -> list[callstate.RecoveryEvent]:
    """The recovery events the keeper emitted."""
    return []


@pytest.fixture
def idempotent() -> bool:
    """Whether ``move_booking`` may be re-run with its idempotency key."""
    return True


@pytest.fixture
async def keeper(
    gate: Gate, seen: list[callstate.RecoveryEvent], idempotent: bool
) -> AsyncIterator[callstate.Keeper]:
    tools = callstate.ToolRegistry()

    @tools.tool(effect="write", idempotent=idempotent)
    async def move_booking(booking_id: str, time: str) -> dict[str, Any]:
        gate.runs += 1
        await gate.open.wait()
        return {"booking_id": booking_id, "time": time, "moved": True}

    async with callstate.Keeper(
        "memory://",
        secret=b"0123456789abcdef0123456789abcdef",
        tools=tools,
        clock=FakeClock(),
        sinks=[seen.append],
    ) as k:
        yield k


async def greeted(bot: RealtimeBot, server: RealtimeServer) -> None:
    """Start the conversation and let the greeting play out."""
    server.queue(Say("Hello, how can I help?"))
    await server.wait_sessions(1)
    await bot.worker.queue_frame(LLMRunFrame())
    await bot.until(lambda: bool(bot.released(LLMFullResponseEndFrame)))


async def caller_says(bot: RealtimeBot, server: RealtimeServer, text: str) -> None:
    """The caller speaks (server VAD): the barge-in reaches the pipeline before the words end."""
    interruptions = len(bot.interruptions())
    await server.current.speech_started()
    await bot.until(lambda: len(bot.interruptions()) > interruptions)
    await server.current.speech_done(text, respond=True)


async def greeted_then_asked_to_move(bot: RealtimeBot, server: RealtimeServer) -> None:
    """After the greeting the caller asks to move B1 to eight: the model calls
    ``move_booking`` (call ``c1``), then says it is done."""
    await greeted(bot, server)
    server.queue(Call("move_booking", MOVE, call_id="c1"), Say("Done, it is at eight."))
    await caller_says(bot, server, "Move B1 to eight please")


async def reply_half_played(bot: RealtimeBot, server: RealtimeServer) -> None:
    """The caller asks; the reply streams two of its three parts and stops there, and
    the speaker has played its first words only."""
    server.queue(Say("Sure, let me look at that booking for you", chunks=3, pause_after=2))
    bot.playback.pause_after(1)
    played = bot.playback.texts_released + 1
    await caller_says(bot, server, "Move B1 to eight please")
    await bot.until(lambda: "that" in bot.generated() and bot.playback.texts_released == played)


def outputs(server: RealtimeServer) -> list[tuple[str, str]]:
    """Every function_call_output the client sent: (call id, output)."""
    return [
        (e["item"]["call_id"], e["item"]["output"])
        for e in server.received
        if e["type"] == "conversation.item.create" and e["item"]["type"] == "function_call_output"
    ]


def notes(server: RealtimeServer) -> list[str]:
    """The text of every message item the client put into the conversation."""
    return [
        part["text"]
        for e in server.received
        if e["type"] == "conversation.item.create" and e["item"]["type"] == "message"
        for part in e["item"]["content"]
    ]


def assert_clean(server: RealtimeServer) -> None:
    """The strict server rejected nothing."""
    assert ([], []) == ([s.errors for s in server.sessions if s.errors], server.malformed)


async def test_a_turn_with_a_guarded_write(
    server: RealtimeServer, keeper: callstate.Keeper, gate: Gate
) -> None:
    """The model's call runs once through the guard; its output goes back on the wire."""
    gate.open.set()
    s = await keeper.start(agent="booking")
    async with RealtimeBot(s, openai_llm(server.url)) as bot:
        await greeted_then_asked_to_move(bot, server)
        await bot.until(lambda: "eight." in bot.heard())
    call = s.state.calls["c1"]
    assert ("succeeded", 1) == (call.status, gate.runs)
    assert ["c1"] == [c for c, _ in outputs(server)]
    assert {"booking_id": "B1", "time": "20:00", "moved": True} == json.loads(outputs(server)[0][1])
    assert [] == s.owed_to_model()
    assert_clean(server)


async def test_barge_in_keeps_only_what_was_heard(
    server: RealtimeServer, keeper: callstate.Keeper
) -> None:
    """Talking over the reply: the utterance is cut to the words played, the rest kept aside,
    and the server's item is truncated."""
    s = await keeper.start(agent="booking")
    async with RealtimeBot(s, openai_llm(server.url)) as bot:
        await greeted(bot, server)
        await reply_half_played(bot, server)
        await caller_says(bot, server, "Wait, actually")
        await bot.until(lambda: any(i.interrupted for i in s.state.items))
    reply = next(i for i in s.state.items if i.interrupted)
    assert ("Sure, let me", "look at that") == (reply.spoken, reply.unspoken)
    assert 1 == len(server.sessions[0].truncated)
    assert {"role": "assistant", "content": "Sure, let me"} in s.context()
    assert_clean(server)


async def test_a_result_landing_after_a_barge_in_is_held_then_announced(
    server: RealtimeServer, keeper: callstate.Keeper, gate: Gate
) -> None:
    """The write finishes while the caller talks over it: the model gets the real outcome
    (never a lost result), unvoiced until the caller's turn ends; then it is announced."""
    s = await keeper.start(agent="booking")
    async with RealtimeBot(s, openai_llm(server.url)) as bot:
        await greeted(bot, server)
        server.queue(Call("move_booking", MOVE, call_id="c1"))
        await caller_says(bot, server, "Move B1 to eight please")
        await bot.until(lambda: gate.runs == 1)
        await server.current.speech_started()  # the caller talks while the write runs
        await bot.until(lambda: s.state.calls["c1"].overtaken)
        gate.open.set()
        await bot.until(lambda: s.state.calls["c1"].delivery == "held")
        await bot.until(lambda: any("moved" in n for n in notes(server)))
        server.queue(Say("Your booking is now at eight."))
        await server.current.speech_done("Did that work?", respond=True)
        await bot.until(lambda: "eight." in bot.heard())
        await bot.until(lambda: s.state.calls["c1"].delivery == "announced")
    call = s.state.calls["c1"]
    assert ("succeeded", 1) == (call.status, gate.runs)
    assert [] == s.owed_to_model()
    assert_clean(server)
