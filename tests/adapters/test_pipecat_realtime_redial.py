"""Pipecat's ``OpenAIRealtimeLLMService`` losing its socket or hitting the 60-minute cap:
the Pipecat adapter reopens it and replays the conversation from the journal, against
the strict loopback Realtime server."""
# ruff: noqa: F811 - the fixtures are imported from the sibling module

from __future__ import annotations

import json
from typing import Any

import pytest
from pipecat.frames.frames import LLMFullResponseEndFrame

import callstate
from callstate.adapters._replay import VOICE_NOTE
from callstate.testing.realtime_server import RealtimeServer, Say

from .pipecat_realtime_bot import RealtimeBot, openai_llm
from .test_openai_realtime_resume import replayed as items
from .test_pipecat_realtime_openai import (  # noqa: F401 - fixtures
    MOVE,
    Gate,
    assert_clean,
    caller_says,
    gate,
    greeted,
    greeted_then_asked_to_move,
    keeper,
    outputs,
    reply_half_played,
    seen,
    server,
)


@pytest.fixture
def idempotent() -> bool:
    """``move_booking`` is a plain write here: it must never run twice."""
    return False


#: the greeting and the first exchange, as a_first_turn plays them
FIRST_TURN = [
    ("message", "assistant", "Hello, how can I help?"),
    ("message", "user", "I want to move a booking"),
    ("message", "assistant", "Sure, which booking?"),
]


def replayed(server: RealtimeServer, n: int) -> bool:
    """The ``n``-th session has received the whole replay (its closing system note)."""
    if len(server.sessions) < n:
        return False
    got = items(server.sessions[n - 1].received)
    return any(i[:2] == ("message", "system") and i[2].endswith(VOICE_NOTE) for i in got)


def kinds(seen: list[Any]) -> list[str]:
    return [e.kind for e in seen if e.kind.startswith("link.")]


async def a_first_turn(bot: RealtimeBot, server: RealtimeServer) -> None:
    """Greeting, then one exchange that plays out."""
    await greeted(bot, server)
    server.queue(Say("Sure, which booking?"))
    await caller_says(bot, server, "I want to move a booking")
    await bot.until(lambda: len(bot.released(LLMFullResponseEndFrame)) == 2)


async def the_call_goes_on(
    bot: RealtimeBot, server: RealtimeServer, s: callstate.Session, seen: list[Any], code: int
) -> None:
    """After the old socket ended: a new session gets the conversation as it was heard, in
    order, says nothing on its own (no greeting) and answers the next turn."""
    await bot.until(lambda: replayed(server, 2))
    second = server.sessions[1]
    got = items(second.received)
    assert FIRST_TURN == got[:3]
    assert 4 == len(got)
    assert [] == second.responses  # nothing asked of the model: it owes no answer
    server.queue(Say("B1 is now at eight."))
    await caller_says(bot, server, "B1, to eight please")
    await bot.until(lambda: "eight." in bot.heard())
    assert "B1 is now at eight." == s.context()[-1]["content"]
    assert 1 == bot.heard().count("Hello, how can I help?")
    await bot.until(lambda: kinds(seen) == ["link.lost", "link.restored"])
    assert (False, 2) == (s.on_hold, len(server.sessions))
    assert code == server.sessions[0].ws.close_code


async def test_a_dropped_socket_is_reopened_with_the_conversation_replayed(
    server: RealtimeServer, keeper: callstate.Keeper, seen: list[Any]
) -> None:
    """The server drops the socket between turns: a new session, the heard conversation
    replayed into it, the link loss and restore journaled, and the call goes on."""
    s = await keeper.start(agent="booking")
    async with RealtimeBot(s, openai_llm(server.url)) as bot:
        await a_first_turn(bot, server)
        await server.drop()  # TCP abort: the client sees 1006
        await the_call_goes_on(bot, server, s, seen, 1006)
    assert_clean(server)


async def test_session_expired_is_reopened_with_the_conversation_replayed(
    server: RealtimeServer, keeper: callstate.Keeper, seen: list[Any]
) -> None:
    """The 60-minute cap (``session_expired``, then a close): the same, and no error is
    pushed or logged for it."""
    s = await keeper.start(agent="booking")
    async with RealtimeBot(s, openai_llm(server.url)) as bot:
        await a_first_turn(bot, server)
        await server.expire()
        await the_call_goes_on(bot, server, s, seen, 1000)
    assert ["session_expired"] == [e["code"] for e in server.sessions[0].errors]
    assert ([], []) == (server.sessions[1].errors, server.malformed)  # nothing refused


async def test_a_write_running_across_the_drop_runs_once_and_is_answered_once(
    server: RealtimeServer, keeper: callstate.Keeper, gate: Gate
) -> None:
    """A non-idempotent write is running when the socket drops: it is never run again,
    the new session gets its call replayed open, then exactly one output once it ends."""
    s = await keeper.start(agent="booking")
    async with RealtimeBot(s, openai_llm(server.url)) as bot:
        await greeted_then_asked_to_move(bot, server)
        await bot.until(lambda: gate.runs == 1)
        await server.drop(code=1011)
        await bot.until(lambda: replayed(server, 2))
        gate.open.set()
        await bot.until(lambda: "eight." in bot.heard())
    first, second = server.sessions
    assert ("function_call", "c1") in items(second.received)
    assert ([], [("function_call_output", "c1")]) == (
        [i for i in items(first.received) if i[0] == "function_call_output"],
        [i for i in items(second.received) if i[0] == "function_call_output"],
    )
    assert {"booking_id": "B1", "time": "20:00", "moved": True} == json.loads(outputs(server)[0][1])
    call = s.state.calls["c1"]
    assert ("succeeded", 1) == (call.status, gate.runs)
    assert [] == s.owed_to_model()
    assert [] == second.left_unanswered
    assert_clean(server)


async def test_a_drop_mid_reply_replays_only_what_was_heard(
    server: RealtimeServer, keeper: callstate.Keeper
) -> None:
    """The socket drops while a reply streams: the new session gets the words the caller
    had heard of it, not the unheard rest, and the call goes on."""
    s = await keeper.start(agent="booking")
    async with RealtimeBot(s, openai_llm(server.url)) as bot:
        await greeted(bot, server)
        await reply_half_played(bot, server)
        await server.drop()
        await bot.until(lambda: replayed(server, 2))
        got = items(server.sessions[1].received)
        bot.playback.resume()
        server.queue(Say("B1 is now at eight."))
        await caller_says(bot, server, "B1, to eight please")
        await bot.until(lambda: "eight." in bot.heard())
    assert [
        ("message", "assistant", "Hello, how can I help?"),
        ("message", "user", "Move B1 to eight please"),
        ("message", "assistant", "Sure, let me"),
    ] == got[:3]
    assert "while you were saying “look at that”" in got[3][2]  # the unheard rest, as a note
    assert 4 == len(got)
    assert [] == server.sessions[1].responses
    assert_clean(server)


async def test_near_the_cap_the_call_rolls_over_at_a_quiet_moment(
    server: RealtimeServer, keeper: callstate.Keeper, seen: list[Any]
) -> None:
    """Past ``max_session_s - rollover_margin_s`` the next reply that plays out moves the
    call to a new session, replayed, before the server's cap: the link is never down."""
    s = await keeper.start(agent="booking")
    async with RealtimeBot(s, openai_llm(server.url)) as bot:
        await greeted(bot, server)
        keeper.clock.advance(3400.0)  # type: ignore[attr-defined]  # a FakeClock
        assert 1 == len(server.sessions)
        server.queue(Say("Sure, which booking?"))
        await caller_says(bot, server, "I want to move a booking")
        await bot.until(lambda: replayed(server, 2))
        assert FIRST_TURN == items(server.sessions[1].received)[:3]
        server.queue(Say("B1 is now at eight."))
        await caller_says(bot, server, "B1, to eight please")
        await bot.until(lambda: "eight." in bot.heard())
    assert ([], 1000) == (kinds(seen), server.sessions[0].ws.close_code)
    assert [] == server.sessions[1].responses
    assert_clean(server)


async def test_a_call_finished_before_the_drop_is_replayed_with_its_output_once(
    server: RealtimeServer, keeper: callstate.Keeper, gate: Gate
) -> None:
    """A write that ended before the drop: the new session gets its call and output once,
    in order, from the replay; Pipecat sends no second output for it later."""
    gate.open.set()
    s = await keeper.start(agent="booking")
    async with RealtimeBot(s, openai_llm(server.url)) as bot:
        await greeted_then_asked_to_move(bot, server)
        await bot.until(lambda: "eight." in bot.heard())
        await server.drop()
        await bot.until(lambda: replayed(server, 2))
        server.queue(Say("Anything else?"))
        await caller_says(bot, server, "Thanks")
        await bot.until(lambda: "else?" in bot.heard())
    assert [
        ("message", "assistant", "Hello, how can I help?"),
        ("message", "user", "Move B1 to eight please"),
        ("function_call", "c1"),
        ("function_call_output", "c1"),
        ("message", "assistant", "Done, it is at eight."),
    ] == items(server.sessions[1].received)[:5]
    assert 1 == [i[0] for i in items(server.sessions[1].received)].count("function_call_output")
    assert ("succeeded", 1) == (s.state.calls["c1"].status, gate.runs)
    assert_clean(server)


async def test_a_write_ending_while_the_line_is_down_is_answered_once_after_it(
    server: RealtimeServer, keeper: callstate.Keeper, gate: Gate
) -> None:
    """The write ends while the connection is down: the new session gets the call and its
    output once, the old one none, and the write ran once."""
    s = await keeper.start(agent="booking")
    async with RealtimeBot(s, openai_llm(server.url)) as bot:
        await greeted_then_asked_to_move(bot, server)
        await bot.until(lambda: gate.runs == 1)
        await server.drop()
        gate.open.set()  # before the new session is even dialled
        await bot.until(lambda: "eight." in bot.heard())
    first, second = server.sessions
    assert [] == [i for i in items(first.received) if i[0] == "function_call_output"]
    assert [("function_call", "c1"), ("function_call_output", "c1")] == [
        i for i in items(second.received) if i[0].startswith("function")
    ]
    assert ("succeeded", 1) == (s.state.calls["c1"].status, gate.runs)
    assert [] == s.owed_to_model()
    assert_clean(server)


async def test_a_second_drop_while_reopening_is_redialled_too(
    server: RealtimeServer, keeper: callstate.Keeper, seen: list[Any]
) -> None:
    """The new socket drops as soon as it opens: the adapter redials once more, and the
    third session gets the whole conversation."""
    s = await keeper.start(agent="booking")
    async with RealtimeBot(s, openai_llm(server.url)) as bot:
        await a_first_turn(bot, server)
        await server.drop()
        await server.wait_sessions(2)
        await server.drop()
        await bot.until(lambda: replayed(server, 3))
        server.queue(Say("B1 is now at eight."))
        await caller_says(bot, server, "B1, to eight please")
        await bot.until(lambda: "eight." in bot.heard())
    assert FIRST_TURN == items(server.sessions[2].received)[:3]
    assert (3, False) == (len(server.sessions), s.on_hold)
    assert_clean(server)
