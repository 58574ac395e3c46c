"""The Pipecat adapter records what the caller said and what the bot really played."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from callstate import Keeper, decode_event
from callstate.journal import events as ev
from callstate.testing import FakeClock

from .test_pipecat_harness import WORD_MS, Bot, Reply


async def journal(keeper: Keeper, session_id: str) -> list[Any]:
    """Every event of the session as stored."""
    loaded = await keeper.store.load(session_id)
    return [decode_event(raw) for raw in loaded.events]


async def test_interim_and_final_transcripts_are_recorded() -> None:
    """Interim transcripts become partials; the turn the context got becomes a user turn."""
    async with Keeper("memory://", clock=FakeClock()) as keeper:
        s = await keeper.start()
        async with Bot(s, [Reply("For two, got it.")]) as bot:
            await bot.user.say("a table for two", interims=["a table", "a table for"])
            await bot.until(lambda: s.state.turn == 1)
        await s.flush()
        events = await journal(keeper, s.id)
    partials = [e.text for e in events if isinstance(e, ev.UserPartial)]
    turns = [e.text for e in events if isinstance(e, ev.UserTurn)]
    assert ["a table", "a table for"] == partials
    assert ["a table for two"] == turns
    assert "" == s.state.partial


async def test_a_reply_that_played_out_is_recorded_whole() -> None:
    """A response that played to the end is one finished utterance with all its text heard."""
    async with Keeper("memory://", clock=FakeClock()) as keeper:
        s = await keeper.start()
        async with Bot(s, [Reply("Sure. Let me look.")]) as bot:
            await bot.user.say("a table for two")
            await bot.until(lambda: any(i.kind == "assistant" and i.done for i in s.state.items))
    said = [i for i in s.state.items if i.kind == "assistant"]
    assert 1 == len(said)
    assert "Sure. Let me look." == said[0].text
    assert "Sure. Let me look." == said[0].spoken
    assert not said[0].interrupted
    assert [
        {"role": "user", "content": "a table for two"},
        {"role": "assistant", "content": "Sure. Let me look."},
    ] == s.context()


async def test_barge_in_keeps_only_what_played() -> None:
    """A barge-in truncates the utterance to the played sentence; the rest is unspoken."""
    async with Keeper("memory://", clock=FakeClock()) as keeper:
        s = await keeper.start()
        reply = "Sure. Let me move that booking for you."
        async with Bot(s, [Reply(reply)]) as bot:
            bot.playback.pause_after(1)  # the speaker stops after "Sure."
            await bot.user.say("move my booking")
            await bot.until(lambda: bot.playback.texts_released == 1)
            await bot.user.start_speaking()
            await bot.until(lambda: any(i.interrupted for i in s.state.items))
            await s.flush()
            events = await journal(keeper, s.id)
            # Pipecat's own context holds the same truncated text
            await bot.until(
                lambda: {"role": "assistant", "content": "Sure."} in bot.context.messages
            )
    item = next(i for i in s.state.items if i.kind == "assistant")
    assert "Sure." == item.text
    assert "Let me move that booking for you." == item.unspoken
    assert "Let me move that booking for you." == s.state.unspoken
    cut = next(e for e in events if isinstance(e, ev.Interrupted))
    assert "Sure." == cut.heard_text
    assert WORD_MS == cut.audio_end_ms  # one word of tone had played


async def test_a_user_turn_while_the_bot_is_idle_is_no_barge_in() -> None:
    """A caller who speaks after the bot finished interrupts nothing."""
    async with Keeper("memory://", clock=FakeClock()) as keeper:
        s = await keeper.start()
        async with Bot(s, [Reply("Hello."), Reply("Noted.")]) as bot:
            await bot.user.say("hi")
            await bot.until(lambda: any(i.kind == "assistant" and i.done for i in s.state.items))
            await bot.user.say("table for two")
            await bot.until(
                lambda: 2 == sum(i.done for i in s.state.items if i.kind == "assistant")
            )
        await s.flush()
        events = await journal(keeper, s.id)
    assert [] == [e for e in events if isinstance(e, ev.Interrupted)]
    assert ["hi", "Hello.", "table for two", "Noted."] == [m["content"] for m in s.context()]


def test_import_without_pipecat_names_the_extra() -> None:
    """Importing the adapter without Pipecat raises ImportError naming the extra."""
    code = (
        "import sys; sys.modules['pipecat'] = None\n"
        "try:\n"
        "    import callstate.adapters.pipecat\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install callstate[pipecat]" in out.stdout
