"""What the caller heard when the agent speaks through an audio output.

With a TTS and an audio output, the text LiveKit hands the transcription output is what
was *sent* to be spoken, often the whole reply long before it plays. What the caller
heard is the audio that played: an ``AudioOutput`` placed first in the audio chain
(``AudioTap``) counts the audio captured for each playback segment and hears where
playback stopped (``PlaybackFinishedEvent.playback_position``). At a barge-in the heard
text is the transcript synchronized with playback when the sink gives one, else the
share of the sent text that matches the share of the audio played, cut back to whole
words. LiveKit reads the same position right after it clears the buffer, so the barge-in
is recorded the moment it is known, before LiveKit stores the cut reply.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from livekit import rtc
from livekit.agents.voice import io

from ._hooks import current_speech

__all__ = ["AudioTap", "Played", "Playout", "heard_part"]


@dataclass(frozen=True)
class Played:
    """How one playback segment of speech ``speech`` ended: seconds played of captured."""

    speech: str | None
    position: float
    captured: float
    synchronized: str | None
    interrupted: bool


@dataclass
class _Segment:
    speech: str | None  # the speech whose task captured it
    seconds: float = 0.0


def heard_part(text: str, played: Played) -> str:
    """The part of ``text`` (all sent for the segment) the caller heard of ``played``."""
    if played.synchronized is not None:
        return played.synchronized.strip()
    if played.captured <= 0 or played.position >= played.captured:
        return text.strip() if played.position > 0 else ""
    n = round(len(text) * played.position / played.captured)
    part = text[:n]
    if n < len(text) and not text[n].isspace() and part and not part[-1].isspace():
        words = part.split()
        part = part[: len(part) - len(words[-1])]  # a word cut in the middle was not heard
    return part.strip()


class AudioTap(io.AudioOutput):
    """First in the audio chain: the audio captured per segment and where playback stopped."""

    def __init__(self, finished: Callable[[Played], None], next_in_chain: io.AudioOutput) -> None:
        super().__init__(
            label="callstate",
            capabilities=io.AudioOutputCapabilities(pause=True),  # as far as the sink can
            next_in_chain=next_in_chain,
            sample_rate=next_in_chain.sample_rate,
        )
        self._finished = finished
        self._segments: deque[_Segment] = deque()  # not played out yet; the last may fill
        self._filling = False

    def holds(self, speech: str) -> bool:
        """Audio of ``speech`` was captured and has not finished playing."""
        return any(seg.speech == speech for seg in self._segments)

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        if not self._filling:
            self._filling = True
            self._segments.append(_Segment(current_speech()))
        self._segments[-1].seconds += frame.duration
        if self.next_in_chain is not None:
            await self.next_in_chain.capture_frame(frame)

    def flush(self) -> None:
        super().flush()
        self._filling = False
        if self.next_in_chain is not None:
            self.next_in_chain.flush()

    def clear_buffer(self) -> None:
        if self.next_in_chain is not None:
            self.next_in_chain.clear_buffer()

    def on_playback_finished(
        self,
        *,
        playback_position: float,
        interrupted: bool,
        synchronized_transcript: str | None = None,
    ) -> None:
        seg = self._segments.popleft() if self._segments else _Segment(None)
        self._filling = self._filling and bool(self._segments)
        played = Played(
            seg.speech, playback_position, seg.seconds, synchronized_transcript, interrupted
        )
        self._finished(played)
        super().on_playback_finished(
            playback_position=playback_position,
            interrupted=interrupted,
            synchronized_transcript=synchronized_transcript,
        )


class Playout:
    """Barge-ins on speech that plays as audio, recorded once the playback position is known.

    Args:
        record: records a barge-in ``(utterance id, heard text, audio end ms)``.
    """

    def __init__(self, record: Callable[[str, str, int | None], None]) -> None:
        self._record = record
        self._tap: AudioTap | None = None
        self._cut: tuple[str, str, str] | None = None  # (speech, utterance, text sent)
        self._ended: dict[str, Played] = {}  # speech -> its cut segment, barge-in not taken

    def ensure(self, out: io.AgentOutput) -> None:
        """Put the tap first in ``out``'s audio chain (again, if something replaced it)."""
        audio = out.audio
        if audio is not None and not isinstance(audio, AudioTap):
            self._tap = AudioTap(self._played, audio)
            out.audio = self._tap

    @property
    def active(self) -> bool:
        """The agent speaks through an audio output: heard is what played."""
        return self._tap is not None

    def cut(self, speech: str, uid: str, sent: str) -> None:
        """A barge-in on utterance ``uid``: recorded once playback says where it stopped."""
        ended = self._ended.pop(speech, None)
        if ended is not None:
            self._record(uid, heard_part(sent, ended), _ms(ended))
        elif self._tap is None or not self._tap.holds(speech):
            self._record(uid, "", None)  # none of its audio reached the output
        else:
            self._cut = (speech, uid, sent)

    def settle(self, fallback: str) -> None:
        """The cut reply is stored: a barge-in still waiting is recorded with ``fallback``."""
        cut, self._cut = self._cut, None
        if cut is not None:
            self._record(cut[1], fallback, None)

    def _played(self, played: Played) -> None:
        cut = self._cut
        if cut is not None and cut[0] == played.speech:
            self._cut = None
            self._record(cut[1], heard_part(cut[2], played), _ms(played))
        elif played.interrupted and played.speech is not None:
            self._ended = {played.speech: played}  # only the latest cut can be waiting


def _ms(played: Played) -> int:
    return int(played.position * 1000)
