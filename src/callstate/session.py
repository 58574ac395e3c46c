"""Session: the live handle on one owned session.

Recording methods (``user_said``, ``agent_progress``, …) are synchronous and do no
I/O: they fold the event into ``state`` and queue it for the keeper's group-commit
flusher. ``await flush()`` returns once everything recorded so far is durable.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, TypeVar

from .continuity.link import Outbox, lose_link, restore_link
from .errors import CallstateError, SessionClosed, SessionFrozen
from .journal import events as ev
from .journal.context import build_messages
from .journal.state import SessionState, apply
from .tools import barge_in as _barge_in
from .tools import guard as _guard
from .tools import lifecycle as _tool_recovery
from .tools.reconcile import InDoubtDecision

if TYPE_CHECKING:
    from .continuity.plan import RecoveryPlan
    from .handoff.flow import Summarize
    from .handoff.package import HandoffPackage
    from .keeper import Keeper
    from .storage.base import PackageRow
    from .tools.registry import ToolOutcome

__all__ = ["Session"]

_E = TypeVar("_E", bound="ev._Base")


class Session:
    """A session this process owns at ``state.epoch``. Create through ``Keeper``."""

    def __init__(self, keeper: Keeper, state: SessionState) -> None:
        self._keeper = keeper
        self.state = state
        self.recovery: RecoveryPlan | None = None  # set on resumed sessions
        #: outgoing messages, held back while the link is down (see ``connection_lost``)
        self.outbox = Outbox(self, keeper.outbox_limit)
        self._end_failed = False
        self._pending: list[ev.Event] = []
        self._durable_seq = state.seq
        self._snapshot_seq = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        #: a handoff package to store with the batch holding the offer (then None again)
        self._package: PackageRow | None = None
        self._error: CallstateError | None = None
        self._closed = False
        #: on a resumed session, how each call a crash left without an outcome was resolved
        self.in_doubt: list[InDoubtDecision] = []

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
        return self._add(cls(seq=self.state.seq + 1, at=self._keeper.clock.now(), **fields))

    def _append(self, cls: type[_E], **fields: Any) -> _E:
        """Like ``_record`` but without the writability check (for fencing bookkeeping)."""
        return self._queue(cls(seq=self.state.seq + 1, at=self._keeper.clock.now(), **fields))

    def _add(self, event: _E) -> _E:
        """Fold ``event`` (built with the next seq) into state and queue it, if writable.

        The speech methods build their event and call this directly: the hot path, where
        passing fields on as keywords costs about a third of a call.
        """
        if self._error is not None or self._closed or self.state.status == "offered":
            self._check_writable()  # raises
        return self._queue(event)

    def _queue(self, event: _E) -> _E:
        # refuse ill-typed values here: once journaled they would make the session unloadable
        ev.check_recorded(event)  # type: ignore[arg-type]
        apply(self.state, event)  # type: ignore[arg-type]
        self._pending.append(event)  # type: ignore[arg-type]
        self._keeper._flusher.mark(self)
        return event

    def user_partial(self, text: str) -> None:
        """Record an interim transcript of what the caller is saying."""
        seq, at = self.state.seq + 1, self._keeper.clock.now()
        self._add(ev.UserPartial(seq=seq, at=at, text=text))

    def user_said(self, text: str) -> None:
        """Record a final user turn; results held since a barge-in are then reconciled."""
        seq, at = self.state.seq + 1, self._keeper.clock.now()
        self._add(ev.UserTurn(seq=seq, at=at, text=text))
        if self.state.owed:
            _guard.reconcile_held(self)

    def agent_started(self, text: str = "", *, utterance_id: str | None = None) -> str:
        """Record the start of an agent utterance; returns its id."""
        seq, at = self.state.seq + 1, self._keeper.clock.now()
        uid = utterance_id if utterance_id is not None else f"u{seq}"
        self._add(ev.AgentStarted(seq=seq, at=at, utterance_id=uid, text=text))
        return uid

    def agent_progress(
        self, utterance_id: str, *, spoken_text: str, text: str | None = None
    ) -> None:
        """Record how much of an utterance the caller has heard (e.g. from TTS word timings).

        ``text`` replaces the utterance's full text when it grew while streaming.
        """
        seq, at = self.state.seq + 1, self._keeper.clock.now()
        self._add(
            ev.AgentProgress(
                seq=seq, at=at, utterance_id=utterance_id, spoken_text=spoken_text, text=text
            )
        )

    def agent_finished(self, utterance_id: str, *, text: str | None = None) -> None:
        """Record that an utterance played to the end."""
        seq, at = self.state.seq + 1, self._keeper.clock.now()
        self._add(ev.AgentFinished(seq=seq, at=at, utterance_id=utterance_id, text=text))

    def update_userdata(self, values: dict[str, Any] | None = None, /, **kw: Any) -> None:
        """Merge keys into the session's app state (``None`` values are kept as None)."""
        data = {**(values or {}), **kw}
        self._record(ev.UserdataPatch, set=data)

    def remove_userdata(self, *keys: str) -> None:
        """Remove keys from the session's app state."""
        self._record(ev.UserdataPatch, unset=list(keys))

    # -- tool calls and barge-in -------------------------------------------------------

    async def run_tool(
        self,
        name: str,
        args: dict[str, Any] | None = None,
        *,
        call_id: str | None = None,
        utterance_id: str | None = None,
    ) -> ToolOutcome:
        """Run a registered tool through the guard and return how it ended.

        The intent is durable before the tool starts; a repeated ``call_id`` returns the
        recorded outcome (``deduplicated=True``) without running the tool again. A write
        (or a cancellable read) asked for by a generation the caller interrupted before
        the call started is not run and ends ``cancelled``. An unknown tool name or
        arguments that do not fit end ``failed`` (the model must see that).

        Args:
            name: the registered tool.
            args: keyword arguments for the tool (JSON-serialisable).
            call_id: the model's call id (default: a fresh one).
            utterance_id: the agent utterance (generation) that asked for the call
                (default: the one under way since the caller last spoke).

        Raises:
            ToolArgumentsError: ``args``/``call_id`` malformed, or a ``call_id`` reused
                for another tool; nothing is recorded.
            PayloadTooLarge: ``args`` over the registry's size cap.
            SessionClosed: the handle may not record.
            StaleEpochError: the session was taken over before the intent was durable.
        """
        return await _guard.run_tool(self, name, args, call_id=call_id, utterance_id=utterance_id)

    def interrupt(
        self,
        *,
        heard_text: str | None = None,
        audio_end_ms: int | None = None,
        utterance_id: str | None = None,
    ) -> list[str]:
        """Record a barge-in: truncate the current utterance to what the caller heard.

        The unheard rest is kept as ``state.unspoken``. Calls in flight are marked
        overtaken: their results enter the context when they land, but their spoken
        delivery is held until the caller's turn ends. Running calls of tools with
        ``on_interrupt="cancel"`` are cancelled.

        Args:
            heard_text: what the caller heard (default: the last ``agent_progress``).
            audio_end_ms: where playback stopped, for adapters that truncate audio.
            utterance_id: the utterance cut off (default: the current one).

        Returns:
            The ids of the calls overtaken.
        """
        return _barge_in.interrupt(
            self, heard_text=heard_text, audio_end_ms=audio_end_ms, utterance_id=utterance_id
        )

    async def contradict(self, call_id: str, *, reason: str = "") -> ToolOutcome:
        """The caller contradicted a write: undo it with its ``compensate`` tool.

        Waits for the write if it is still running. The compensating call runs through
        the guard (call id ``<call_id>~undo``); once it succeeds the write's delivery is
        ``compensated``.

        Returns:
            The compensating call's outcome.

        Raises:
            ToolError: the call is unknown, a read, did not succeed, or has no
                ``compensate`` tool (then the caller must be told what was done).
            UnknownTool: the compensate tool is not registered.
        """
        return await _barge_in.contradict(self, call_id, reason)

    # -- handoff -----------------------------------------------------------------------

    async def handoff(
        self,
        *,
        to: str,
        reason: str = "",
        summary: str | None = None,
        max_items: int | None = None,
        summarize: Summarize | None = None,
    ) -> HandoffPackage:
        """Offer the session to agent ``to``: freeze this handle and store a signed package.

        From the moment this is called the handle records nothing more (its recording
        methods and ``flush`` raise ``SessionFrozen``). The returned package is durable
        in the store: ``keeper.accept(package_id)`` works from any process sharing the
        store and secret. Calls still running complete, and their outcomes land in
        whoever owns the session next. Unaccepted, it can be taken back with
        ``keeper.reclaim`` after the keeper's ``handoff_timeout``.

        Args:
            to: the target agent.
            reason: why the call is handed over.
            summary: a note from this agent to the target, carried in the package.
            max_items: keep only about this many newest conversation items; the rest
                is replaced by one summary (a tool call is never cut from its result).
            summarize: ``summarize(messages) -> str`` (or awaitable) for the trimmed
                part; default the keeper's ``summarize``, else a plain summary.

        Raises:
            SessionFrozen / SessionClosed / StaleEpochError: the handle may not record.
            ConfigError: the keeper has no ``secret`` to sign with.
            PayloadTooLarge: the package is over the keeper's ``handoff_max_bytes``.
            HandoffError: a bad argument; the offer is withdrawn on any failure.
        """
        from .handoff.flow import offer

        return await offer(
            self,
            to=to,
            reason=reason,
            summary=summary,
            max_items=max_items,
            summarize=summarize,
        )

    # -- reading -----------------------------------------------------------------------

    def context(self, *, system: str | None = None) -> list[dict[str, Any]]:
        """The conversation as OpenAI-format chat messages, as the caller heard it."""
        return build_messages(self.state, system=system)

    # -- continuity --------------------------------------------------------------------

    @property
    def on_hold(self) -> bool:
        """True while the link is down: the agent must not speak."""
        return self.state.on_hold

    def connection_lost(self, reason: str = "") -> None:
        """The link dropped: put the session on hold; ``outbox`` queues until it is back.

        Calling it again while on hold does nothing.
        """
        lose_link(self, reason)

    def connection_restored(self) -> float | None:
        """The link is back: send what ``outbox`` held, in order, and record the gap.

        Returns:
            The gap in seconds, or None when the session was not on hold.
        """
        return restore_link(self)

    def resume_token(self, *, ttl: float | None = None, bind_caller: bool = True) -> str:
        """A signed, URL-safe token that resumes this session (see ``Keeper.resume``).

        It carries the session id, this epoch, an expiry (``ttl`` seconds, default
        ``Keeper(token_ttl=...)``) and, unless ``bind_caller`` is false, a keyed hash of
        the caller. Each resume should hand the client a fresh one.

        Raises:
            ConfigError: the keeper has no ``secret`` to sign with.
        """
        return self._keeper._issue_token(self, ttl=ttl, bind_caller=bind_caller)

    async def fail(self, reason: str = "failed", **end_options: Any) -> None:
        """End the call as failed: like ``end``, archived with outcome ``failed``."""
        self._end_failed = True
        await self.end(reason, **end_options)

    # -- durability --------------------------------------------------------------------

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
            self._check_writable()  # raises SessionFrozen
        await self._keeper._flusher.wait_durable(self, self.state.seq)

    async def end(self, reason: str = "ended", *, tool_grace: float = 5.0) -> None:
        """End the call: record it, flush, archive it, and release the lease.

        Tool calls still running get ``tool_grace`` seconds to finish, then are
        cancelled; no call is left without an outcome (see ``settle_calls``).
        The session stays resumable within the resume window.
        """
        self._check_writable()
        await _tool_recovery.settle_calls(self, grace=tool_grace)
        self._record(ev.SessionEnded, reason=reason, failed=self._end_failed)
        await self.flush()
        await self._keeper._on_ended(self)
        await self._release()

    async def close(self) -> None:
        """Flush and let go of this handle without ending the call (e.g. on shutdown)."""
        if self._closed:
            return
        await _tool_recovery.release_runs(self)  # their calls stay in doubt until resumed
        try:
            if self._error is None and self.state.status != "offered":
                await self.flush()  # an offered handle's events were made durable by handoff
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
