"""Session: the live handle on one owned session.

Recording methods (``user_said``, ``agent_progress``, …) are synchronous and do no
I/O: they fold the event into ``state`` and queue it for the keeper's group-commit
flusher. ``await flush()`` returns once everything recorded so far is durable.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, TypeVar

from . import events as ev
from .context import build_messages
from .errors import CallstateError, SessionClosed, SessionFrozen
from .state import SessionState, apply

if TYPE_CHECKING:
    from .keeper import Keeper

__all__ = ["Session"]

_E = TypeVar("_E", bound="ev._Base")


class Session:
    """A session this process owns at ``state.epoch``. Create through ``Keeper``."""

    def __init__(self, keeper: Keeper, state: SessionState) -> None:
        self._keeper = keeper
        self.state = state
        self.recovery: Any = None  # a RecoveryPlan on resumed sessions
        self._pending: list[ev.Event] = []
        self._durable_seq = state.seq
        self._snapshot_seq = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._error: CallstateError | None = None
        self._closed = False

    # -- identity ----------------------------------------------------------------------

    @property
    def id(self) -> str:
        """The session id."""
        return self.state.session_id

    @property
    def keeper(self) -> Keeper:
        """The keeper that owns this handle."""
        return self._keeper

    @property
    def durable_seq(self) -> int:
        """The highest seq known to be durable in the store."""
        return self._durable_seq

    def __repr__(self) -> str:
        s = self.state
        return f"<Session {s.session_id} agent={s.agent!r} epoch={s.epoch} seq={s.seq} {s.status}>"

    # -- the hot path ------------------------------------------------------------------

    def _check_writable(self) -> None:
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

    def _record(self, cls: type[_E], **fields: Any) -> _E:
        """Build a ``cls`` event with the next seq, fold it into state and queue it. No I/O."""
        self._check_writable()
        return self._append(cls, **fields)

    def _append(self, cls: type[_E], **fields: Any) -> _E:
        """Like ``_record`` but without the writability check (for fencing bookkeeping)."""
        event = cls(seq=self.state.seq + 1, at=self._keeper.clock.now(), **fields)
        # refuse ill-typed values here: once journaled they would make the session unloadable
        ev.check_event(event)  # type: ignore[arg-type]
        apply(self.state, event)  # type: ignore[arg-type]
        self._pending.append(event)  # type: ignore[arg-type]
        self._keeper._flusher.mark(self)
        return event

    def user_partial(self, text: str) -> None:
        """Record an interim transcript of what the caller is saying."""
        self._record(ev.UserPartial, text=text)

    def user_said(self, text: str) -> None:
        """Record a final user turn."""
        self._record(ev.UserTurn, text=text)

    def agent_started(self, text: str = "", *, utterance_id: str | None = None) -> str:
        """Record the start of an agent utterance; returns its id."""
        uid = utterance_id if utterance_id is not None else f"u{self.state.seq + 1}"
        self._record(ev.AgentStarted, utterance_id=uid, text=text)
        return uid

    def agent_progress(
        self, utterance_id: str, *, spoken_text: str, text: str | None = None
    ) -> None:
        """Record how much of an utterance the caller has heard (e.g. from TTS word timings).

        ``text`` replaces the utterance's full text when it grew while streaming.
        """
        self._record(
            ev.AgentProgress, utterance_id=utterance_id, spoken_text=spoken_text, text=text
        )

    def agent_finished(self, utterance_id: str, *, text: str | None = None) -> None:
        """Record that an utterance played to the end."""
        self._record(ev.AgentFinished, utterance_id=utterance_id, text=text)

    def update_userdata(self, values: dict[str, Any] | None = None, /, **kw: Any) -> None:
        """Merge keys into the session's app state (``None`` values are kept as None)."""
        data = {**(values or {}), **kw}
        self._record(ev.UserdataPatch, set=data)

    def remove_userdata(self, *keys: str) -> None:
        """Remove keys from the session's app state."""
        self._record(ev.UserdataPatch, unset=list(keys))

    # -- reading -----------------------------------------------------------------------

    def context(self, *, system: str | None = None) -> list[dict[str, Any]]:
        """The conversation as OpenAI-format chat messages, as the caller heard it."""
        return build_messages(self.state, system=system)

    # -- durability --------------------------------------------------------------------

    async def flush(self) -> None:
        """Wait until every event recorded so far is durable.

        Raises:
            StaleEpochError: a newer owner took the session; this handle is fenced.
            StorageError: the store stayed unreachable past the keeper's flush timeout.
        """
        if self._error is not None:
            raise self._error
        await self._keeper._flusher.wait_durable(self, self.state.seq)

    async def end(self, reason: str = "ended") -> None:
        """End the call: record it, flush, archive it, and release the lease.

        The session stays resumable within the resume window.
        """
        self._record(ev.SessionEnded, reason=reason)
        await self.flush()
        await self._keeper._on_ended(self)
        await self._release()

    async def close(self) -> None:
        """Flush and let go of this handle without ending the call (e.g. on shutdown)."""
        if self._closed:
            return
        try:
            if self._error is None:
                await self.flush()
        finally:
            await self._release()

    async def _release(self) -> None:
        self._closed = True
        await self._keeper._release(self)

    def _fence(self, error: CallstateError) -> None:
        """Mark this handle unusable; waiters and later calls get ``error``."""
        if self._error is None:
            self._error = error
        self._pending.clear()
        for _, fut in self._waiters:
            if not fut.done():
                fut.set_exception(error)
        self._waiters.clear()
