"""The recording core of a live session: fold, queue, writability, fencing, flush.

A :class:`Handle` is what every capability (tools, continuity, handoff, archive) is
handed for a session it acts on. ``Session`` builds on it and adds the speech, tool
and continuity methods users call. Recording folds an event into ``state`` and queues
it for the group-commit flusher: synchronous, no I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

from ..errors import CallstateError, SessionClosed, SessionFrozen
from ..journal import events as ev
from ..journal.limits import Limits, admit
from ..journal.state import SessionState, apply
from .flusher import Flusher
from .outgoing import Outgoing

if TYPE_CHECKING:
    from ..observe.recovery import Observer, RecoveryKind
    from .clock import Clock

__all__ = ["Handle"]

#: the event that may hold a result for the caller (``Handle.may_hold``)
_DELIVERY = ev.ToolDelivery
#: the events that may leave a call without its final outcome (``Handle.may_run``)
_OPENING: Final = frozenset({ev.ToolRequested, ev.ToolStarted, ev.ToolInDoubt, ev.ToolDeduplicated})
_NOTED: Final = _OPENING | {_DELIVERY}

_E = TypeVar("_E", bound="ev._Base")


class Handle:
    """A session this process owns at ``state.epoch``: the part capabilities see.

    Args:
        state: the session's folded state (owned by this handle from now on).
        flusher: the group commit that makes queued events durable.
        clock: the time events are stamped with.
        observer: where recovery events go.
        limits: the depth and size limits every recorded event is held to.
    """

    def __init__(
        self,
        state: SessionState,
        *,
        flusher: Flusher,
        clock: Clock,
        observer: Observer,
        limits: Limits | None = None,
    ) -> None:
        self.state = state
        self.limits = limits or Limits()
        #: the events not yet durable, and who waits for them (drained by the flusher)
        self.journal = Outgoing(state.seq)
        self.clock = clock
        self._flusher = flusher
        self._observer = observer
        self._error: CallstateError | None = None
        self._closed = False
        self._fenced = asyncio.Event()
        #: > 0 while recorded events may wait for the next commit (see ``lazily``)
        self._lazy = 0
        #: called with each event right after it is folded (see ``watch``)
        self._watchers: list[Callable[[ev.Event], None]] = []
        #: False once a walk found no held result and none was held since (see ``may_hold``)
        self._maybe_held = True
        #: False once a walk found every call settled and none opened since (``may_run``)
        self._maybe_open = True

    # -- identity and status -----------------------------------------------------------

    @property
    def id(self) -> str:
        """The session id."""
        return self.state.session_id

    @property
    def durable_seq(self) -> int:
        """The highest seq known to be durable in the store."""
        return self.journal.durable_seq

    @property
    def error(self) -> CallstateError | None:
        """Why this handle was fenced (a newer owner, a refused batch), else None."""
        return self._error

    @property
    def fenced(self) -> bool:
        """True once the handle was fenced (see ``error``): it never records again."""
        return self._error is not None

    async def wait_fenced(self) -> CallstateError:
        """Wait until the handle is fenced (a newer owner took the session); returns why."""
        await self._fenced.wait()
        return cast("CallstateError", self._error)  # set before the event, never cleared

    @property
    def closed(self) -> bool:
        """True once the handle was let go (``end`` or ``close``)."""
        return self._closed

    @property
    def writable(self) -> bool:
        """True while this handle may record (not fenced, closed or offered away)."""
        return self._error is None and not self._closed and self.state.status != "offered"

    def check_writable(self) -> None:
        """Raise why this handle may not record, if it may not.

        Raises:
            StaleEpochError (or the error that fenced it), SessionClosed, SessionFrozen.
        """
        if self._error is not None:
            raise self._error
        if self._closed:
            msg = f"session {self.id!r} handle is closed; resume it to record again"
            raise SessionClosed(msg, session_id=self.id)
        if self.state.status == "offered":
            msg = (
                f"session {self.id!r} was offered to agent {self.state.handoff_to!r} "
                f"(package {self.state.pending_handoff!r}); this handle may no longer record"
            )
            raise SessionFrozen(msg, session_id=self.id)

    # -- recording ---------------------------------------------------------------------

    def record(self, cls: type[_E], **fields: Any) -> _E:
        """Build a ``cls`` event with the next seq, fold it into state and queue it.

        No I/O. Raises as :meth:`check_writable` when the handle may not record.
        """
        return self.add(cls(seq=self.state.seq + 1, at=self.clock.now(), **fields))

    def append(self, cls: type[_E], **fields: Any) -> _E:
        """Like :meth:`record` without the writability check (ownership bookkeeping:
        the offer that freezes a handle, the resume that starts one)."""
        return self._queue(cls(seq=self.state.seq + 1, at=self.clock.now(), **fields))

    def add(self, event: _E) -> _E:
        """Fold ``event`` (built with the next seq) into state and queue it, if writable.

        The speech methods build their event and call this directly: the hot path, where
        passing fields on as keywords costs about a third of a call.
        """
        if self._error is not None or self._closed or self.state.status == "offered":
            self.check_writable()  # raises
        return self._queue(event)

    def _queue(self, event: _E) -> _E:
        # refuse ill-typed, too deep or too large values here: once journaled they
        # would make the session unloadable
        admit(event, self.limits)  # type: ignore[arg-type]
        apply(self.state, event)  # type: ignore[arg-type]
        kind = type(event)
        if kind in _NOTED:
            if kind is not _DELIVERY:
                self._maybe_open = True
            elif cast(ev.ToolDelivery, event).decision == "held":
                self._maybe_held = True
        self.journal.pending.append(event)  # type: ignore[arg-type]
        if self._lazy:
            self._flusher.mark_lazy(self)
        else:
            self._flusher.mark(self)
        if self._watchers:
            for watcher in tuple(self._watchers):
                watcher(event)  # type: ignore[arg-type]
        return event

    def may_hold(self) -> bool:
        """False when no call's spoken delivery can be held for the caller: the calls
        were walked and none was, and nothing was held since (the state changes only
        through this handle). A turn of a long call then skips walking every call."""
        if self._maybe_held and not (self.state.calls and self.state.owed):
            self._maybe_held = False
        return self._maybe_held

    def may_run(self) -> bool:
        """False when every call has its final outcome: the calls were walked and all
        had, and no event that opens a call was recorded since. A barge-in in a long
        call then skips walking every call for those it overtakes."""
        if self._maybe_open and not self.state.in_flight:
            self._maybe_open = False
        return self._maybe_open

    @contextlib.contextmanager
    def lazily(self) -> Iterator[None]:
        """Events recorded inside need not be durable at once: they ride the next commit
        (another event's, a ``flush``) instead of waking the flusher for themselves."""
        self._lazy += 1
        try:
            yield
        finally:
            self._lazy -= 1

    def watch(self, watcher: Callable[[ev.Event], None]) -> Callable[[], None]:
        """Call ``watcher(event)`` with every event this handle records, right after it
        is folded (synchronously: a watcher must be quick and must not raise).

        Returns:
            A function that stops the calls.
        """
        self._watchers.append(watcher)

        def unwatch() -> None:
            if watcher in self._watchers:
                self._watchers.remove(watcher)

        return unwatch

    def emit(
        self,
        kind: RecoveryKind,
        *,
        call_id: str | None = None,
        latency_ms: float | None = None,
        **data: Any,
    ) -> None:
        """Emit a ``RecoveryEvent`` about this session (never blocks, never raises)."""
        self._observer.note(
            kind,
            self.id,
            at=self.clock.now(),
            call_id=call_id,
            latency_ms=latency_ms,
            data=data,
            epoch=self.state.epoch,
            agent=self.state.agent,
        )

    # -- durability and ownership ------------------------------------------------------

    async def flush(self) -> None:
        """Wait until every event recorded so far is durable.

        Raises:
            StaleEpochError: a newer owner took the session; this handle is fenced.
            SessionFrozen: the session was offered to another agent (the offer itself
                was made durable by ``handoff``).
            StorageError: the store stayed unreachable past the keeper's flush timeout.
        """
        if self._error is not None:
            raise self._error
        if self.state.status == "offered":
            self.check_writable()  # raises SessionFrozen
        await self._flusher.wait_durable(self, self.state.seq)

    async def wait_durable(self, seq: int) -> None:
        """Wait until events up to ``seq`` are durable, whatever the handle's status
        (a handoff's offer, made durable after it froze the handle)."""
        await self._flusher.wait_durable(self, seq)

    def fence(self, error: CallstateError) -> None:
        """Mark this handle unusable; waiters and later calls get ``error``.

        The first fence emits one ``session.fenced`` recovery event and wakes
        :meth:`wait_fenced`: whatever feeds this handle (a pipeline) should stop.
        """
        if self._error is None:
            self._error = error
            self._fenced.set()
            self.emit("session.fenced", error_type=type(error).__name__, reason=str(error))
        self.journal.fail(error)

    def mark_closed(self) -> None:
        """Let go of the handle: it records nothing more."""
        self._closed = True
