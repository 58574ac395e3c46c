"""Real speech end to end: espeak-ng voices through Pipecat's Silero VAD, no injected turns.

The caller's utterances are synthesized with espeak-ng and fed to an input transport as
20 ms audio frames. Pipecat's bundled Silero VAD finds the speech, its VAD turn strategy
starts the turn (and so the barge-in), and the segmented STT cuts the segment out; only
the words of each segment are scripted, since no speech recognizer runs offline. The
bot speaks with espeak-ng too, through the paced output transport.
"""

from __future__ import annotations

import json

from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.frames.frames import (
    TTSTextFrame,
    VADUserStartedSpeakingFrame,
)
from pipecat.processors.aggregators.llm_response_universal import LLMUserAggregatorParams
from pipecat.turns.user_start import VADUserTurnStartStrategy
from pipecat.turns.user_stop import SpeechTimeoutUserTurnStopStrategy
from pipecat.turns.user_turn_strategies import UserTurnStrategies

from callstate import Keeper, decode_event
from callstate.journal import events as ev
from callstate.testing import FakeClock

from .test_pipecat_harness import (
    Bot,
    EspeakTTS,
    Microphone,
    Reply,
    ScriptedSTT,
    espeak,
    needs_espeak,
)
from .test_pipecat_tools import BOOKING, Tools, tool_messages


@needs_espeak
async def test_a_spoken_barge_in_during_a_tool_call_is_heard_and_reconciled() -> None:
    """The caller's voice cuts the bot off mid-reply while a write runs; nothing is lost."""
    tools = Tools()
    async with Keeper("memory://", tools=tools.registry, clock=FakeClock()) as keeper:
        s = await keeper.start()
        mic = Microphone()
        stt = ScriptedSTT(["Move my booking to eight.", "Actually, wait a moment."])
        params = LLMUserAggregatorParams(
            vad_analyzer=SileroVADAnalyzer(),
            user_turn_strategies=UserTurnStrategies(
                start=[VADUserTurnStartStrategy()],
                stop=[SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=0.2)],
            ),
        )
        replies = [
            Reply(
                "Sure. Let me move that booking for you right away.",
                calls=[("c1", "move_booking", BOOKING)],
            ),
            Reply("Of course, take your time."),
        ]
        bot = Bot(s, replies, source=mic, stt=stt, tts=EspeakTTS(), user_params=params)
        async with bot:
            bot.playback.pause_after(1)  # the bot will get as far as "Sure." ...
            await mic.speak(espeak("Move my booking to eight."))
            await bot.until(lambda: s.state.turn == 1)
            await bot.until(
                lambda: tools.ran == ["move_booking"] and bot.playback.texts_released == 1
            )
            await mic.speak(espeak("Actually, wait a moment."))  # ... and the caller talks over it
            await bot.until(lambda: any(i.interrupted for i in s.state.items))
            bot.playback.resume()
            tools.release["move_booking"].set()
            await bot.until(lambda: s.state.turn == 2 and len(bot.llm.seen) == 2)
            await bot.until(lambda: len(bot.released(TTSTextFrame)) == 2)
            vad_starts = bot.pushed_by(bot.aggregators.user(), VADUserStartedSpeakingFrame)
        await s.flush()
        events = [decode_event(raw) for raw in (await keeper.store.load(s.id)).events]

    assert 2 <= len(vad_starts)  # both utterances were found in the audio
    assert 2 == len(stt.segments_ms)
    assert all(ms > 800 for ms in stt.segments_ms)  # whole utterances, not blips
    cut = next(e for e in events if isinstance(e, ev.Interrupted))
    assert "Sure." == cut.heard_text
    assert "Let me move that booking for you right away." == cut.unspoken_text
    assert ["c1"] == cut.overtaken
    assert ["Move my booking to eight.", "Actually, wait a moment."] == [
        e.text for e in events if isinstance(e, ev.UserTurn)
    ]
    call = s.state.calls["c1"]
    assert ("succeeded", "announced") == (call.status, call.delivery)
    assert ["move_booking"] == tools.ran
    seen = bot.llm.seen[1]
    result = {"booking_id": "B1", "time": "20:00", "moved": True}
    assert [json.dumps(result)] == [m["content"] for m in tool_messages(seen, "c1")]
    assert "Of course, take your time." == s.context()[-1]["content"]
