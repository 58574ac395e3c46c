"""The agent's speech: each LLM response is one utterance, recorded as it actually played.

The LLM's frames give an utterance its text as generated; the output transport's frames
say how much of it played (``TTSTextFrame`` and audio chunks are pushed as they play)
and when it played out. A barge-in truncates it to what played; the rest is unspoken.
An utterance stays open while the calls it asked for run, so a barge-in during them
interrupts the generation that asked (and its queued writes never run).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from pipecat.frames.frames import (
    Frame,
    FunctionCallsStartedFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    OutputAudioRawFrame,
    TTSTextFrame,
)

from ...session import Session

__all__ = ["Speech"]

_SEEN_FRAMES = 64  # barge-ins remembered, to record each once


@dataclass(slots=True, eq=False)
class _Utterance:
    """One agent response (or one spoken ``TTSSpeakFrame``) and how much of it played."""

    uid: str
    kind: Literal["llm", "speak"]
    generated: list[str] = field(default_factory=list)
    played: list[tuple[str, bool]] = field(default_factory=list)  # (text, spaces included)
    audio_ms: float = 0.0
    speech_done: bool = False
    calls: list[str] = field(default_factory=list)
    closed: bool = False
    recorded: tuple[str, str] = ("", "")  # (text, heard) last written to the session

    def text(self) -> str:
        if self.kind == "speak":
            return self.heard()
        return "".join(self.generated).strip()

    def heard(self) -> str:
        out = ""
        for text, spaced in self.played:
            if out and not spaced and not out[-1].isspace() and not text[:1].isspace():
                out += " "
            out += text
        return out.strip()


class Speech:
    """Agent utterances of one session, fed by the LLM's and the output's frames."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.call_utterance: dict[str, str] = {}  # tool call id -> uid of the response that asked
        self._utt: _Utterance | None = None  # the response being generated or played
        self._playing: _Utterance | None = None  # the response the transport is releasing
        self._starts: dict[int, _Utterance] = {}  # LLMFullResponseStartFrame id -> response
        self._open: dict[str, _Utterance] = {}  # uid -> response with calls still open
        self._seen: deque[int] = deque(maxlen=_SEEN_FRAMES)

    @property
    def speaking(self) -> bool:
        """A response is being generated or played."""
        return self._playing is not None or (self._utt is not None and not self._utt.closed)

    # -- from the LLM ------------------------------------------------------------------

    def response_started(self, frame: LLMFullResponseStartFrame) -> None:
        if self._utt is not None:
            self._finish(self._utt)  # a new response: the last one is over
        utt = _Utterance(uid=self.session.agent_started(""), kind="llm")
        self._utt = utt
        self._open[utt.uid] = utt
        self._starts[frame.id] = utt

    def generated(self, frame: LLMTextFrame) -> None:
        utt = self._utt
        if utt is not None and not utt.closed and frame.skip_tts is not True:
            utt.generated.append(frame.text)

    def calls_started(self, frame: FunctionCallsStartedFrame) -> None:
        utt = self._utt
        if utt is None:
            return
        for fc in frame.function_calls:
            if fc.tool_call_id not in self.call_utterance:
                self.call_utterance[fc.tool_call_id] = utt.uid
                utt.calls.append(fc.tool_call_id)

    def response_generated(self, _frame: Frame) -> None:
        if self._utt is not None:
            self._record(self._utt)

    def call_ended(self, call_id: str) -> None:
        uid = self.call_utterance.get(call_id)
        utt = self._open.get(uid) if uid is not None else None
        if utt is not None:
            self._maybe_finish(utt)

    # -- from the output transport -------------------------------------------------------

    def playing_started(self, frame: LLMFullResponseStartFrame) -> None:
        self._playing = self._starts.pop(frame.id, None)

    def played_text(self, frame: TTSTextFrame) -> None:
        utt = self._playing
        if utt is None:
            if self._utt is None or self._utt.closed:
                # speech with no LLM response around it (a TTSSpeakFrame)
                self._utt = _Utterance(uid=self.session.agent_started(""), kind="speak")
            utt = self._utt
        if utt.closed:
            return  # released after the barge-in was recorded
        utt.played.append((frame.text, frame.includes_inter_frame_spaces))
        self._record(utt)

    def played_audio(self, frame: OutputAudioRawFrame) -> None:
        utt = self._playing or self._utt
        if utt is not None and not utt.closed and frame.sample_rate > 0:
            samples = len(frame.audio) / (2 * max(1, frame.num_channels))
            utt.audio_ms += samples * 1000.0 / frame.sample_rate

    def playing_ended(self, _frame: Frame) -> None:
        utt, self._playing = self._playing, None
        if utt is not None:
            utt.speech_done = True
            self._maybe_finish(utt)

    def speech_stopped(self, _frame: Frame) -> None:
        utt = self._utt
        if self._playing is None and utt is not None and utt.kind == "speak":
            utt.speech_done = True
            self._maybe_finish(utt)

    # -- barge-in ----------------------------------------------------------------------------

    def barge_in(self, frame: Frame, *, at_output: bool = False) -> None:
        """Record a barge-in: truncate the response to what played, overtake open calls.

        Recorded where it is seen first: at the LLM, before Pipecat cancels the calls it
        overtakes (``at_output`` is the fallback for one the LLM never saw).
        """
        if at_output:
            # everything the transport released before this frame has been seen
            self._playing = None
            self._starts = {k: u for k, u in self._starts.items() if not u.closed}
        key = min(frame.id, frame.broadcast_sibling_id or frame.id)
        if key in self._seen:
            return
        self._seen.append(key)
        utt = self._utt if self._utt is not None and not self._utt.closed else None
        if utt is None:
            if self.session.state.in_flight:
                self.session.interrupt()
            return
        self._record(utt)
        utt.closed = True
        self._utt = None
        self._open.pop(utt.uid, None)
        self.session.interrupt(
            heard_text=utt.heard(), audio_end_ms=round(utt.audio_ms), utterance_id=utt.uid
        )

    # -- recording -------------------------------------------------------------------------

    def _record(self, utt: _Utterance) -> None:
        now = (utt.text(), utt.heard())
        if now != utt.recorded and not utt.closed:
            utt.recorded = now
            self.session.agent_progress(utt.uid, spoken_text=now[1], text=now[0])

    def _maybe_finish(self, utt: _Utterance) -> None:
        """Finish a response once it has played out and the calls it asked for ended."""
        calls = self.session.state.calls
        if utt.speech_done and all(
            (c := calls.get(cid)) is None or c.terminal for cid in utt.calls
        ):
            self._finish(utt)

    def _finish(self, utt: _Utterance) -> None:
        self._open.pop(utt.uid, None)
        if self._utt is utt:
            self._utt = None
        if utt.closed:
            return
        utt.closed = True
        self.session.agent_finished(utt.uid, text=utt.text() or None)
