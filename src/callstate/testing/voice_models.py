"""Deterministic speech for the Agents SDK's voice pipeline: text ↔ pcm16 and back.

``ScriptedTTS`` and ``ScriptedSTT`` implement the SDK's published plug-in points
(``agents.voice.TTSModel``, ``STTModel`` and ``StreamedTranscriptionSession``) with a
code instead of a voice: each character is one 10 ms frame (240 samples at 24 kHz)
whose every sample is the character's code point, so a reply's audio is exactly as
long as its text (10 ms a character) and ``speech(text)`` is what ``ScriptedSTT``
transcribes back to ``text``. Silence (zero frames) ends a streamed caller turn.
Audio that is not whole frames of one value each is refused (``SpeechCodeError``)::

    stt, tts = ScriptedSTT(), ScriptedTTS()
    pipeline = VoicePipeline(workflow=workflow, stt_model=stt, tts_model=tts)
    result = await pipeline.run(AudioInput(buffer=speech("Move B1 to eight.")))
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from agents.voice import (
    AudioInput,
    StreamedAudioInput,
    StreamedTranscriptionSession,
    STTModel,
    STTModelSettings,
    TTSModel,
    TTSModelSettings,
)

__all__ = [
    "FRAME",
    "SAMPLE_RATE",
    "ScriptedSTT",
    "ScriptedTTS",
    "SpeechCodeError",
    "silence",
    "speech",
    "text_of",
]

#: Samples per second of the pipeline's pcm16 (the SDK's default).
SAMPLE_RATE = 24_000
#: Samples per character: 10 ms.
FRAME = SAMPLE_RATE // 100


class SpeechCodeError(ValueError):
    """Audio that ``speech`` did not make: not whole frames, or a frame of mixed samples."""


def speech(text: str) -> np.ndarray[Any, np.dtype[np.int16]]:
    """The pcm16 samples that say ``text``: one 10 ms frame a character."""
    codes = [ord(c) for c in text]
    bad = [c for c in text if not 0 < ord(c) < 2**15]
    if bad:
        msg = f"text={text!r}: character {bad[0]!r} has no speech code"
        raise SpeechCodeError(msg)
    return np.repeat(np.array(codes, dtype=np.int16), FRAME)


def silence(ms: int) -> np.ndarray[Any, np.dtype[np.int16]]:
    """``ms`` milliseconds of pcm16 silence (whole frames)."""
    return np.zeros(ms // 10 * FRAME, dtype=np.int16)


def text_of(samples: np.ndarray[Any, Any] | bytes) -> str:
    """What ``samples`` (pcm16, as an array or bytes) say; silence says nothing."""
    data = np.frombuffer(samples, dtype=np.int16) if isinstance(samples, bytes) else samples
    flat = np.asarray(data).reshape(-1)
    if flat.dtype != np.int16:
        flat = np.round(flat.astype(np.float64) * 32767).astype(np.int16)
    if flat.size % FRAME:
        msg = f"samples: {flat.size} is not a whole number of {FRAME}-sample frames"
        raise SpeechCodeError(msg)
    frames = flat.reshape(-1, FRAME)
    mixed = np.flatnonzero((frames != frames[:, :1]).any(axis=1))
    if mixed.size:
        msg = f"samples: frame {int(mixed[0])} mixes sample values"
        raise SpeechCodeError(msg)
    return "".join(chr(int(v)) for v in frames[:, 0] if v)


class ScriptedTTS(TTSModel):
    """Says each text as ``speech(text)``, in chunks of ``chunk_chars`` characters;
    ``spoken`` lists every text the pipeline asked for, in order."""

    def __init__(self, *, chunk_chars: int = 8) -> None:
        self.chunk_chars = chunk_chars
        self.spoken: list[str] = []

    @property
    def model_name(self) -> str:
        return "callstate-scripted-tts"

    async def run(self, text: str, settings: TTSModelSettings) -> AsyncIterator[bytes]:
        self.spoken.append(text)
        pcm = speech(text).tobytes()
        step = self.chunk_chars * FRAME * 2
        for i in range(0, len(pcm), step):
            yield pcm[i : i + step]


class _Turns(StreamedTranscriptionSession):
    """A streamed input's caller turns: speech frames up to the next silence."""

    def __init__(self, audio: StreamedAudioInput, heard: list[str]) -> None:
        self._audio = audio
        self._closed = asyncio.Event()
        self.heard = heard

    async def transcribe_turns(self) -> AsyncIterator[str]:
        pending = np.zeros(0, dtype=np.int16)
        while not self._closed.is_set():
            chunk = await self._next()
            if chunk is None:
                break
            pending = np.concatenate([pending, np.asarray(chunk).reshape(-1).astype(np.int16)])
            whole = pending.size - pending.size % FRAME
            frames = pending[:whole].reshape(-1, FRAME)
            silent = np.flatnonzero((frames == 0).all(axis=1))
            if silent.size:
                end = int(silent[-1]) + 1
                turn, pending = pending[: end * FRAME], pending[end * FRAME :]
                text = text_of(turn)
                if text:
                    self.heard.append(text)
                    yield text
        rest = text_of(pending) if pending.size else ""
        if rest:
            self.heard.append(rest)
            yield rest

    async def _next(self) -> Any:
        get = asyncio.ensure_future(self._audio.queue.get())
        closed = asyncio.ensure_future(self._closed.wait())
        done, _ = await asyncio.wait({get, closed}, return_when=asyncio.FIRST_COMPLETED)
        for f in (get, closed):
            if f not in done:
                f.cancel()
        return get.result() if get in done else None

    async def close(self) -> None:
        self._closed.set()


class ScriptedSTT(STTModel):
    """Transcribes ``speech`` audio back to its text; a streamed input's turns end at
    silence. ``heard`` lists every transcript it produced, in order."""

    def __init__(self) -> None:
        self.heard: list[str] = []

    @property
    def model_name(self) -> str:
        return "callstate-scripted-stt"

    async def transcribe(
        self,
        input: AudioInput,
        settings: STTModelSettings,
        trace_include_sensitive_data: bool,
        trace_include_sensitive_audio_data: bool,
    ) -> str:
        text = text_of(input.buffer)
        self.heard.append(text)
        return text

    async def create_session(
        self,
        input: StreamedAudioInput,
        settings: STTModelSettings,
        trace_include_sensitive_data: bool,
        trace_include_sensitive_audio_data: bool,
    ) -> StreamedTranscriptionSession:
        return _Turns(input, self.heard)
