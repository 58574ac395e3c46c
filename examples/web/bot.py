"""The scripted voice bot of the web example: real Pipecat, no API keys.

Pipecat's Silero VAD finds the caller's speech in the WebRTC audio and cuts it into
segments; only the words are scripted (``ScriptedSTT``: no speech recognizer runs
offline). ``ScriptedLLM`` answers from a script and the session: a new call is greeted,
a resumed one is not (it picks up the sentence the drop cut off). ``EspeakTTS`` speaks
with espeak-ng, so the browser hears real audio, sentence by sentence, in real time.
"""

from __future__ import annotations

import asyncio
import io
import subprocess
import wave
from collections.abc import AsyncIterator, Sequence
from typing import Any

import numpy
import soxr
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.frames.frames import (
    Frame,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.llm_service import LLMService
from pipecat.services.stt_service import SegmentedSTTService
from pipecat.services.tts_service import TTSService
from pipecat.transports.base_transport import BaseTransport
from pipecat.turns.user_start import VADUserTurnStartStrategy
from pipecat.turns.user_stop import SpeechTimeoutUserTurnStopStrategy
from pipecat.turns.user_turn_strategies import UserTurnStrategies

import callstate
from callstate.adapters.pipecat import PipecatRecovery, seed_context

SYSTEM = "You take bookings for a restaurant. Be brief."
GREETING = "Hello, this is the booking line. How can I help?"
#: what the caller says, segment by segment (the words only: the audio is real)
CALLER = ["I would like a table for two at eight tonight."]
#: the bot's answers to the caller's turns, in order: long enough to be cut off
ANSWERS = [
    "Of course. I have booked a table for two at eight o'clock tonight, by the window. "
    "You will get a confirmation on your phone in a minute, and a reminder an hour before."
]
RESUMED = "Sorry, we were cut off. As I was saying: {unspoken}"
BACK = "Sorry, we were cut off. Where were we?"


class ScriptedSTT(SegmentedSTTService):
    """Transcribes each speech segment the VAD cut out with the next scripted text."""

    def __init__(self, transcripts: Sequence[str], **kwargs: Any) -> None:
        super().__init__(trailing_silence_secs=0.0, **kwargs)
        self.transcripts = list(transcripts)

    @property
    def wants_wav_segments(self) -> bool:
        return False

    async def run_stt(self, audio: bytes) -> AsyncIterator[Frame]:
        text = self.transcripts.pop(0) if self.transcripts else "Mm-hm."
        yield TranscriptionFrame(text, "caller", "now")


class ScriptedLLM(LLMService):
    """Answers from the script: a greeting on a new call, the cut-off rest on a resumed one."""

    def __init__(self, session: callstate.Session, answers: Sequence[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.answers = list(answers)
        plan = session.recovery
        self.opening = GREETING
        if session.state.items:  # a call under way: never greet again
            unspoken = plan.unspoken if plan is not None else ""
            self.opening = RESUMED.format(unspoken=unspoken) if unspoken else BACK
        self.inferences = 0

    def _reply(self, messages: list[Any]) -> str:
        self.inferences += 1
        if self.inferences == 1 and (not messages or messages[-1].get("role") != "user"):
            return self.opening
        return self.answers.pop(0) if self.answers else "Is there anything else?"

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if not isinstance(frame, LLMContextFrame):
            await self.push_frame(frame, direction)
            return
        reply = self._reply(list(frame.context.messages))
        await self.push_frame(LLMFullResponseStartFrame())
        try:
            for word in reply.split():
                await self._push_llm_text(word + " ")
        finally:
            await self.push_frame(LLMFullResponseEndFrame())


def espeak(text: str, sample_rate: int) -> bytes:
    """``text`` spoken by espeak-ng, as 16-bit mono PCM at ``sample_rate``."""
    wav = subprocess.run(
        ["espeak-ng", "--stdout", "-s", "170", text], check=True, capture_output=True
    ).stdout
    with wave.open(io.BytesIO(wav)) as w:
        rate = w.getframerate()
        pcm = numpy.frombuffer(w.readframes(w.getnframes()), dtype=numpy.int16)
    return bytes(soxr.resample(pcm, rate, sample_rate).astype(numpy.int16).tobytes())


class EspeakTTS(TTSService):
    """A TTS that speaks each sentence with espeak-ng."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(push_start_frame=True, push_stop_frames=True, **kwargs)

    async def run_tts(self, text: str, context_id: str) -> AsyncIterator[Frame]:
        audio = await asyncio.to_thread(espeak, text, self.sample_rate)
        yield TTSAudioRawFrame(audio, self.sample_rate, 1, context_id=context_id)


class ReadyVAD:
    """One Silero VAD loaded ahead, in a thread: loading its model takes longer than
    everything else a reconnect does, so no caller waits for it."""

    def __init__(self) -> None:
        self._next: asyncio.Task[SileroVADAnalyzer] | None = None

    def warm(self) -> None:
        """Start loading the next one (call from the event loop)."""
        if self._next is None:
            self._next = asyncio.create_task(asyncio.to_thread(SileroVADAnalyzer))

    async def take(self) -> SileroVADAnalyzer:
        """A loaded VAD for one call; the next one starts loading."""
        ready = self._next or asyncio.create_task(asyncio.to_thread(SileroVADAnalyzer))
        self._next = None
        vad = await ready
        self.warm()
        return vad

    async def close(self) -> None:
        """Wait for the one loading, if any (its thread cannot be cancelled)."""
        ready, self._next = self._next, None
        if ready is not None:
            await ready


def build_bot(
    session: callstate.Session,
    transport: BaseTransport,
    *,
    vad: SileroVADAnalyzer | None = None,
    caller: Sequence[str] = CALLER,
    answers: Sequence[str] = ANSWERS,
) -> tuple[PipelineWorker, PipecatRecovery, ScriptedLLM]:
    """The pipeline for ``session`` over ``transport``: fresh, or continuing a resumed call."""
    llm = ScriptedLLM(session, answers)
    context = seed_context(LLMContext(), session, system=SYSTEM)
    params = LLMUserAggregatorParams(
        vad_analyzer=vad or SileroVADAnalyzer(),
        user_turn_strategies=UserTurnStrategies(
            start=[VADUserTurnStartStrategy()],
            stop=[SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=0.3)],
        ),
    )
    aggregators = LLMContextAggregatorPair(context, user_params=params)
    recovery = PipecatRecovery(session, llm)  # callstate: speech and tools recorded as heard
    pipeline = Pipeline(
        [
            transport.input(),
            ScriptedSTT(caller),
            aggregators.user(),
            llm,
            recovery.processor,  # callstate: right after the LLM
            EspeakTTS(),
            transport.output(),
            aggregators.assistant(),
        ]
    )
    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(audio_in_sample_rate=16_000, audio_out_sample_rate=16_000),
        cancel_on_idle_timeout=False,
        enable_rtvi=False,
    )
    return worker, recovery, llm
