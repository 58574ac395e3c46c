"""Recording the call in conversation order, whatever order the server reports it in.

Input transcription runs beside the response: a caller's transcript often arrives after
the answer to it began. The caller's item joins the conversation first (its
``conversation.item.added``), so that is where the adapter puts the turn: what the
session is told after it (the answer, its progress, a barge-in, a tool call) waits
until the transcript is in, or ``transcript_wait_s`` passed, or a restore needs the
state (the turn then gets the partial transcript, if any).

Playback: ``playback()`` returns ``(item_id, played_ms)`` for the assistant item whose
audio the caller is hearing (a bare ``played_ms`` means the newest item), or ``None``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...session import Session
from .._heard import heard_text

__all__ = ["Pending", "Playback", "TurnOrder"]

#: ``(item_id, played_ms)`` of the item playing, a bare ``played_ms`` of the newest, or None
Playback = Callable[[], "tuple[str, int] | int | None"]


@dataclass
class Pending:
    """A caller item whose transcript has not arrived: what follows it waits."""

    item_id: str
    text: str = ""
    ready: bool = False
    timer: asyncio.TimerHandle | None = None


class TurnOrder:
    """The recording-order half of ``RealtimeAdapter``."""

    callstate: Session
    config: dict[str, Any]
    playback: Playback | None
    transcript_wait_s: float
    _texts: dict[str, str]
    _audio: dict[str, int]
    _partials: dict[str, str]
    _unfinished: list[str]  # assistant items received and not finished, oldest first
    _queue: deque[Pending | Callable[[], None]]
    _waits: dict[str, Pending]
    _server_transcribes: bool

    if TYPE_CHECKING:

        async def _send_internal(self, event: dict[str, Any]) -> str: ...
        async def _send_truncate(self, event: dict[str, Any], internal: bool) -> None: ...

    @property
    def _open(self) -> str | None:
        """The newest assistant item not finished yet."""
        return self._unfinished[-1] if self._unfinished else None

    def _later(self, op: Callable[[], None]) -> None:
        """Run a recording now, or once the caller items before it are transcribed."""
        if self._queue:
            self._queue.append(op)
        else:
            op()

    def _transcribing(self) -> bool:
        audio_in = (self.config.get("audio") or {}).get("input") or {}
        return self._server_transcribes or bool(audio_in.get("transcription"))

    # -- caller items ------------------------------------------------------------------

    def _caller_item(self, item_id: str) -> None:
        """A caller audio item joined the conversation: the turns before it played out."""
        self._finish_open()
        if not self._transcribing() or item_id in self._waits:
            return
        wait = Pending(item_id)
        loop = asyncio.get_running_loop()
        wait.timer = loop.call_later(self.transcript_wait_s, self._give_up, item_id)
        self._waits[item_id] = wait
        self._queue.append(wait)

    def _caller_said(self, item_id: str, text: str) -> None:
        """The transcript of a caller item arrived: record it where the item is."""
        wait = self._waits.pop(item_id, None)
        if wait is None:
            self._later(lambda: self._user_said(text))
            return
        if wait.timer is not None:
            wait.timer.cancel()
        wait.text, wait.ready = text, True
        self._drain()

    def _give_up(self, item_id: str) -> None:
        """No transcript in time: the turn gets its partial transcript, the rest goes on."""
        wait = self._waits.pop(item_id, None)
        if wait is not None:
            if wait.timer is not None:
                wait.timer.cancel()
            wait.text, wait.ready = self._partials.get(item_id, ""), True
            self._drain()

    def _release_all(self) -> None:
        """Record everything waiting now (before a restore or handoff reads the state)."""
        for item_id in list(self._waits):
            self._give_up(item_id)

    def _drain(self) -> None:
        while self._queue:
            head = self._queue[0]
            if isinstance(head, Pending):
                if not head.ready:
                    return
                self._queue.popleft()
                self._user_said(head.text)
            else:
                self._queue.popleft()
                head()

    def _user_said(self, text: str) -> None:
        if text and self.callstate.writable:
            self.callstate.user_said(text)

    # -- assistant items ---------------------------------------------------------------

    def _state_item(self, item_id: str) -> Any:
        return next(
            (
                i
                for i in reversed(self.callstate.state.items)
                if i.kind == "assistant" and i.id == item_id
            ),
            None,
        )

    def _finish_open(self) -> None:
        """The unfinished utterances played out: nothing cut them before the next turn."""
        done, self._unfinished = self._unfinished, []
        for uid in done:
            self._later(lambda uid=uid: self._finished(uid))  # type: ignore[misc]

    def _finished(self, uid: str, text: str | None = None) -> None:
        item = self._state_item(uid)
        if item is not None and not item.done:
            self.callstate.agent_finished(uid, text=text)

    def _played(self) -> tuple[str, int] | None:
        """What ``playback`` says is playing, as ``(item_id, played_ms)``."""
        if self.playback is None:
            return None
        played = self.playback()
        if played is None or not self._unfinished:
            return None
        if isinstance(played, int):
            return self._unfinished[-1], played
        return played

    async def _barge_in(self) -> None:
        """The caller talks over the agent: cut the item playing where it was heard."""
        played = self._played()
        if played is None:
            return
        item_id, ms = played
        if item_id not in self._unfinished:
            return  # not an item of this Realtime session still playing
        at = self._unfinished.index(item_id)
        for uid in self._unfinished[:at]:  # played out before it
            self._later(lambda uid=uid: self._finished(uid))  # type: ignore[misc]
        for uid in reversed(self._unfinished[at + 1 :]):  # arrived, never heard
            await self._truncate(uid, 0, None)
        await self._truncate(item_id, ms, None)

    async def _truncate(self, item_id: str, played_ms: int, event: dict[str, Any] | None) -> None:
        """Truncate an item at the played position, never past the audio received."""
        have = self._audio.get(item_id)
        if have is None:
            return  # not an audio item of this Realtime session
        end = max(0, min(played_ms, have))
        out: dict[str, Any] = (
            dict(event)
            if event is not None
            else {"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0}
        )
        out["audio_end_ms"] = end
        await self._send_truncate(out, event is None)
        text = self._texts.get(item_id)
        if item_id in self._unfinished:
            self._unfinished.remove(item_id)
        self._later(lambda: self._interrupted(item_id, text, end, have))

    def _interrupted(self, item_id: str, text: str | None, end: int, have: int) -> None:
        item = self._state_item(item_id)
        if item is not None and not item.done:
            heard = heard_text(text if text is not None else item.text, end, have)
            self.callstate.interrupt(heard_text=heard, audio_end_ms=end, utterance_id=item_id)
