"""Hold and the outbox: what a session keeps back while its link is down.

``session.connection_lost()`` puts the session on hold, and a resumed session starts
on hold until its transport calls ``session.connection_restored()``. On hold:

- whatever the app sends through ``session.outbox.send(message)`` is queued, up to
  ``Keeper(outbox_limit=...)`` entries; past that the oldest is dropped;
- agent speech (``session.agent_started``) is queued as :class:`HeldSpeech`
  (``session.held_speech``) instead of entering the conversation: the caller cannot
  hear it, so it is never counted as heard.

The queue is journaled (``link.outbox_queued``, ``link.outbox_sent``) and folded into
``state.outbox``, so a session resumed on another worker still delivers what was held.
``send(message, durable=False)`` keeps a message in this process only (audio frames:
worth nothing elsewhere, too big to journal). Drops are coalesced so a long outage
cannot flood the journal: the first drop of a hold is recorded (``OutboxDropped``) and
emitted (``outbox.dropped``) at once, the rest are recorded together when the link
comes back.

``connection_restored()`` sends the queue, in order, to the sink the adapter connected:
messages as they were sent, held speech as a ``HeldSpeech`` (its ``AgentStarted`` is
recorded as it goes out: from then on progress reports count what the caller hears),
then records ``LinkRestored(gap_s, flushed, dropped)``.

Everything here is synchronous: it runs on the hot path and does no I/O itself.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from ..journal import events as ev

if TYPE_CHECKING:
    from ..runtime.handle import Handle

__all__ = ["HeldSpeech", "Outbox", "lose_link", "restore_link"]


class HeldSpeech(msgspec.Struct, frozen=True, kw_only=True):
    """Agent speech recorded while the link was down: to be said once it is back."""

    utterance_id: str
    text: str = ""


class _Entry:
    """One queued entry: what the sink gets, and whether the journal holds it."""

    __slots__ = ("durable", "payload")

    def __init__(self, payload: Any, durable: bool) -> None:
        self.payload = payload
        self.durable = durable


class Outbox:
    """A small bounded queue between a session and the transport that carries its output.

    It starts with what the session's journal still holds (``state.outbox``).
    """

    def __init__(self, session: Handle, limit: int) -> None:
        self._session = session
        self.limit = limit
        self._queue: deque[_Entry] = deque(
            _Entry(
                HeldSpeech(utterance_id=h.utterance_id, text=h.text)
                if h.utterance_id is not None
                else h.message,
                True,
            )
            for h in session.state.outbox
        )
        self._sink: Callable[[Any], Any] | None = None
        self.dropped = 0  # dropped during the current (or last) hold
        self._unrecorded = 0  # drops not yet written to the journal

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def queued(self) -> list[Any]:
        """The entries waiting, oldest first (held speech as ``HeldSpeech``)."""
        return [e.payload for e in self._queue]

    @property
    def held_speech(self) -> list[HeldSpeech]:
        """The agent speech waiting for the link, oldest first."""
        return [e.payload for e in self._queue if isinstance(e.payload, HeldSpeech)]

    def connect(self, sink: Callable[[Any], Any]) -> None:
        """Send entries to ``sink`` from now on; queued ones go first unless on hold."""
        self._sink = sink
        if not self._session.state.on_hold:
            self._flush()

    def disconnect(self) -> None:
        """Stop sending; entries queue until a sink is connected again."""
        self._sink = None

    def send(self, message: Any, *, durable: bool = True) -> bool:
        """Send ``message`` now, or queue it while on hold; True when it was sent.

        A queued ``message`` is journaled (so it must be JSON-serialisable) unless
        ``durable`` is false: then it waits in this process only.

        Raises:
            CodecError: a durable message that JSON cannot carry; nothing is queued.
            SessionClosed / StaleEpochError: a durable message on a handle that may
                no longer record.
        """
        if self._session.state.on_hold or self._sink is None:
            self._enqueue(message, durable)
            return False
        if self._queue:  # keep the order: what waited goes first
            self._flush()
        self._sink(message)
        return True

    def hold_speech(self, utterance_id: str, text: str) -> None:
        """Queue agent speech (or update the text of speech already held)."""
        for entry in self._queue:
            payload = entry.payload
            if isinstance(payload, HeldSpeech) and payload.utterance_id == utterance_id:
                if payload.text != text:
                    self._session.record(ev.OutboxQueued, utterance_id=utterance_id, text=text)
                    entry.payload = HeldSpeech(utterance_id=utterance_id, text=text)
                return
        self._enqueue(HeldSpeech(utterance_id=utterance_id, text=text), True)

    def is_held(self, utterance_id: str) -> bool:
        """True while ``utterance_id`` is speech waiting for the link."""
        return any(
            isinstance(e.payload, HeldSpeech) and e.payload.utterance_id == utterance_id
            for e in self._queue
        )

    def _victim(self, durable: bool) -> int | None:
        """Which entry a full queue drops for a new one: the oldest, but a message kept
        in this process only (audio) never pushes out one the journal holds."""
        if durable:
            return 0
        return next((i for i, e in enumerate(self._queue) if not e.durable), None)

    def _count_drop(self) -> None:
        self.dropped += 1
        if self.dropped == 1:
            self._session.record(ev.OutboxDropped, count=1)
            self._session.emit("outbox.dropped", count=1, limit=self.limit)
        else:
            self._unrecorded += 1

    def _enqueue(self, payload: Any, durable: bool) -> None:
        dropped = 0
        if durable:  # refuse before anything changes: a dead handle, a value JSON cannot carry
            self._session.check_writable()
            ev.check_recorded(self._queued_event(payload, 0))
        if len(self._queue) >= self.limit:
            victim = self._victim(durable)
            if victim is None:  # nothing to push out for it: the new message is dropped
                self._count_drop()
                return
            dropped = int(self._queue[victim].durable)
            del self._queue[victim]
            self._count_drop()
        if durable:
            self._session.add(self._queued_event(payload, dropped))
        self._queue.append(_Entry(payload, durable))

    def _queued_event(self, payload: Any, dropped: int) -> ev.OutboxQueued:
        seq, at = self._session.state.seq + 1, self._session.clock.now()
        if isinstance(payload, HeldSpeech):
            return ev.OutboxQueued(
                seq=seq,
                at=at,
                utterance_id=payload.utterance_id,
                text=payload.text,
                dropped=dropped,
            )
        return ev.OutboxQueued(seq=seq, at=at, message=payload, dropped=dropped)

    def _flush(self) -> int:
        """Send every queued entry in order; on a sink error the rest stay queued."""
        sink = self._sink
        if sink is None or not self._queue:
            return 0
        sent = unrecorded = 0
        try:
            while self._queue:
                entry = self._queue[0]
                sink(entry.payload)  # raises: this entry and the rest stay queued
                self._queue.popleft()
                sent += 1
                if not entry.durable:
                    continue
                unrecorded += 1
                speech = entry.payload
                if isinstance(speech, HeldSpeech):  # it enters the conversation now
                    self._session.record(ev.OutboxSent, count=unrecorded)
                    unrecorded = 0
                    self._session.record(
                        ev.AgentStarted, utterance_id=speech.utterance_id, text=speech.text
                    )
        finally:
            if unrecorded:
                self._session.record(ev.OutboxSent, count=unrecorded)
        return sent

    def begin_hold(self) -> None:
        self.dropped = 0
        self._unrecorded = 0

    def end_hold(self) -> tuple[int, int]:
        """Flush and settle the drop count; returns ``(flushed, dropped)``."""
        flushed = self._flush()
        if self._unrecorded:
            self._session.record(ev.OutboxDropped, count=self._unrecorded)
            self._session.emit("outbox.dropped", count=self._unrecorded, limit=self.limit)
            self._unrecorded = 0
        return flushed, self.dropped


def lose_link(session: Handle, outbox: Outbox, reason: str = "") -> bool:
    """Put ``session`` on hold; False when it already was."""
    if session.state.on_hold:
        return False
    session.record(ev.LinkLost, reason=reason)
    outbox.begin_hold()
    session.emit("link.lost", reason=reason)
    return True


def restore_link(session: Handle, outbox: Outbox) -> float | None:
    """Flush the outbox in order and take ``session`` off hold; returns the gap in
    seconds, or None when it was not on hold.

    Raises whatever the outbox sink raises; the session then stays on hold with the
    unsent entries still queued, so the call can be repeated.
    """
    if not session.state.on_hold:
        return None
    session.check_writable()  # refuse before sending anything on a dead handle
    lost_at = session.state.link_lost_at
    flushed, dropped = outbox.end_hold()
    gap = max(0.0, session.clock.now() - lost_at) if lost_at is not None else 0.0
    session.record(ev.LinkRestored, gap_s=gap, flushed=flushed, dropped=dropped)
    session.emit("link.restored", latency_ms=gap * 1000.0, flushed=flushed, dropped=dropped)
    return gap
