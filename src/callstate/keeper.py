"""Keeper: starts, resumes and ends sessions; composes the capabilities that do it.

The keeper builds one ``Host`` (store, clock, owner, flusher, live handles) and hands
it to the capabilities: the tool runs, the archive and its follow-ups, ownership,
the sweep and the handoff flow. Every public method forwards to one of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from .archive.fleet import FleetStats, fleet_stats
from .archive.followups import FollowUpFn, FollowUps
from .archive.records import Archive
from .continuity.entry import Entry
from .continuity.ownership import Owned, Ownership
from .continuity.plan import Preflight
from .continuity.restore import restore_state
from .continuity.sweep import Sweeper, SweepResult
from .errors import ConfigError
from .handoff.flow import HandoffFlow
from .handoff.package import DEFAULT_MAX_BYTES
from .journal.limits import Limits
from .journal.state import SessionState
from .observe.recovery import EventStream, Observer, Sink, Stats
from .runtime.clock import Clock, SystemClock
from .runtime.flusher import Flusher
from .runtime.host import Host
from .runtime.options import check_options, check_personal, parse_secrets
from .sealing import Sealer
from .session import Session, SessionServices
from .storage import open_store
from .storage.abilities import is_store
from .storage.base import Store
from .tools.late import collect_all
from .tools.runs import ToolRuns

if TYPE_CHECKING:
    from .handoff.flow import Summarize
    from .handoff.package import HandoffPackage
    from .tools.registry import ToolRegistry

__all__ = ["Keeper", "restore_state"]


class Keeper:
    """Owns sessions for one process: the entry point of callstate.

    Args:
        store: a store URL (``sqlite:///path``, ``memory://``, ``redis://…``,
            ``postgresql://…``) or a ``Store``.
        secret: key(s) that sign resume tokens and handoff packages and encrypt caller
            data at rest; the first signs and seals, all verify and open (rotation).
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
        limits: depth and size limits on what sessions record (``callstate.Limits``;
            default 32 levels, 1 MiB payloads, 64 KiB utterances).
        resume_after_end: let a resume token resume a call that ended (within the
            window); by default only a ring-back by caller id (``resume_caller``) and
            trusted code by session id may.
        personal: userdata keys that are personal in every session: like the caller
            id, they are encrypted at rest (see ``start(personal=...)``).
        plaintext_callers: without a ``secret`` there is no key to encrypt caller data
            with, so ``start(caller=...)`` is refused; True stores it in the clear.
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
        limits: Limits | None = None,
        resume_after_end: bool = False,
        personal: Sequence[str] = (),
        plaintext_callers: bool = False,
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
            limits=limits,
        )
        if not (isinstance(store, str) or is_store(store)):
            msg = f"store must be a store URL or a Store, got {type(store).__name__}"
            raise ConfigError(msg)
        secrets = parse_secrets(secret)
        sealer = Sealer(secrets) if secrets else None
        opened: Store = open_store(store) if isinstance(store, str) else store
        observer = Observer(list(sinks or []))
        self.host = Host(
            opened,
            clock=clock or SystemClock(),
            owner=owner or uuid.uuid4().hex,
            secrets=secrets,
            sealer=sealer,
            plaintext_callers=bool(plaintext_callers),
            personal=check_personal(personal),
            observer=observer,
            flusher=Flusher(
                opened,
                snapshot_every=snapshot_every,
                timeout=flush_timeout,
                sealer=sealer,
                on_commit=lambda seconds: observer.measure("flush", seconds),
            ),
            lease_ttl=float(lease_ttl),
            resume_window=float(resume_window),
            token_ttl=float(token_ttl),
            purge_after=float(purge_after),
            outbox_limit=int(outbox_limit),
            limits=limits,
        )
        host = self.host
        if host.personal:
            host.check_sealable(f"personal userdata {list(host.personal)!r}")
        self.sweep_every = float(sweep_every or 0.0)
        self._tools = ToolRuns(host, tools)
        #: the call archive: ``await keeper.archive.list(...)`` / ``get(record_id)``
        self.archive = Archive(host)
        self.followups = FollowUps(host, self.archive)
        self._sweeper = Sweeper(host, self.archive, self.followups)
        self._ownership: Ownership[Session] = Ownership(
            host, self._tools, self.followups, self._new_session
        )
        self._entry: Entry[Session] = Entry(
            host, self._ownership, self._sweeper, after_end=resume_after_end
        )
        self._handoffs: HandoffFlow[Session] = HandoffFlow(
            host,
            self._ownership,
            self._tools,
            summarize=summarize,
            max_bytes=int(handoff_max_bytes),
            timeout=float(handoff_timeout),
        )
        self._services = SessionServices(
            host=host,
            tools=self._tools,
            archive=self.archive,
            followups=self.followups,
            handoffs=self._handoffs,
            keeper=self,
        )
        self._open = False

    # -- settings, forwarded to the capability that uses them ------------------------

    @property
    def store(self) -> Store:
        """The store sessions, packages and the archive live in."""
        return self.host.store

    @property
    def clock(self) -> Clock:
        """The time source."""
        return self.host.clock

    @property
    def owner(self) -> str:
        """This keeper's owner id in leases."""
        return self.host.owner

    @property
    def secrets(self) -> list[bytes]:
        """The keys that sign (the first) and verify (all) tokens and packages."""
        return self.host.secrets

    @property
    def observer(self) -> Observer:
        """Where recovery events go (``events()``, ``stats()``, sinks)."""
        return self.host.observer

    @property
    def tools(self) -> ToolRegistry | None:
        """The ``ToolRegistry`` tool calls run through."""
        return self._tools.registry

    @tools.setter
    def tools(self, registry: ToolRegistry | None) -> None:
        self._tools.registry = registry

    @property
    def resume_window(self) -> float:
        """Seconds after the last interaction a session stays resumable."""
        return self.host.resume_window

    @property
    def lease_ttl(self) -> float:
        """Seconds an owner's lease lasts without a heartbeat."""
        return self.host.lease_ttl

    @property
    def token_ttl(self) -> float:
        """Seconds a resume token is valid."""
        return self.host.token_ttl

    @property
    def purge_after(self) -> float:
        """Seconds after expiry before a session's resume state is deleted."""
        return self.host.purge_after

    @property
    def outbox_limit(self) -> int:
        """Messages ``session.outbox`` holds while the link is down."""
        return self.host.outbox_limit

    @property
    def resume_after_end(self) -> bool:
        """Whether a resume token resumes a call that ended."""
        return self._entry.after_end

    @property
    def handoff_timeout(self) -> float:
        """Seconds an offered handoff stays open before the source may reclaim it."""
        return self._handoffs.timeout

    @property
    def handoff_max_bytes(self) -> int:
        """Largest handoff package offered or accepted."""
        return self._handoffs.max_bytes

    @property
    def summarize(self) -> Summarize | None:
        """The default ``summarize`` for the conversation a handoff trims."""
        return self._handoffs.summarize

    @summarize.setter
    def summarize(self, fn: Summarize | None) -> None:
        self._handoffs.summarize = fn

    @property
    def sweep_errors(self) -> int:
        """Background sweep passes that failed (a failing store)."""
        return self._sweeper.errors

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        """True between ``open()`` (or entering ``async with``) and ``close()``."""
        return self._open

    async def open(self) -> None:
        """Open the store and start the flusher and heartbeat."""
        if self._open:
            return
        host = self.host
        await host.store.open()
        host.flusher.start()
        host.observer.start()
        host.spawn(self._ownership.heartbeat(), name="callstate-heartbeat")
        if self.sweep_every > 0:
            host.spawn(self._sweeper.loop(self.sweep_every), name="callstate-sweeper")
        self._open = True

    async def close(self) -> None:
        """Flush every live session, release their leases, stop tasks, close the store."""
        if not self._open:
            return
        host = self.host
        for s in self.live():
            with contextlib.suppress(Exception):
                await s.close()
        for t in host.tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
        host.tasks.clear()
        await host.flusher.stop()
        await host.observer.stop()
        await host.store.close()
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

    def _new_session(self, state: SessionState) -> Session:
        return Session(state, self._services)

    async def start(
        self,
        *,
        agent: str = "agent",
        caller: str | None = None,
        session_id: str | None = None,
        userdata: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        personal: dict[str, Any] | None = None,
    ) -> Session:
        """Start a new session at epoch 1; it is durable when this returns.

        ``caller`` and ``personal`` (userdata that identifies the caller, e.g.
        ``{"email": ...}``; it joins ``state.userdata``) are encrypted at rest under the
        keeper's secret, as are the keys of ``Keeper(personal=...)``.

        Raises:
            ConflictError: ``session_id`` is already taken.
            ConfigError: a caller or personal data without a ``secret`` to encrypt it
                with (and no ``plaintext_callers=True``).
        """
        return await self._ownership.create(
            agent=agent,
            caller=caller,
            session_id=session_id,
            userdata=userdata,
            metadata=metadata,
            personal=personal,
        )

    async def load(self, session_id: str) -> SessionState:
        """Read a session's state as stored, without taking ownership.

        Raises:
            SessionNotFound: no such session.
        """
        return await self._entry.load(session_id)

    async def resume(
        self,
        token_or_id: str,
        *,
        caller: str | None = None,
        via: str = "resume",
        expected_epoch: int | None = None,
        takeover: bool = False,
    ) -> Session:
        """Take ownership of a stored session at epoch+1 and return its live handle.

        ``token_or_id`` is a resume token (verified first) or a session id (trusted
        server code). Everything flushed is restored, the previous owner fenced,
        pending follow-ups cancelled; ``session.recovery`` is the ``RecoveryPlan``,
        ``session.token`` a fresh token for the new epoch. The session starts on hold
        until its transport calls ``connection_restored()``. A caller-bound token given
        with ``caller=`` must match it. With ``expected_epoch`` the session is taken
        only if it is still at that epoch: of several workers told to resume it at
        once, exactly one wins.

        Raises:
            TokenError: the token is malformed, tampered, signed by an unknown key or
                bound to another caller.
            TokenSuperseded: a handoff or another client's resume took the call since.
            CallEnded: the call ended (unless ``Keeper(resume_after_end=True)``).
            SessionActive: the owner holds a live lease and its link is up (another
                tab), unless ``takeover`` is true.
            SessionExpired: the resume window (or the token) has expired; the session
                is expired and archived if it was not yet.
            SessionNotFound: no such session.
            StaleEpochError: another owner took the session at the same moment.
        """
        owned = await self._entry.resume(
            token_or_id, caller=caller, via=via, expected_epoch=expected_epoch, takeover=takeover
        )
        return _adopted(owned)

    async def preflight(self, token_or_id: str, *, caller: str | None = None) -> Preflight:
        """Check a token (or session id) without taking ownership; never raises for
        what ``resume`` refuses: a ``Preflight`` with ``status`` and the reason."""
        return await self._entry.preflight(token_or_id, caller=caller)

    async def refresh_token(self, token: str, *, ttl: float | None = None) -> str:
        """A fresh resume token for the session and epoch ``token`` names (new expiry,
        same caller binding); takes nothing. Raises what ``resume`` would refuse with,
        except ``SessionActive``."""
        return await self._entry.refresh_token(token, ttl=ttl)

    async def resume_caller(self, caller: str) -> Session | None:
        """Resume the caller's most recently active resumable session, or return None.

        For phone calls (the index holds keyed hashes, never the caller id): a ring-back
        continues a call that ended within the window, whatever ``resume_after_end`` says.
        """
        owned = await self._entry.resume_caller(caller)
        return None if owned is None else _adopted(owned)

    async def sweep(self) -> SweepResult:
        """Report stale sessions, expire and purge old ones, run due follow-ups.

        Runs every ``sweep_every`` seconds in the background; see ``callstate.sweep``.
        """
        return await self._sweeper.run()

    def on_call_complete(
        self,
        fn: FollowUpFn,
        *,
        grace: float | None = None,
        name: str | None = None,
        retries: int = 3,
        backoff: float = 30.0,
    ) -> str:
        """Run ``fn(call)`` once per quiet period of a call: ``grace`` seconds after a leg
        ends or expires with no reconnect (default: the resume window, so once per call).
        ``fn`` may be async.

        ``call`` is a ``CallRecord``: every leg so far (transcript, tool ledger,
        recovery events, outcomes), what ``fn``'s earlier runs for the call returned,
        ``requests_since_last_followup`` and a stable ``idempotency_key``. A reconnect
        before a follow-up runs cancels it; the continuation's close schedules the
        next. A grace shorter than the window lets one run between two legs; the next
        run then sees its result in ``previous_followups``.

        Follow-ups are stored, so they survive a restart; every keeper sharing the
        store should register the same callbacks (by ``name``, default the function's
        qualified name). Returns the name.

        A run that raises is retried ``retries`` times with backoff (``backoff``
        seconds, doubling); ``call.attempt`` tells a repeat it is one. Each follow-up's
        state, attempts and last error are in the store: ``callstate followups list``.
        """
        return self.followups.register(fn, grace=grace, name=name, retries=retries, backoff=backoff)

    def events(self) -> EventStream:
        """``async for ev in keeper.events()``: every ``RecoveryEvent`` from now on."""
        return self.observer.stream()

    def add_sink(self, sink: Sink) -> None:
        """Give every later ``RecoveryEvent`` to ``sink`` too (sync or async callable)."""
        self.observer.add_sink(sink)

    def remove_sink(self, sink: Sink) -> None:
        """Stop giving events to ``sink``."""
        self.observer.remove_sink(sink)

    def stats(self) -> Stats:
        """Recovery event counts by kind, sink errors, and time-to-recover percentiles."""
        return self.observer.stats()

    async def fleet_stats(self, *, since: float | None = None) -> FleetStats:
        """Figures of every leg any worker archived since ``since`` (a time; None: all),
        read from the store: see ``callstate.archive.fleet``."""
        return await fleet_stats(self.store, since=since, until=self.host.clock.now())

    def live(self) -> list[Session]:
        """Sessions this keeper currently owns."""
        return [s for s in self.host.handles.values() if isinstance(s, Session)]

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
        return _adopted(await self._handoffs.accept(package, agent=agent))

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
        return _adopted(await self._handoffs.reclaim(package, handoff_timeout=handoff_timeout))

    async def collect_late_results(self) -> int:
        """Record now any stored outcome of calls that finished in an earlier owner.

        The keeper also polls for them on its own while it owns such calls. Returns
        how many landed.
        """
        return await collect_all(self._tools)


def _adopted(owned: Owned[Session]) -> Session:
    """The handle of a session just taken over, with its recovery plan and token attached."""
    session = owned.handle
    session.in_doubt = owned.in_doubt
    session.recovery = owned.plan
    if owned.token is not None:  # a resume or an accepted handoff issued one
        session.token = owned.token
    return session
