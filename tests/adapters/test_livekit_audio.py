"""Barge-ins on a real LiveKit ``AgentSession`` that speaks: a TTS and an audio output.

The TTS makes 40 ms of audio per character; the audio output plays up to where the test
says and reports the playback position LiveKit reads at a barge-in. What the caller
heard is the audio played, not the text handed to the transcription output (all of it).
"""

from __future__ import annotations

import asyncio
from typing import Any

from livekit import rtc
from livekit.agents import AgentSession, llm, tts
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions
from livekit.agents.utils import shortuuid
from livekit.agents.voice import io

from .test_livekit_bargein import model_assistant_texts
from .test_livekit_harness import Call, Reply, until

RATE = 24000
MS_PER_CHAR = 40


class _Synth(tts.ChunkedStream):
    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        output_emitter.initialize(
            request_id=shortuuid(), sample_rate=RATE, num_channels=1, mime_type="audio/pcm"
        )
        samples = RATE * MS_PER_CHAR * len(self.input_text) // 1000
        output_emitter.push(b"\x00\x00" * samples)
        output_emitter.flush()


class CharTTS(tts.TTS):
    """A TTS that makes ``MS_PER_CHAR`` of silence per character of text."""

    def __init__(self) -> None:
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=False), sample_rate=RATE, num_channels=1
        )

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.ChunkedStream:
        return _Synth(tts=self, input_text=text, conn_options=conn_options)


class Speaker(io.AudioOutput):
    """Plays what it is given at once, up to ``limit`` seconds of a segment, then waits."""

    def __init__(self) -> None:
        super().__init__(label="speaker", capabilities=io.AudioOutputCapabilities(pause=False))
        self.limit: float | None = None  # None: everything plays
        self.pushed = 0.0  # seconds captured in the open segment
        self.open = False

    @property
    def position(self) -> float:
        return self.pushed if self.limit is None else min(self.pushed, self.limit)

    @property
    def stuck(self) -> bool:
        """Playback reached ``limit`` with more of the segment still to play."""
        return self.open and self.limit is not None and self.pushed > self.limit

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        if not self.open:
            self.open = True
            self.on_playback_started(created_at=0.0)
        self.pushed += frame.duration

    def flush(self) -> None:
        super().flush()
        if self.open and not self.stuck:
            self._finish(interrupted=False)

    def clear_buffer(self) -> None:
        if self.open:
            self._finish(interrupted=True)

    def _finish(self, *, interrupted: bool) -> None:
        position, self.pushed, self.open = self.position, 0.0, False
        self.on_playback_finished(playback_position=position, interrupted=interrupted)


class SpokenCall(Call):
    """A ``Call`` whose agent speaks through ``CharTTS`` into a ``Speaker``."""

    def __init__(self, replies: list[Reply], **kw: Any) -> None:
        super().__init__(replies, **kw)
        self.speaker = Speaker()
        self.lk = AgentSession(
            llm=self.llm, tts=CharTTS(), userdata={"party": 2}, resume_false_interruption=False
        )
        self.lk.output.transcription = self.output
        self.lk.output.audio = self.speaker


def assistant_texts(call: Call) -> list[tuple[str, bool]]:
    return [
        (i.text_content or "", i.interrupted)
        for i in call.lk.history.items
        if isinstance(i, llm.ChatMessage) and i.role == "assistant"
    ]


async def test_a_reply_cut_mid_audio_keeps_only_what_played() -> None:
    """Cut after 0.8 s of audio: LiveKit and callstate both keep only the words that played."""
    text = "Your table is booked for eight tonight."
    async with SpokenCall([Reply([text])]) as call:
        call.speaker.limit = MS_PER_CHAR * len("Your table is booked ") / 1000
        run = call.lk.run(user_input="book me a table")
        await until(lambda: call.speaker.stuck)
        await call.lk.interrupt()
        await asyncio.gather(run, return_exceptions=True)
        cut = next(i for i in call.cs.state.items if i.kind == "assistant")
        assert ("Your table is booked", True, "for eight tonight.") == (
            cut.text,
            cut.interrupted,
            cut.unspoken,
        )
        assert [("Your table is booked", True)] == assistant_texts(call)
        call.speaker.limit = None
        await call.lk.run(user_input="for when?")
        assert ["Your table is booked"] == model_assistant_texts(call.llm.seen[-1])


async def test_a_reply_that_plays_out_is_kept_whole() -> None:
    """Nothing cut: the whole reply is kept as heard, in LiveKit and in callstate."""
    text = "Your table is booked."
    async with SpokenCall([Reply([text])]) as call:
        await call.lk.run(user_input="book me a table")
        said = next(i for i in call.cs.state.items if i.kind == "assistant")
        assert (text, False, text) == (said.text, said.interrupted, said.spoken)
        assert [(text, False)] == assistant_texts(call)


async def test_a_reply_cut_before_its_audio_played_keeps_nothing() -> None:
    """Cut before a frame played: nothing is heard, and LiveKit stores no message."""
    text = "Your table is booked for eight tonight."
    async with SpokenCall([Reply([text])]) as call:
        call.speaker.limit = 0.0
        run = call.lk.run(user_input="book me a table")
        await until(lambda: call.speaker.stuck)
        await call.lk.interrupt()
        await asyncio.gather(run, return_exceptions=True)
        cut = next(i for i in call.cs.state.items if i.kind == "assistant")
        assert ("", True, text) == (cut.text, cut.interrupted, cut.unspoken)
        assert [] == assistant_texts(call)
