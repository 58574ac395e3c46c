"""An offline Pipecat pipeline for the adapter tests, built from Pipecat's own classes.

- ``UserSource``: a source processor that says what the caller says (transcripts and
  turn proposals, or audio frames for the speech test).
- ``ScriptedLLM``: an ``LLMService`` subclass that answers each inference with the next
  scripted reply, streaming text or asking for tools through ``run_function_calls``.
- ``ToneTTS`` / ``EspeakTTS``: ``TTSService`` subclasses (a tone per word, or real
  speech from espeak-ng).
- ``PacedOutput``: a ``BaseOutputTransport`` writing audio to a buffer, paced by a
  ``Playback`` gate the test controls, so the transport releases ``TTSTextFrame`` as
  its audio plays exactly as a real device would make it.

The tests at the bottom check the harness itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import io
import math
import shutil
import struct
import subprocess
import wave
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy
import pytest
import soxr
from loguru import logger
from pipecat.frames.frames import (
    EndFrame,
    Frame,
    FunctionCallFromLLM,
    InputAudioRawFrame,
    InterimTranscriptionFrame,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    ProposedUserStartedSpeakingFrame,
    ProposedUserStoppedSpeakingFrame,
    StartFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    TTSTextFrame,
)
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.llm_service import LLMService
from pipecat.services.stt_service import SegmentedSTTService
from pipecat.services.tts_service import TTSService
from pipecat.transports.base_input import BaseInputTransport
from pipecat.transports.base_output import BaseOutputTransport
from pipecat.transports.base_transport import TransportParams
from pipecat.turns.user_start import ExternalUserTurnStartStrategy
from pipecat.turns.user_stop import ExternalUserTurnStopStrategy
from pipecat.turns.user_turn_strategies import UserTurnStrategies
from pipecat.workers.runner import WorkerRunner

from callstate.adapters.pipecat import PipecatRecovery

logger.remove()  # Pipecat logs every frame at debug level; the tests read frames instead

SAMPLE_RATE = 16_000
WORD_MS = 200  # ToneTTS audio per word: 5 output chunks of 40 ms


# -- the caller ---------------------------------------------------------------------------


class UserSource(FrameProcessor):
    """The first processor: pushes what the caller does into the pipeline."""

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)

    async def send(self, *frames: Frame) -> None:
        for frame in frames:
            await self.queue_frame(frame)

    async def start_speaking(self) -> None:
        """The caller starts talking (over the bot, if it is talking): a turn proposal."""
        await self.send(ProposedUserStartedSpeakingFrame())

    async def finish(self, text: str, *, interims: Sequence[str] = ()) -> None:
        """The caller's words for the turn under way, then its end."""
        frames: list[Frame] = [InterimTranscriptionFrame(t, "caller", "now") for t in interims]
        frames.append(TranscriptionFrame(text, "caller", "now"))
        frames.append(ProposedUserStoppedSpeakingFrame())
        await self.send(*frames)

    async def say(self, text: str, *, interims: Sequence[str] = ()) -> None:
        """One whole caller turn."""
        await self.start_speaking()
        await self.finish(text, interims=interims)


class Microphone(BaseInputTransport):
    """An input transport with no device: the test speaks into it, 20 ms at a time."""

    def __init__(self, **kwargs: Any) -> None:
        params = TransportParams(audio_in_enabled=True, audio_in_sample_rate=SAMPLE_RATE)
        super().__init__(params, **kwargs)

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)

    async def speak(self, pcm: bytes, *, then_silence_ms: int = 800) -> None:
        """Feed 16 kHz 16-bit mono audio, then silence, as a microphone would."""
        audio = pcm + bytes(SAMPLE_RATE * 2 * then_silence_ms // 1000)
        chunk = SAMPLE_RATE * 2 * 20 // 1000
        for i in range(0, len(audio), chunk):
            await self.push_audio_frame(InputAudioRawFrame(audio[i : i + chunk], SAMPLE_RATE, 1))
            await asyncio.sleep(0)  # let the VAD keep up, chunk by chunk


class ScriptedSTT(SegmentedSTTService):
    """Transcribes each speech segment the VAD cut out with the next scripted text.

    The segmenting is Pipecat's own (VAD start to VAD stop); only the words are given.
    """

    def __init__(self, transcripts: Sequence[str], **kwargs: Any) -> None:
        super().__init__(trailing_silence_secs=0.0, **kwargs)
        self.transcripts = list(transcripts)
        self.segments_ms: list[int] = []  # how much audio each segment held

    @property
    def wants_wav_segments(self) -> bool:
        return False

    async def run_stt(self, audio: bytes) -> AsyncIterator[Frame]:
        self.segments_ms.append(len(audio) * 1000 // (2 * self.sample_rate))
        yield TranscriptionFrame(self.transcripts.pop(0), "caller", "now")


# -- the model --------------------------------------------------------------------------


@dataclass
class Reply:
    """One scripted model response: text to stream and/or tool calls to ask for."""

    text: str = ""
    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)  # id, name, args


class ScriptedLLM(LLMService):
    """Answers each inference with the next ``Reply``; records the context it was given."""

    def __init__(self, replies: Sequence[Reply], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.replies = list(replies)
        self.seen: list[list[dict[str, Any]]] = []  # the messages of each inference

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMContextFrame):
            self.seen.append(copy.deepcopy(list(frame.context.messages)))  # type: ignore[arg-type]
            reply = self.replies.pop(0) if self.replies else Reply("Okay.")
            await self.push_frame(LLMFullResponseStartFrame())
            try:
                for word in reply.text.split():
                    await self._push_llm_text(word + " ")
                    await asyncio.sleep(0)  # a token stream: an interruption can land between
                if reply.calls:
                    await self.run_function_calls(
                        [
                            FunctionCallFromLLM(
                                function_name=name,
                                tool_call_id=call_id,
                                arguments=args,
                                context=frame.context,
                            )
                            for call_id, name, args in reply.calls
                        ]
                    )
            finally:
                await self.push_frame(LLMFullResponseEndFrame())
        else:
            await self.push_frame(frame, direction)


# -- the voice ---------------------------------------------------------------------------


def tone(ms: int, *, sample_rate: int = SAMPLE_RATE, hz: float = 220.0) -> bytes:
    """``ms`` of a sine tone as 16-bit mono PCM."""
    n = sample_rate * ms // 1000
    step = 2 * math.pi * hz / sample_rate
    return struct.pack(f"<{n}h", *(int(6000 * math.sin(i * step)) for i in range(n)))


class ToneTTS(TTSService):
    """A TTS that voices every word as ``WORD_MS`` of tone."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(push_start_frame=True, push_stop_frames=True, **kwargs)

    async def run_tts(self, text: str, context_id: str) -> AsyncIterator[Frame]:
        audio = tone(WORD_MS * len(text.split()), sample_rate=self.sample_rate)
        yield TTSAudioRawFrame(audio, self.sample_rate, 1, context_id=context_id)


def espeak(text: str, *, sample_rate: int = SAMPLE_RATE) -> bytes:
    """Real speech: ``text`` synthesized by espeak-ng, as 16-bit mono PCM at ``sample_rate``."""
    wav = subprocess.run(
        ["espeak-ng", "--stdout", "-s", "170", text], check=True, capture_output=True
    ).stdout
    with wave.open(io.BytesIO(wav)) as w:  # espeak-ng writes 22.05 kHz mono
        rate = w.getframerate()
        pcm = numpy.frombuffer(w.readframes(w.getnframes()), dtype=numpy.int16)
    return bytes(soxr.resample(pcm, rate, sample_rate).astype(numpy.int16).tobytes())


needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="needs espeak-ng (apt-get install espeak-ng)"
)


class EspeakTTS(TTSService):
    """A TTS that speaks with espeak-ng."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(push_start_frame=True, push_stop_frames=True, **kwargs)

    async def run_tts(self, text: str, context_id: str) -> AsyncIterator[Frame]:
        audio = await asyncio.to_thread(espeak, text, sample_rate=self.sample_rate)
        yield TTSAudioRawFrame(audio, self.sample_rate, 1, context_id=context_id)


# -- the speaker -------------------------------------------------------------------------


class Playback:
    """The clock of the fake speaker: audio plays while open; it can stop after N texts."""

    def __init__(self) -> None:
        self._open = asyncio.Event()
        self._open.set()
        self._stop_at: int | None = None
        self.texts_released = 0

    def pause_after(self, texts: int) -> None:
        """Stop playing once ``texts`` more ``TTSTextFrame`` have been released."""
        self._stop_at = self.texts_released + texts
        if texts <= 0:
            self._open.clear()

    def resume(self) -> None:
        self._stop_at = None
        self._open.set()

    async def play(self) -> None:
        await self._open.wait()

    def released(self) -> None:
        self.texts_released += 1
        if self._stop_at is not None and self.texts_released >= self._stop_at:
            self._open.clear()


class PacedOutput(BaseOutputTransport):
    """An output transport with no device: audio goes to a buffer, paced by ``Playback``."""

    def __init__(self, playback: Playback, **kwargs: Any) -> None:
        params = TransportParams(audio_out_enabled=True, audio_out_sample_rate=SAMPLE_RATE)
        super().__init__(params, **kwargs)
        self.playback = playback
        self.audio = bytearray()
        self.released: list[Frame] = []  # every frame pushed downstream, in order

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)

    async def write_audio_frame(self, frame: Any) -> bool:
        await self.playback.play()
        self.audio += frame.audio
        await asyncio.sleep(0)  # faster than real time, but one chunk at a time
        return True

    async def push_frame(
        self, frame: Frame, direction: FrameDirection = FrameDirection.DOWNSTREAM
    ) -> None:
        await super().push_frame(frame, direction)
        if direction is FrameDirection.DOWNSTREAM:
            self.released.append(frame)
            if isinstance(frame, TTSTextFrame):
                self.playback.released()


# -- the whole bot -----------------------------------------------------------------------


class Watch(BaseObserver):
    """Wakes waiters on every frame push; keeps the frames pushed by chosen processors."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = asyncio.Condition()
        self.pushed: list[FramePushed] = []

    async def on_push_frame(self, data: FramePushed) -> None:
        self.pushed.append(data)
        async with self.changed:
            self.changed.notify_all()


class Bot:
    """A running pipeline: source, user aggregator, LLM, TTS, output, adapter, assistant."""

    def __init__(
        self,
        session: Any,
        replies: Sequence[Reply],
        *,
        context: LLMContext | None = None,
        tts: TTSService | None = None,
        user_params: LLMUserAggregatorParams | None = None,
        source: FrameProcessor | None = None,
        stt: FrameProcessor | None = None,
        run_in_parallel: bool = True,
        async_functions: Sequence[str] = (),
        adapter: bool = True,
        processor_after_output: bool = False,
        enable_tracing: bool = False,
    ) -> None:
        self.session = session
        self.context = (
            context
            if context is not None
            else LLMContext([{"role": "system", "content": "You book tables."}])
        )
        params = user_params or LLMUserAggregatorParams(
            user_turn_strategies=UserTurnStrategies(
                start=[ExternalUserTurnStartStrategy()],
                stop=[ExternalUserTurnStopStrategy(timeout=0.0)],
            )
        )
        self.aggregators = LLMContextAggregatorPair(self.context, user_params=params)
        self.llm = ScriptedLLM(replies, run_in_parallel=run_in_parallel)
        self.playback = Playback()
        self.output = PacedOutput(self.playback)
        self.user: Any = source if source is not None else UserSource()
        self.stt = stt
        self.tts = tts or ToneTTS()
        self.recovery = (
            PipecatRecovery(session, self.llm, async_functions=async_functions) if adapter else None
        )
        middle = [self.recovery.processor] if self.recovery is not None else []
        self.watch = Watch()
        observers: list[BaseObserver] = [self.watch]
        front = [self.user] if stt is None else [self.user, stt]
        after_llm, after_output = ([], middle) if processor_after_output else (middle, [])
        self.pipeline = Pipeline(
            [*front, self.aggregators.user(), self.llm, *after_llm, self.tts, self.output,
             *after_output, self.aggregators.assistant()]
        )  # fmt: skip
        self.worker = PipelineWorker(
            self.pipeline,
            params=PipelineParams(
                audio_in_sample_rate=SAMPLE_RATE, audio_out_sample_rate=SAMPLE_RATE
            ),
            observers=observers,
            cancel_on_idle_timeout=False,
            enable_rtvi=False,
            enable_tracing=enable_tracing,
        )
        self._run: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Bot:
        started = asyncio.Event()

        @self.worker.event_handler("on_pipeline_started")
        async def _started(worker: Any, frame: Any) -> None:
            started.set()

        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(self.worker)
        self._run = asyncio.create_task(runner.run())
        async with asyncio.timeout(10):
            await started.wait()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        """End the pipeline (an ``EndFrame`` after everything queued)."""
        if self._run is None:
            return
        self.playback.resume()
        await self.worker.queue_frame(EndFrame())
        async with asyncio.timeout(10):
            await self._run
        self._run = None

    async def crash(self) -> None:
        """Stop the pipeline on the spot, as a dying process would."""
        if self._run is None:
            return
        self._run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._run
        self._run = None

    async def until(self, check: Callable[[], bool], *, within: float = 10.0) -> None:
        """Wait until ``check()`` holds: re-checked after every frame push, and every 5 ms
        (a processor may act on a frame after its push was observed)."""
        async with asyncio.timeout(within):
            while not check():
                async with self.watch.changed:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(0.005):
                            await self.watch.changed.wait()

    def released(self, frame_type: type[Frame]) -> list[Frame]:
        """Frames of a type the output transport has released, in order."""
        return [f for f in self.output.released if isinstance(f, frame_type)]

    def pushed_by(self, processor: FrameProcessor, frame_type: type[Frame]) -> list[Frame]:
        return [
            p.frame
            for p in self.watch.pushed
            if p.source is processor and isinstance(p.frame, frame_type)
        ]


# -- checks of the harness itself --------------------------------------------------------


async def test_output_releases_text_only_after_its_audio_played() -> None:
    """The paced output holds a sentence's TTSTextFrame until its audio is written."""
    from callstate import Keeper

    async with Keeper("memory://") as keeper:
        s = await keeper.start()
        async with Bot(s, [Reply("Sure. Let me look.")], adapter=False) as bot:
            bot.playback.pause_after(1)
            await bot.user.say("a table for two")
            await bot.until(lambda: bot.playback.texts_released == 1)
            first = [f.text for f in bot.released(TTSTextFrame)]
            assert ["Sure."] == first
            assert WORD_MS * SAMPLE_RATE * 2 // 1000 == len(bot.output.audio)
            bot.playback.resume()
            await bot.until(lambda: len(bot.released(TTSTextFrame)) == 2)
            assert WORD_MS * 4 * SAMPLE_RATE * 2 // 1000 == len(bot.output.audio)


@needs_espeak
def test_espeak_speaks() -> None:
    """espeak-ng gives more than half a second of non-silent 16 kHz audio for a sentence."""
    audio = espeak("Actually, wait a moment.")
    samples = struct.unpack(f"<{len(audio) // 2}h", audio)
    assert len(samples) > SAMPLE_RATE // 2
    assert max(abs(x) for x in samples) > 1000
