"""The outbox: outgoing messages held back while a session's link is down.

``session.connection_lost()`` puts the session on hold: the agent must not speak and
whatever the app sends through ``session.outbox.send(message)`` is queued, up to
``Keeper(outbox_limit=...)`` messages; past that the oldest is dropped. Drops are
coalesced so a long outage cannot flood the journal: the first drop of a hold is
recorded (``OutboxDropped``) and emitted (``outbox.dropped``) at once, the rest are
recorded together when the link comes back. ``session.connection_restored()`` sends
the queue, in order, to the sink the adapter connected, then records
``LinkRestored(gap_s, flushed, dropped)``.

Everything here is synchronous: it runs on the hot path and does no I/O itself.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..journal import events as ev

if TYPE_CHECKING:
    from ..runtime.handle import Handle

__all__ = ["Outbox"]


class Outbox:
    """A small bounded queue between a session and the transport that carries its output."""

    def __init__(self, session: Handle, limit: int) -> None:
        self._session = session
        self.limit = limit
        self._queue: deque[Any] = deque()
        self._sink: Callable[[Any], Any] | None = None
        self.dropped = 0  # dropped during the current (or last) hold
        self._unrecorded = 0  # drops not yet written to the journal

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def queued(self) -> list[Any]:
        """The messages waiting, oldest first."""
        return list(self._queue)

    def connect(self, sink: Callable[[Any], Any]) -> None:
        """Send messages to ``sink`` from now on; queued ones go first unless on hold."""
        self._sink = sink
        if not self._session.state.on_hold:
            self._flush()

    def disconnect(self) -> None:
        """Stop sending; messages queue until a sink is connected again."""
        self._sink = None

    def send(self, message: Any) -> bool:
        """Send ``message`` now, or queue it while on hold; True when it was sent."""
        if self._session.state.on_hold or self._sink is None:
            self._enqueue(message)
            return False
        if self._queue:  # keep the order: what waited goes first
            self._flush()
        self._sink(message)
        return True

    def _enqueue(self, message: Any) -> None:
        if len(self._queue) >= self.limit:
            self._queue.popleft()
            self.dropped += 1
            if self.dropped == 1:
                self._session.record(ev.OutboxDropped, count=1)
                self._session.emit("outbox.dropped", count=1, limit=self.limit)
            else:
                self._unrecorded += 1
        self._queue.append(message)

    def _flush(self) -> int:
        """Send every queued message in order; on a sink error the rest stay queued."""
        sent = 0
        sink = self._sink
        if sink is None:
            return 0
        while self._queue:
            sink(self._queue[0])  # raises: this message and the rest stay queued
            self._queue.popleft()
            sent += 1
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
    unsent messages still queued, so the call can be repeated.
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
