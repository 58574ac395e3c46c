"""The Pipecat adapter with Pipecat's ``GeminiLiveLLMService``, against the strict
loopback Gemini Live server (``callstate.testing.gemini_server``, TLS on 127.0.0.1)."""
# ruff: noqa: F811 - the fixtures are imported from the sibling module

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from pipecat.frames.frames import LLMFullResponseEndFrame

import callstate
from callstate.testing.gemini_server import Call, GeminiServer, Say

from .pipecat_realtime_bot import RealtimeBot, gemini_llm
from .test_pipecat_realtime_openai import Gate, gate, idempotent, keeper, seen  # noqa: F401

MOVE = {"booking_id": "B1", "time": "20:00"}


@pytest.fixture
async def server() -> AsyncIterator[GeminiServer]:
    async with GeminiServer() as srv:
        yield srv


def bot_for(s: callstate.Session, server: GeminiServer) -> RealtimeBot:
    return RealtimeBot(s, gemini_llm(server.http_options()))


async def caller_says(bot: RealtimeBot, server: GeminiServer, text: str) -> None:
    """The caller speaks (server-side voice detection) once the session is set up."""
    await server.wait_sessions(len(server.sessions) or 1)
    await server.user_speaks(text)


def assert_clean(server: GeminiServer) -> None:
    """No connection was refused by the strict server."""
    assert [] == [s.refused for s in server.sessions if s.refused]


async def test_a_turn_with_a_guarded_write(
    server: GeminiServer, keeper: callstate.Keeper, gate: Gate
) -> None:
    """The model's call runs once through the guard; its toolResponse goes back on the wire."""
    gate.open.set()
    s = await keeper.start(agent="booking")
    server.queue(Call("move_booking", MOVE, id="c1"), Say("Done, it is at eight."))
    async with bot_for(s, server) as bot:
        await caller_says(bot, server, "Move B1 to eight please")
        await bot.until(lambda: "eight." in bot.heard())
    call = s.state.calls["c1"]
    assert ("succeeded", 1) == (call.status, gate.runs)
    assert {"c1"} == server.current.answered
    assert [] == s.owed_to_model()
    assert_clean(server)


async def test_barge_in_keeps_only_what_was_heard(
    server: GeminiServer, keeper: callstate.Keeper
) -> None:
    """Talking over the reply: the utterance is cut to the words played, the rest kept aside."""
    s = await keeper.start(agent="booking")
    server.queue(Say("Sure, let me look at that booking", chunks=3, pause_after=2))
    async with bot_for(s, server) as bot:
        bot.playback.pause_after(1)  # the speaker plays the first words only
        played = bot.playback.texts_released + 1
        await caller_says(bot, server, "Move B1 to eight please")
        await bot.until(lambda: "that" in bot.generated() and bot.playback.texts_released == played)
        await server.barge_in()
        await bot.until(lambda: any(i.interrupted for i in s.state.items))
    reply = next(i for i in s.state.items if i.interrupted)
    assert ("Sure, let me", "look at that") == (reply.spoken, reply.unspoken)
    assert {"role": "assistant", "content": "Sure, let me"} in s.context()
    assert_clean(server)


async def test_a_result_landing_after_a_barge_in_is_held_then_announced(
    server: GeminiServer, keeper: callstate.Keeper, gate: Gate
) -> None:
    """The write finishes after the caller talked over it (Gemini cancelled the call): the
    model gets the real outcome as content, never a refused toolResponse; then it is announced."""
    s = await keeper.start(agent="booking")
    server.queue(Call("move_booking", MOVE, id="c1"))
    async with bot_for(s, server) as bot:
        await caller_says(bot, server, "Move B1 to eight please")
        await bot.until(lambda: gate.runs == 1)
        await server.barge_in()
        await bot.until(lambda: s.state.calls["c1"].overtaken)
        gate.open.set()
        conversation = server.current.conversation
        await server.wait_for(lambda: any("moved" in t["text"] for t in conversation))
        server.queue(Say("Your booking is now at eight."))
        await server.user_speaks("Did that work?")
        await bot.until(lambda: s.state.calls["c1"].delivery == "announced")
    call = s.state.calls["c1"]
    assert ("succeeded", 1) == (call.status, gate.runs)
    assert {"c1"} == server.current.cancelled
    assert [] == s.owed_to_model()
    assert_clean(server)


async def test_a_dropped_socket_resumes_with_the_handle(
    server: GeminiServer, keeper: callstate.Keeper, gate: Gate
) -> None:
    """The line drops after a finished turn: Pipecat redials with the last resumption handle
    and the server continues that conversation; the session keeps recording."""
    gate.open.set()
    s = await keeper.start(agent="booking")
    server.queue(Say("Hello, how can I help?"))
    async with bot_for(s, server) as bot:
        await caller_says(bot, server, "Hi there")
        await bot.until(lambda: bool(bot.released(LLMFullResponseEndFrame)))
        handle = next(reversed(server.handles))
        await server.drop()
        second = await server.wait_sessions(2)
        assert handle == second.resumed_from
        server.queue(Say("Sure, it is moved."))
        await server.user_speaks("Move B1 to eight")
        await bot.until(lambda: "moved." in bot.heard())
    assert ["Hi there", "Hello, how can I help?", "Move B1 to eight"] == [
        t["text"] for t in server.current.conversation
    ][:3]
    assert "Sure, it is moved." == s.context()[-1]["content"]
    assert_clean(server)
