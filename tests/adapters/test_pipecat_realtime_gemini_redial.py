"""Pipecat's ``GeminiLiveLLMService`` losing its socket with no resumption handle, or told
``goAway``: the conversation Pipecat re-seeds is the journal's, as the caller heard it,
against the strict loopback Gemini Live server."""
# ruff: noqa: F811 - the fixtures are imported from the sibling module

from __future__ import annotations

from typing import Any

from pipecat.frames.frames import LLMFullResponseEndFrame

import callstate
from callstate.testing.gemini_server import Call, GeminiServer, Say

from .pipecat_realtime_bot import RealtimeBot
from .test_pipecat_realtime_gemini import MOVE, assert_clean, bot_for, caller_says, server  # noqa: F401
from .test_pipecat_realtime_openai import Gate, gate, idempotent, keeper, seen  # noqa: F401


def kinds(seen: list[Any]) -> list[str]:
    return [e.kind for e in seen if e.kind.startswith("link.")]


async def two_turns(bot: RealtimeBot, server: GeminiServer) -> None:
    """Two exchanges that play out."""
    server.queue(Say("Hello, how can I help?"))
    await caller_says(bot, server, "Hi there.")
    await bot.until(lambda: len(bot.released(LLMFullResponseEndFrame)) == 1)
    server.queue(Say("Sure, which booking?"))
    await server.user_speaks("I want to move a booking.")
    await bot.until(lambda: len(bot.released(LLMFullResponseEndFrame)) == 2)


HEARD = [
    {"role": "user", "text": "Hi there."},
    {"role": "model", "text": "Hello, how can I help?"},
    {"role": "user", "text": "I want to move a booking."},
    {"role": "model", "text": "Sure, which booking?"},
]


async def test_a_drop_with_no_handle_reseeds_the_heard_conversation_once(
    keeper: callstate.Keeper, seen: list[Any]
) -> None:
    """No handle was issued: Pipecat re-seeds the new session, with the journal's heard
    conversation (each turn once) and the resume note; the link loss and restore are
    journaled and the next turn is answered."""
    async with GeminiServer(issue_handles=False) as server:
        s = await keeper.start(agent="booking")
        async with bot_for(s, server) as bot:
            await two_turns(bot, server)
            await server.drop()
            second = await server.wait_sessions(2)
            await server.wait_for(lambda: len(second.conversation) == len(HEARD) + 1)
            assert (None, HEARD) == (second.resumed_from, second.conversation[:-1])
            note = second.conversation[-1]
            assert "user" == note["role"]  # Pipecat sends a system note as a user turn
            assert "Do not greet the caller again" in note["text"]
            server.queue(Say("B1 is now at eight."))
            await server.user_speaks("B1, to eight please.")
            await bot.until(lambda: "eight." in bot.heard())
            await bot.until(lambda: kinds(seen) == ["link.lost", "link.restored"])
        assert_clean(server)
        assert "B1 is now at eight." == s.context()[-1]["content"]
        assert 1 == bot.heard().count("Hello, how can I help?")


async def test_go_away_moves_the_call_to_a_new_connection_with_the_handle(
    server: GeminiServer, keeper: callstate.Keeper, seen: list[Any]
) -> None:
    """``goAway``: at the next quiet moment the call moves to a new connection that resumes
    with the last handle, before the server cuts the old one; the link change is
    journaled and the call goes on there."""
    s = await keeper.start(agent="booking")
    async with bot_for(s, server) as bot:
        await two_turns(bot, server)
        handle = next(reversed(server.handles))
        await server.go_away("10s")
        second = await server.wait_sessions(2)
        assert (handle, True) == (second.resumed_from, server.sessions[0].closed)
        assert HEARD == second.conversation
        server.queue(Say("B1 is now at eight."))
        await server.user_speaks("B1, to eight please.")
        await bot.until(lambda: "eight." in bot.heard())
        await bot.until(lambda: kinds(seen) == ["link.lost", "link.restored"])
    assert None is server.sessions[0].refused
    assert 1 == bot.recovery.redial.moves
    assert "B1 is now at eight." == s.context()[-1]["content"]
    assert_clean(server)


async def test_a_drop_with_no_handle_after_a_call_reseeds_it_with_its_outcome(
    keeper: callstate.Keeper, gate: Gate
) -> None:
    """A guarded call ran before the drop: the re-seeded conversation carries the call and
    its outcome once (it is not run again), and the strict server takes the seed."""
    gate.open.set()
    async with GeminiServer(issue_handles=False) as server:
        s = await keeper.start(agent="booking")
        server.queue(Call("move_booking", MOVE, id="c1"), Say("Done, it is at eight."))
        async with bot_for(s, server) as bot:
            await caller_says(bot, server, "Move B1 to eight please.")
            await bot.until(lambda: "eight." in bot.heard())
            await server.drop()
            second = await server.wait_sessions(2)
            await server.wait_for(lambda: any("greet" in t["text"] for t in second.conversation))
            seeded = [(t["role"], t["text"][:24]) for t in second.conversation]
            assert [
                ("user", "Move B1 to eight please."),
                ("model", "[Called function move_bo"),
                ("user", "[Function move_booking r"),
                ("model", "Done, it is at eight."),
            ] == seeded[:4]
            assert 5 == len(seeded)  # and the resume note: each turn once
            server.queue(Say("Anything else?"))
            await server.user_speaks("Thanks.")
            await bot.until(lambda: "else?" in bot.heard())
        assert (1, "succeeded") == (gate.runs, s.state.calls["c1"].status)
        assert [] == s.owed_to_model()
        assert_clean(server)


async def test_go_away_mid_reply_waits_until_the_reply_has_played(
    server: GeminiServer, keeper: callstate.Keeper
) -> None:
    """``goAway`` while the model speaks: the call moves only once the reply has played out,
    so the caller hears it whole."""
    s = await keeper.start(agent="booking")
    server.queue(Say("Sure, let me look at that booking for you", chunks=3, pause_after=2))
    async with bot_for(s, server) as bot:
        await caller_says(bot, server, "Move B1 to eight please.")
        await bot.until(lambda: "that" in bot.generated())
        await server.go_away("30s")
        await bot.until(lambda: bot.recovery.redial.moves == 1)
        assert 1 == len(server.sessions)  # not while the reply is being said
        server.resume()
        second = await server.wait_sessions(2)
        assert "booking for you" in bot.heard()
        assert second.resumed_from is not None
    assert [] == [i for i in s.state.items if i.interrupted]
    assert_clean(server)
