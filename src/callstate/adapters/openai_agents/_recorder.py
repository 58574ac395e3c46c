"""What the caller and the agent said, from the Realtime server's raw events, into callstate."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agents.realtime.model import RealtimePlaybackTracker

from .._heard import heard_text

if TYPE_CHECKING:
    from ...session import Session

__all__ = ["Recorder"]

#: Bytes per millisecond of each output format (pcm16 at 24 kHz; G.711 at 8 kHz).
_BYTES_PER_MS = {"audio/pcm": 48, "audio/pcmu": 8, "audio/pcma": 8}


@dataclass
class _Utterance:
    """One assistant audio item: its callstate utterance and what of it arrived."""

    utterance_id: str
    transcript: str = ""
    audio_ms: int = 0
    first_audio: float | None = None  # monotonic time of its first audio chunk


class Recorder:
    """Folds the raw server events of one call (every Realtime session of it) into callstate.

    The caller's transcripts become ``user_said``, assistant items ``agent_started`` /
    ``agent_progress`` / ``agent_finished``, and a barge-in ``interrupt`` at the position
    the caller's playback reached (``cut``).
    """

    def __init__(self, session: Callable[[], Session]) -> None:
        self._session = session
        self._items: dict[str, _Utterance] = {}
        self._open: list[str] = []  # assistant item ids not finished or cut yet
        self._bytes_per_ms = 48
        self.tracker: RealtimePlaybackTracker | None = None  # the caller's playback, if known
        self.audio_out = False  # the current Realtime session has sent assistant audio
        self.expired = False  # the server said ``session_expired``
        self._noted: tuple[str, int, int] | None = None  # playback when the link closed

    def new_connection(self) -> None:
        """A new Realtime session: it has no assistant audio yet."""
        self.audio_out = False
        self.expired = False

    def on_server_event(self, event: dict[str, Any]) -> None:
        """Record one raw server event."""
        kind = event.get("type")
        if kind == "conversation.item.input_audio_transcription.completed":
            self.finish_open()
            text = str(event.get("transcript") or "").strip()
            if text:
                self._session().user_said(text)
        elif kind == "response.output_item.added":
            item = event.get("item") or {}
            if item.get("type") == "message" and item.get("role") == "assistant":
                self.finish_open()
                u = self._session().agent_started("")
                self._items[str(item.get("id"))] = _Utterance(u)
                self._open.append(str(item.get("id")))
        elif kind == "response.output_audio_transcript.delta":
            utt = self._items.get(str(event.get("item_id")))
            if utt is not None:
                utt.transcript += str(event.get("delta") or "")
        elif kind == "response.output_audio.delta":
            self._on_audio(str(event.get("item_id")), str(event.get("delta") or ""))
        elif kind == "response.output_audio_transcript.done":
            utt = self._items.get(str(event.get("item_id")))
            if utt is not None and event.get("item_id") in self._open:
                self._session().agent_progress(
                    utt.utterance_id, spoken_text="", text=utt.transcript
                )
        elif kind in ("session.created", "session.updated"):
            fmt = (((event.get("session") or {}).get("audio") or {}).get("output") or {}).get(
                "format"
            ) or {}
            self._bytes_per_ms = _BYTES_PER_MS.get(str(fmt.get("type")), self._bytes_per_ms)
        elif kind == "error" and (event.get("error") or {}).get("code") == "session_expired":
            self.expired = True

    def _on_audio(self, item_id: str, delta: str) -> None:
        utt = self._items.get(item_id)
        if utt is None:
            return
        self.audio_out = True
        if utt.first_audio is None:
            utt.first_audio = time.monotonic()
        utt.audio_ms += len(base64.b64decode(delta)) // self._bytes_per_ms

    def playing(self) -> tuple[str, int, int] | None:
        """The open assistant item the caller is hearing, the milliseconds played and received.

        With a playback tracker that is its state (nothing played yet is 0 ms of the
        newest item); without one, wall-clock time since the item's first audio, as the
        SDK estimates it. Never more than the audio received.
        """
        with_audio = [i for i in self._open if self._items[i].audio_ms > 0]
        if not with_audio:
            return None
        if self.tracker is not None:
            state = self.tracker.get_state()
            item_id = state.get("current_item_id")
            elapsed = state.get("elapsed_ms")
            if item_id not in with_audio or elapsed is None:
                return with_audio[-1], 0, self._items[with_audio[-1]].audio_ms
        else:
            item_id = with_audio[-1]
            first = self._items[item_id].first_audio or time.monotonic()
            elapsed = (time.monotonic() - first) * 1000
        received = self._items[str(item_id)].audio_ms
        return str(item_id), min(max(int(elapsed), 0), received), received

    def cut(self, item_id: str, audio_end_ms: int) -> None:
        """The caller barged in: ``item_id`` was heard up to ``audio_end_ms``."""
        utt = self._items.get(item_id)
        if utt is None or item_id not in self._open:
            return
        self._open.remove(item_id)
        if audio_end_ms >= utt.audio_ms and utt.audio_ms > 0:
            self._session().agent_finished(utt.utterance_id, text=utt.transcript)
            return
        s = self._session()
        s.agent_progress(utt.utterance_id, spoken_text="", text=utt.transcript)
        heard = heard_text(utt.transcript, audio_end_ms, utt.audio_ms)
        s.interrupt(heard_text=heard, audio_end_ms=audio_end_ms, utterance_id=utt.utterance_id)

    def finish_open(self) -> None:
        """Every open assistant item played to the end (the caller's next turn came)."""
        open_, self._open = self._open, []
        s = self._session()
        for item_id in open_:
            utt = self._items[item_id]
            s.agent_finished(utt.utterance_id, text=utt.transcript)

    def note_playback(self) -> None:
        """Keep where playback is now: closing the connection resets the SDK's trackers."""
        self._noted = self.playing()

    def cut_by_drop(self) -> Any:
        """The line dropped: the item playing is cut where playback stopped, the rest
        finished; returns the cut item of the session state (None if none was cut)."""
        playing, self._noted = self._noted or self.playing(), None
        if playing is None or playing[1] >= playing[2]:
            self.finish_open()
            return None
        item_id, played, _ = playing
        utterance_id = self._items[item_id].utterance_id
        self.cut(item_id, played)
        self.finish_open()
        s = self._session()
        return next((i for i in s.state.items if i.id == utterance_id), None)
