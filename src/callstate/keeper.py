"""Keeper: starts, resumes and ends sessions; runs the flusher and the lease heartbeat."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import time
import uuid
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from .archive.followups import FollowUpFn, FollowUps
from .archive.records import Archive, archive_ended
from .continuity.ownership import create_session, fenced_error, heartbeat, restore_state, take_over
from .continuity.plan import Preflight
from .continuity.resume import (
    check_resumable,
    continue_run,
    find_caller_session,
    preflight,
    session_token,
)
from .continuity.sweep import SweepResult
from .continuity.sweep import sweep as sweep_pass
from .errors import ConfigError, StaleEpochError
from .handoff.package import DEFAULT_MAX_BYTES
from .journal.state import SessionState
from .observe.recovery import EventStream, Observer, RecoveryEvent, RecoveryKind, Sink, Stats
from .runtime.clock import Clock, SystemClock
from .runtime.flusher import Flusher
from .runtime.options import check_options, parse_secrets
from .session import Session
from .storage import open_store
from .storage.base import SessionRecord, Store, stale_claim

if TYPE_CHECKING:
    from .handoff.flow import Summarize
    from .handoff.package import HandoffPackage
    from .tools.guard import _Run
    from .tools.registry import ToolOutcome, ToolRegistry

__all__ = ["Keeper", "restore_state"]


class Keeper:
    """Owns sessions for one process: the entry point of callstate.

    Args:
        store: a store URL (``sqlite:///path``, ``memory://``, ``redis://…``,
            ``postgresql://…``) or a ``Store``.
        secret: key(s) that sign resume tokens and handoff packages; the first signs,
            all verify (rotation).
        tools: the ``ToolRegistry`` tool calls run through.
        resume_window: seconds after the last interaction a session stays resumable.
        lease_ttl: seconds an owner's lease lasts without a heartbeat.
        snapshot_every: events between snapshots.
        flush_timeout: seconds ``flush()`` waits on a failing store before raising.
        clock: time source (``callstate.testing.FakeClock`` in tests).
        owner: this keeper's owner id in leases (random by default).
        sinks: callables given every ``RecoveryEvent`` (see ``add_sink``, ``events``).
        outbox_limit: messages ``session.outbox`` holds while the link is down.
        sweep_every: seconds between background sweeps (``None`` or 0: never; call
            ``sweep()`` yourself).
        token_ttl: seconds a resume token is valid (the resume window applies too).
        purge_after: seconds after a session expires before its resume state is
            deleted (the archive stays forever).
        handoff_timeout: seconds an offered handoff stays open before the source may
            ``reclaim`` it.
        summarize: ``summarize(messages) -> str`` (or awaitable) that replaces the
            conversation a handoff's ``max_items`` trims (default: a plain summary).
        handoff_max_bytes: largest handoff package offered or accepted.
    """

    def __init__(
        self,
        store: str | Store = "sqlite:///callstate.db",
        *,
        secret: bytes | str | Sequence[bytes | str] | None = None,
        tools: ToolRegistry | None = None,
        resume_window: float = 600.0,
        lease_ttl: float = 15.0,
        snapshot_every: int = 100,
        flush_timeout: float = 10.0,
        clock: Clock | None = None,
        owner: str | None = None,
        sinks: Sequence[Sink] | None = None,
        outbox_limit: int = 256,
        sweep_every: float | None = 30.0,
        token_ttl: float = 86_400.0,
        purge_after: float = 0.0,
        handoff_timeout: float = 30.0,
        summarize: Summarize | None = None,
        handoff_max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        check_options(
            resume_window=resume_window,
            lease_ttl=lease_ttl,
            flush_timeout=flush_timeout,
            handoff_timeout=handoff_timeout,
            token_ttl=token_ttl,
            snapshot_every=snapshot_every,
            handoff_max_bytes=handoff_max_bytes,
            outbox_limit=outbox_limit,
            sweep_every=sweep_every,
            purge_after=purge_after,
        )
        if not isinstance(store, str | Store):
            msg = f"store must be a store URL or a Store, got {type(store).__name__}"
            raise ConfigError(msg)
        self.store: Store = open_store(store) if isinstance(store, str) else store
        self.secrets = parse_secrets(secret)
        self.tools = tools
        self.resume_window = float(resume_window)
        self.lease_ttl = float(lease_ttl)
        self.clock: Clock = clock or SystemClock()
        self.owner = owner or uuid.uuid4().hex
        self.handoff_timeout = float(handoff_timeout)
        self.summarize = summarize
        self.handoff_max_bytes = int(handoff_max_bytes)
        self._flusher = Flusher(self.store, snapshot_every=snapshot_every, timeout=flush_timeout)
        self._live: dict[str, Session] = {}
        self.observer = Observer(list(sinks or []))
        self.outbox_limit = int(outbox_limit)
        self.sweep_every = float(sweep_every or 0.0)
        self.token_ttl = float(token_ttl)
        self.purge_after = float(purge_after)
        #: the call archive: ``await keeper.archive.list(...)`` / ``get(record_id)``
        self.archive = Archive(self)
        self.followups = FollowUps(self)
        self.sweep_errors = 0
        self._stale_reported: set[tuple[str, int]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._tool_runs: dict[tuple[str, str], _Run] = {}  # tool calls running here
        self._late_results: dict[str, dict[str, ToolOutcome]] = {}  # outcomes awaiting a handle
        self._open = False

    # -- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        """Open the store and start the flusher and heartbeat."""
        if self._open:
            return
        await self.store.open()
        self._flusher.start()
        self.observer.start()
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._heartbeat(), name="callstate-heartbeat"))
        if self.sweep_every > 0:
            self._tasks.append(loop.create_task(self._sweeper(), name="callstate-sweeper"))
        self._open = True

    async def close(self) -> None:
        """Flush every live session, release their leases, stop tasks, close the store."""
        if not self._open:
            return
        for s in list(self._live.values()):
            with contextlib.suppress(Exception):
                await s.close()
        for t in self._tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks.clear()
        await self._flusher.stop()
        await self.observer.stop()
        await self.store.close()
        self._open = False

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- sessions ----------------------------------------------------------------------

    async def start(
        self,
        *,
        agent: str = "agent",
        caller: str | None = None,
        session_id: str | None = None,
        userdata: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Session:
        """Start a new session at epoch 1; it is durable when this returns.

        Raises:
            ConflictError: ``session_id`` is already taken.
        """
        return await create_session(
            self,
            agent=agent,
            caller=caller,
            session_id=session_id,
            userdata=userdata,
            metadata=metadata,
        )

    async def load(self, session_id: str) -> SessionState:
        """Read a session's state as stored, without taking ownership.

        Raises:
            SessionNotFound: no such session.
        """
        return restore_state(await self.store.load(session_id))

    async def resume(
        self,
        token_or_id: str,
        *,
        caller: str | None = None,
        via: str = "resume",
        expected_epoch: int | None = None,
    ) -> Session:
        """Take ownership of a stored session at epoch+1 and return its live handle.

        ``token_or_id`` is a resume token (``session.resume_token()``, verified first)
        or a session id (for trusted server code). Everything flushed before is
        restored, the previous owner is fenced, pending follow-ups are cancelled, and
        ``session.recovery`` holds the ``RecoveryPlan``. A token issued at any earlier
        epoch still works while the window is open; a caller-bound token given with
        ``caller=`` must match it. With ``expected_epoch`` (the epoch the caller last
        saw, e.g. a dispatcher's) the session is taken only if it is still at that
        epoch: of several workers told to resume it at once, exactly one wins.

        Raises:
            TokenError: the token is malformed, tampered, signed by an unknown key or
                bound to another caller.
            SessionExpired: the resume window (or the token) has expired; the session
                is expired and archived if it was not yet.
            SessionNotFound: no such session.
            StaleEpochError: another owner took the session at the same moment.
        """
        t0 = time.perf_counter()
        rec, claims = await check_resumable(self, token_or_id, caller=caller)
        if expected_epoch is not None and expected_epoch != rec.epoch:
            raise stale_claim(rec.session_id, expected_epoch, rec.epoch)
        session = await self._take_over(rec, via=via)
        self._resumed(session, t0, via=via, channel="token" if claims else "id")
        return session

    async def preflight(self, token_or_id: str, *, caller: str | None = None) -> Preflight:
        """Check a token (or session id) without taking ownership: one store read.

        Returns a ``Preflight`` whose ``status`` is ``resumable``, ``expired``,
        ``unknown`` or ``invalid`` (with the reason), plus the agent and expiry.
        """
        return await preflight(self, token_or_id, caller=caller)

    async def resume_caller(self, caller: str) -> Session | None:
        """Resume the caller's most recently active resumable session, or return None.

        For phone calls: the caller index holds keyed hashes, never the caller id.
        """
        t0 = time.perf_counter()
        rec = await find_caller_session(self, caller)
        if rec is None:
            return None
        session = await self._take_over(rec, via="resume")
        self._resumed(session, t0, via="resume", channel="caller")
        return session

    async def sweep(self) -> SweepResult:
        """Report stale sessions, expire and purge old ones, run due follow-ups.

        Runs every ``sweep_every`` seconds in the background; see ``callstate.sweep``.
        """
        return await sweep_pass(self)

    def on_call_complete(
        self,
        fn: FollowUpFn,
        *,
        grace: float = 300.0,
        name: str | None = None,
    ) -> str:
        """Run ``fn(record)`` once per call, ``grace`` seconds after it ends or expires,
        unless the caller reconnects first. ``fn`` may be async.

        Follow-ups are stored, so they survive a restart; every keeper sharing the
        store should register the same callbacks (by ``name``, default the function's
        qualified name). Returns the name.
        """
        return self.followups.register(fn, grace=grace, name=name)

    def events(self) -> EventStream:
        """``async for ev in keeper.events()``: every ``RecoveryEvent`` from now on."""
        return self.observer.stream()

    def add_sink(self, sink: Sink) -> None:
        """Give every later ``RecoveryEvent`` to ``sink`` too (sync or async callable)."""
        self.observer.sinks.append(sink)

    def remove_sink(self, sink: Sink) -> None:
        """Stop giving events to ``sink``."""
        with contextlib.suppress(ValueError):
            self.observer.sinks.remove(sink)

    def stats(self) -> Stats:
        """Recovery event counts by kind, sink errors, and time-to-recover percentiles."""
        return self.observer.stats()

    def _resumed(self, session: Session, t0: float, *, via: str, channel: str) -> None:
        plan = session.recovery
        self._emit(
            "session.resumed",
            session.id,
            latency_ms=(time.perf_counter() - t0) * 1000.0,
            gap_s=plan.gap_s if plan is not None else None,
            via=via,
            channel=channel,
            epoch=session.state.epoch,
        )

    async def _take_over(self, rec: SessionRecord, *, via: str) -> Session:
        """Claim ``rec`` at epoch+1, restore it and record the new ownership."""
        return await take_over(self, rec.session_id, rec.epoch, via=via)

    @staticmethod
    def _fenced_error(session_id: str, epoch: int, current: int) -> StaleEpochError:
        return fenced_error(session_id, epoch, current)

    def live(self) -> list[Session]:
        """Sessions this keeper currently owns."""
        return list(self._live.values())

    # -- handoff -----------------------------------------------------------------------

    async def accept(
        self,
        package: HandoffPackage | bytes | bytearray | memoryview | str,
        *,
        agent: str | None = None,
    ) -> Session:
        """Accept an offered handoff (the package, its bytes or its id): exactly once.

        The returned session is owned here at the offer's epoch+1 with
        ``state.agent`` the package's target; the source is fenced. Results of
        calls still running in the source land in it as they complete.

        Args:
            agent: the accepting agent; it must be the package's target (a check,
                never an override).

        Raises:
            HandoffFormatError: the bytes do not verify (see ``HandoffPackage.from_bytes``).
            HandoffStateError: unknown package, already accepted or reclaimed, the
                session moved on since the offer, or ``agent`` is not the target.
        """
        from .handoff.flow import accept

        return await accept(self, package, agent=agent)

    async def reclaim(
        self,
        package: HandoffPackage | bytes | bytearray | memoryview | str,
        *,
        handoff_timeout: float | None = None,
    ) -> Session:
        """Take back an offer nobody accepted in time (default: the keeper's ``handoff_timeout``).

        The source agent owns the session again at epoch+1; the package can no longer
        be accepted.

        Raises:
            HandoffStateError: the offer is still open, or was already accepted or reclaimed.
        """
        from .handoff.flow import reclaim

        return await reclaim(self, package, handoff_timeout=handoff_timeout)

    async def collect_late_results(self) -> int:
        """Record now any stored outcome of calls that finished in an earlier owner.

        The keeper also polls for them on its own while it owns such calls. Returns
        how many landed.
        """
        from .handoff.flow import collect_all

        return await collect_all(self)

    # -- internals shared with Session -------------------------------------------------

    def _emit(
        self,
        kind: RecoveryKind,
        session_id: str,
        *,
        call_id: str | None = None,
        latency_ms: float | None = None,
        **data: Any,
    ) -> None:
        """Emit a ``RecoveryEvent`` to the sinks (never blocks, never raises)."""
        self.observer.emit(
            RecoveryEvent(
                kind=kind,
                session_id=session_id,
                at=self.clock.now(),
                call_id=call_id,
                latency_ms=latency_ms,
                data=data,
            )
        )

    def _caller_hash(self, caller: str | None) -> str | None:
        """The caller's keyed hash under the signing secret (None for no caller)."""
        return None if caller is None else self._caller_hashes(caller)[0]

    def _caller_hashes(self, caller: str) -> list[str]:
        """The caller's keyed hash under every configured secret (rotation)."""
        keys = self.secrets or [b"callstate-caller-index"]
        return [hmac.new(k, caller.encode(), hashlib.sha256).hexdigest() for k in keys]

    def _issue_token(self, session: Session, *, ttl: float | None, bind_caller: bool) -> str:
        return session_token(self, session, ttl=ttl, bind_caller=bind_caller)

    async def _sweeper(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_every)
            try:
                await self.sweep()
            except Exception:  # a failing store must not kill the sweeper
                self.sweep_errors += 1

    def _adopt(self, session: Session) -> None:
        self._live[session.id] = session

    async def _on_started(self, session: Session) -> None:
        """Hook run after a session starts (caller index)."""
        caller_hash = self._caller_hash(session.state.caller)
        if caller_hash is not None:
            await self.store.index_caller(caller_hash, session.id, session.state.started_at)

    async def _on_ended(self, session: Session) -> None:
        """Hook run after a session's end is durable (archive)."""
        await archive_ended(self, session)

    async def _after_resume(self, session: Session, *, gap: float, via: str) -> None:
        """Hook run once a resumed session is owned and durable (in-doubt calls, plan).

        Step 1 resolves the tool calls a crash left without an outcome and stores the
        decisions on ``session.in_doubt`` (a list of ``reconcile.InDoubtDecision``) for
        the recovery plan; re-runs are started in the background.
        """
        from .tools.lifecycle import recover_in_doubt

        session.in_doubt = await recover_in_doubt(session, via=via)

        # step 2: the recovery plan (a pure function of the state and step 1's decisions);
        # also archives the run this takeover ended and cancels pending follow-ups
        await continue_run(self, session, gap=gap, via=via)

    async def _release(self, session: Session) -> None:
        if self._live.get(session.id) is session:
            del self._live[session.id]
            if session._error is None:
                with contextlib.suppress(Exception):
                    await self.store.release_lease(session.id, self.owner)

    async def _heartbeat(self) -> None:
        await heartbeat(self)
