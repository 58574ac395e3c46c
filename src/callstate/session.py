"""Session: the live handle on one owned session.

Recording methods (``user_said``, ``agent_progress``, …) are synchronous and do no
I/O: they fold the event into ``state`` and queue it for the keeper's group-commit
flusher. ``await flush()`` returns once everything recorded so far is durable.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .archive.close import archive_ended
from .continuity.link import HeldSpeech, Outbox, lose_link, restore_link
from .continuity.resume import session_token
from .journal import events as ev
from .journal.context import build_messages
from .runtime.handle import Handle
from .tools import barge_in, feed, guard, lifecycle
from .tools.outcomes import reconcile_held
from .tools.reconcile import InDoubtDecision

if TYPE_CHECKING:
    from .archive.followups import FollowUps
    from .archive.records import Archive
    from .continuity.plan import RecoveryPlan
    from .handoff.flow import HandoffFlow, Summarize
    from .handoff.package import HandoffPackage
    from .journal.state import SessionState
    from .observe.recovery import EventStream
    from .runtime.clock import Clock
    from .runtime.host import Host
    from .tools.registry import ToolOutcome, ToolRegistry
    from .tools.runs import ToolRuns

__all__ = ["KeeperView", "Session", "SessionServices"]


class KeeperView(Protocol):
    """What ``session.keeper`` offers: the parts of its ``Keeper`` adapters use."""

    @property
    def tools(self) -> ToolRegistry | None: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def secrets(self) -> list[bytes]: ...

    def events(self) -> EventStream: ...

    def accept(
        self, package: HandoffPackage | bytes | bytearray | memoryview | str
    ) -> Awaitable[Session]: ...


@dataclass(frozen=True, slots=True)
class SessionServices:
    """The capabilities a keeper lends each session it owns."""

    host: Host
    tools: ToolRuns
    archive: Archive
    followups: FollowUps
    handoffs: HandoffFlow[Session]
    keeper: KeeperView


class Session(Handle):
    """A session this process owns at ``state.epoch``. Create through ``Keeper``."""

    def __init__(self, state: SessionState, services: SessionServices) -> None:
        host = services.host
        super().__init__(
            state,
            flusher=host.flusher,
            clock=host.clock,
            observer=host.observer,
            limits=host.limits,
        )
        self._services = services
        self.recovery: RecoveryPlan | None = None  # set on resumed sessions
        #: outgoing messages, held back while the link is down (see ``connection_lost``)
        self.outbox = Outbox(self, host.outbox_limit)
        self._end_failed = False
        #: on a resumed session, how each call a crash left without an outcome was resolved
        self.in_doubt: list[InDoubtDecision] = []
        self._feed = feed.OutcomeFeed(self)
        #: on a resumed or accepted session, a fresh resume token for its epoch (keepers
        #: with a secret): hand it to the client, older tokens no longer take the call
        self.token: str | None = None

    # -- identity ----------------------------------------------------------------------

    @property
    def keeper(self) -> KeeperView:
        """The keeper that owns this handle (a ``callstate.Keeper``)."""
        return self._services.keeper

    def __repr__(self) -> str:
        s = self.state
        return f"<Session {s.session_id} agent={s.agent!r} epoch={s.epoch} seq={s.seq} {s.status}>"

    # -- the hot path ------------------------------------------------------------------

    def user_partial(self, text: str) -> None:
        """Record an interim transcript of what the caller is saying."""
        seq, at = self.state.seq + 1, self.clock.now()
        self.add(ev.UserPartial(seq=seq, at=at, text=text))

    def user_said(self, text: str) -> None:
        """Record a final user turn; results held since a barge-in are then reconciled."""
        seq, at = self.state.seq + 1, self.clock.now()
        self.add(ev.UserTurn(seq=seq, at=at, text=text))
        if self.may_hold():  # nothing held since the last walk: no walk over the calls
            reconcile_held(self._services.tools, self)

    def agent_started(self, text: str = "", *, utterance_id: str | None = None) -> str:
        """Record the start of an agent utterance; returns its id.

        On hold the caller cannot hear it: it is queued in ``held_speech`` instead of
        the conversation, and goes out, in order, on ``connection_restored()``.
        """
        seq, at = self.state.seq + 1, self.clock.now()
        uid = utterance_id if utterance_id is not None else f"u{seq}"
        if self.state.on_hold:
            self.check_writable()
            self.outbox.hold_speech(uid, text)
            return uid
        self.add(ev.AgentStarted(seq=seq, at=at, utterance_id=uid, text=text))
        return uid

    def agent_progress(
        self, utterance_id: str, *, spoken_text: str, text: str | None = None
    ) -> None:
        """Record how much of an utterance the caller has heard (e.g. from TTS word timings).

        ``text`` replaces the utterance's full text when it grew while streaming. For
        speech still held (see ``agent_started``) only ``text`` counts: none of it was heard.
        """
        if self.state.outbox and self.outbox.is_held(utterance_id):  # held speech is journaled
            if text is not None:
                self.outbox.hold_speech(utterance_id, text)
            return
        seq, at = self.state.seq + 1, self.clock.now()
        self.add(
            ev.AgentProgress(
                seq=seq, at=at, utterance_id=utterance_id, spoken_text=spoken_text, text=text
            )
        )

    def agent_finished(self, utterance_id: str, *, text: str | None = None) -> None:
        """Record that an utterance played to the end (speech still held: only ``text``
        counts, as for ``agent_progress``)."""
        if self.state.outbox and self.outbox.is_held(utterance_id):  # held speech is journaled
            if text is not None:
                self.outbox.hold_speech(utterance_id, text)
            return
        seq, at = self.state.seq + 1, self.clock.now()
        self.add(ev.AgentFinished(seq=seq, at=at, utterance_id=utterance_id, text=text))

    def update_userdata(self, values: dict[str, Any] | None = None, /, **kw: Any) -> None:
        """Merge keys into the session's app state (``None`` values are kept as None)."""
        data = {**(values or {}), **kw}
        self.record(ev.UserdataPatch, set=data)

    def remove_userdata(self, *keys: str) -> None:
        """Remove keys from the session's app state."""
        self.record(ev.UserdataPatch, unset=list(keys))

    # -- tool calls and barge-in -------------------------------------------------------

    async def run_tool(
        self,
        name: str,
        args: dict[str, Any] | str | bytes | None = None,
        *,
        call_id: str | None = None,
        utterance_id: str | None = None,
        offered: Collection[str] | None = None,
    ) -> ToolOutcome:
        """Run a registered tool through the guard and return how it ended.

        The intent is durable before the tool starts; a repeated ``call_id`` with the
        same tool and arguments returns the recorded outcome (``deduplicated=True``)
        without running the tool again, while a ``call_id`` reused for other arguments
        is a new call (journaled as ``call_id#2``). A non-idempotent write asked for
        again in the same user turn returns the first call's outcome (``duplicate_of``).
        A write (or a cancellable read) asked for by a generation the caller interrupted
        before the call started is not run and ends ``cancelled``. An unknown tool name,
        arguments that are not a JSON object, or arguments that do not fit the
        signature end ``failed``, journaled (the model must see that).

        Args:
            name: the registered tool (or whatever name the model sent).
            args: keyword arguments for the tool (JSON-serialisable), or the model's
                raw JSON text for them.
            call_id: the model's call id (default: a fresh one).
            utterance_id: the agent utterance (generation) that asked for the call
                (default: the one under way since the caller last spoke).
            offered: the tool names the model was offered; any other name fails as
                unknown without running (default: every registered tool).

        Raises:
            ToolArgumentsError: ``call_id`` or the name malformed, ``args`` a dict that
                JSON cannot carry; nothing is recorded.
            PayloadTooLarge: ``args`` over the registry's size cap.
            SessionClosed: the handle may not record.
            StaleEpochError: the session was taken over before the intent was durable.
        """
        return await guard.run_tool(
            self._services.tools,
            self,
            name,
            args,
            call_id=call_id,
            utterance_id=utterance_id,
            offered=offered,
        )

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
        return barge_in.interrupt(
            self._services.tools,
            self,
            heard_text=heard_text,
            audio_end_ms=audio_end_ms,
            utterance_id=utterance_id,
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
        return await barge_in.contradict(self._services.tools, self, call_id, reason)

    # -- what the model has been given ------------------------------------------------

    def owed_to_model(self) -> list[ToolOutcome]:
        """Outcomes that landed but no adapter has put into its model's context yet.

        Journaled (``tool.context_delivered`` takes one off), so a session resumed in
        another process still knows them: a call re-run by the resume, or one that
        ended in a handoff's source, is owed until some model context is given it.
        """
        return feed.owed(self)

    def given_to_model(self, call_id: str, *, via: str = "") -> bool:
        """Record that ``call_id``'s outcome is now in a model's context (no I/O).

        Returns:
            True when it was owed; False when it was not (not landed, or given
            already) or this handle may no longer record (the next owner owes it).

        Raises:
            ToolError: ``call_id`` is not a call of this session; ``via`` not a short
                string.
        """
        return feed.give(self, call_id, via=via)

    def on_outcome(
        self, callback: feed.OutcomeCallback, *, owed: bool = False
    ) -> Callable[[], None]:
        """Call ``callback(outcome)`` on the loop whenever a tool outcome lands here.

        It fires for every landing on this handle: the adapter's own calls, calls a
        resume re-ran, late outcomes of a handoff's source. An awaitable it returns runs
        as a task; a callback that fails is logged, never raised. To attach an adapter
        with nothing missed, pass ``owed=True``: the outcomes owed to the model now are
        replayed to it first (those given meanwhile skipped). Deliver each, then
        :meth:`given_to_model`.

        Returns:
            A function that unsubscribes ``callback``.
        """
        return self._feed.subscribe(callback, owed=owed)

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
        return await self._services.handoffs.offer(
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
        """True while the link is down (and on a resumed session until its transport
        calls ``connection_restored``): the agent must not speak."""
        return self.state.on_hold

    @property
    def held_speech(self) -> list[HeldSpeech]:
        """Agent speech recorded on hold, waiting for the link, oldest first."""
        return self.outbox.held_speech

    def connection_lost(self, reason: str = "") -> None:
        """The link dropped: put the session on hold; ``outbox`` queues until it is back.

        Calling it again while on hold does nothing.
        """
        lose_link(self, self.outbox, reason)

    def connection_restored(self) -> float | None:
        """The link is open: send what ``outbox`` held (messages and held speech), in
        order, and record the gap. Adapters call it once their transport is up.

        Returns:
            The gap in seconds, or None when the session was not on hold.
        """
        return restore_link(self, self.outbox)

    def resume_token(self, *, ttl: float | None = None, bind_caller: bool = True) -> str:
        """A signed, URL-safe token that resumes this session (see ``Keeper.resume``).

        It carries the session id, this epoch, an expiry (``ttl`` seconds, default
        ``Keeper(token_ttl=...)``) and, unless ``bind_caller`` is false, a keyed hash of
        the caller. Each resume should hand the client a fresh one.

        Raises:
            ConfigError: the keeper has no ``secret`` to sign with.
        """
        return session_token(self._services.host, self, ttl=ttl, bind_caller=bind_caller)

    async def fail(self, reason: str = "failed", **end_options: Any) -> None:
        """End the call as failed: like ``end``, archived with outcome ``failed``."""
        self._end_failed = True
        await self.end(reason, **end_options)

    # -- ending ------------------------------------------------------------------------

    async def end(self, reason: str = "ended", *, tool_grace: float = 5.0) -> None:
        """End the call: record it, flush, archive it, and release the lease.

        Tool calls still running get ``tool_grace`` seconds to finish, then are
        cancelled; no call is left without an outcome (see ``settle_calls``).
        The session stays resumable within the resume window.
        """
        self.check_writable()
        svc = self._services
        await lifecycle.settle_calls(svc.tools, self, grace=tool_grace)
        self.record(ev.SessionEnded, reason=reason, failed=self._end_failed)
        self.emit("session.ended", reason=reason, failed=self._end_failed)
        await self.flush()
        await archive_ended(svc.archive, svc.followups, self.state, now=self.clock.now())
        await svc.host.release(self)

    async def close(self) -> None:
        """Flush and let go of this handle without ending the call (e.g. on shutdown)."""
        if self.closed:
            return
        svc = self._services
        await lifecycle.release_runs(svc.tools, self)  # their calls stay in doubt until resumed
        try:
            if self.error is None and self.state.status != "offered":
                await self.flush()  # an offered handle's events were made durable by handoff
        finally:
            await svc.host.release(self)
