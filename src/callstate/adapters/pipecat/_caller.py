"""The caller's words as a realtime (speech-to-speech) LLM service transcribes them.

Such a service transcribes the caller itself and pushes ``TranscriptionFrame`` upstream.
The user aggregator writes a user turn only once its turn strategy ends the turn (with
no local VAD before it, never; with one, often after the reply has begun), so for a
realtime service the journal takes the service's transcript instead, in the order the
server gave it: OpenAI Realtime sends one final transcript per caller item, recorded
at once; Gemini Live sends it in pieces, recorded as one turn when the model's reply
starts or the aggregator ends the turn, whichever comes first.
"""

from __future__ import annotations

from pipecat.frames.frames import TranscriptionFrame

from ...session import Session

__all__ = ["CallerWords"]


class CallerWords:
    """Records a realtime service's transcript of the caller as the caller's turns."""

    def __init__(self, session: Session, *, whole: bool) -> None:
        """``whole``: each ``TranscriptionFrame`` is a whole turn (OpenAI Realtime)."""
        self.session = session
        self.whole = whole
        self._pieces: list[str] = []

    def transcribed(self, frame: TranscriptionFrame) -> None:
        if not frame.text.strip():
            return
        if self.whole:
            self.session.user_said(frame.text.strip())
        else:
            self._pieces.append(frame.text)

    def turn_ended(self) -> None:
        """The caller's turn is over (the reply starts): record what they said, if anything."""
        text = " ".join(" ".join(p.strip() for p in self._pieces).split())
        self._pieces.clear()
        if text:
            self.session.user_said(text)
