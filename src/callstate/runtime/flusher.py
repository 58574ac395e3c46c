"""The group-commit flusher: one background task commits queued events of all sessions.

Each live handle keeps its unflushed events in an :class:`Outgoing` queue; the flusher
drains every marked queue into one ``Store.append`` call, settles the waiters of what
became durable, and fences a handle whose batch the store refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import msgspec

from ..errors import CallstateError, CodecError, StorageError
from ..journal.events import encode_event
from ..journal.sealed import SEALABLE, seal_event
from ..journal.snapshot import StoredParts, encode_parted
from ..sealing import Sealer
from ..storage.base import Batch, PackageRow, Store

if TYPE_CHECKING:
    from ..journal.events import Event
    from ..journal.state import SessionState

__all__ = ["Flusher", "Journaled", "Outgoing"]


class Outgoing:
    """One handle's events not yet durable, and who waits for them.

    Attributes:
        pending: events recorded but not yet committed, in seq order.
        durable_seq: the highest seq known to be durable in the store.
        snapshot_seq: the seq of the newest stored snapshot.
        parts: the parts of that snapshot known to be stored (not written again).
        waiters: ``(seq, future)`` pairs, resolved once ``durable_seq >= seq``.
        package: a handoff package to store with the batch holding its offer.
    """

    __slots__ = ("durable_seq", "package", "parts", "pending", "snapshot_seq", "waiters")

    def __init__(self, durable_seq: int) -> None:
        self.pending: list[Event] = []
        self.durable_seq = durable_seq
        self.snapshot_seq = 0
        self.parts = StoredParts()
        self.waiters: list[tuple[int, asyncio.Future[None]]] = []
        self.package: PackageRow | None = None

    def settle(self) -> None:
        """Resolve every waiter whose seq is now durable."""
        still = []
        for seq, fut in self.waiters:
            if fut.done():
                continue
            if self.durable_seq >= seq:
                fut.set_result(None)
            else:
                still.append((seq, fut))
        self.waiters = still

    def fail(self, error: CallstateError) -> None:
        """Drop what is queued and give ``error`` to every waiter (the handle is fenced)."""
        self.pending.clear()
        for _, fut in self.waiters:
            if not fut.done():
                fut.set_exception(error)
        self.waiters.clear()


class Journaled(Protocol):
    """What the flusher needs of a live handle."""

    @property
    def id(self) -> str: ...

    @property
    def state(self) -> SessionState: ...

    @property
    def journal(self) -> Outgoing: ...

    def fence(self, error: CallstateError) -> None: ...


class Flusher:
    """Collects dirty sessions and appends all their queued events in one store call.

    A transient store failure is retried with backoff; ``wait_durable`` gives up with
    ``StorageError`` after ``timeout`` seconds, leaving the events queued for later.
    """

    def __init__(
        self,
        store: Store,
        *,
        snapshot_every: int = 100,
        timeout: float = 10.0,
        sealer: Sealer | None = None,
        on_commit: Callable[[float], None] | None = None,
        linger: float = 0.05,
    ) -> None:
        self._store = store
        #: seals caller data in events and snapshots on their way to the store
        self._sealer = sealer
        #: told the seconds each successful group commit took (e.g. a metrics sink)
        self.on_commit = on_commit
        #: a handle's ``journal.package`` rides with its next batch, in the same transaction
        self.carries_packages = bool(getattr(store, "atomic_packages", False))
        self._snapshot_every = snapshot_every
        #: the longest a lazily marked event waits for another commit to ride with
        self._linger = linger
        self._linger_timer: asyncio.TimerHandle | None = None
        self._timeout = timeout
        #: (deadline, future, handle, seq) of each wait, in the order they began
        self._deadlines: deque[tuple[float, asyncio.Future[None], Journaled, int]] = deque()
        self._watchdog: asyncio.TimerHandle | None = None
        self._dirty: dict[int, Journaled] = {}
        self._wake = asyncio.Event()
        self._awake = False  # mirrors ``_wake.is_set()``; set only through ``_kick``
        self._task: asyncio.Task[None] | None = None
        self._last_error: BaseException | None = None
        self.rounds = 0
        self.events_written = 0

    @property
    def running(self) -> bool:
        """True between ``start`` and ``stop``."""
        return self._task is not None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="callstate-flusher"
            )

    async def stop(self) -> None:
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def mark(self, handle: Journaled) -> None:
        """Note that ``handle`` has queued events (hot path: no I/O, no awaits)."""
        self._dirty[id(handle)] = handle
        if not self._awake:  # a flag, not ``_wake.is_set()``: no call on the hot path
            self._kick()

    def _kick(self) -> None:
        """Wake the flusher's loop."""
        self._awake = True
        self._wake.set()

    def mark_lazy(self, handle: Journaled) -> None:
        """Note queued events that need not be durable at once: they ride the next
        commit any session asks for, or go on their own after ``linger`` seconds."""
        self._dirty[id(handle)] = handle
        if self._linger_timer is None and not self._awake:
            self._linger_timer = asyncio.get_running_loop().call_later(self._linger, self._lingered)

    def _lingered(self) -> None:
        self._linger_timer = None
        self._kick()

    async def wait_durable(self, handle: Journaled, seq: int) -> None:
        """Return once ``handle``'s events up to ``seq`` are durable.

        Cancelling the awaiting task cancels only the wait: the events stay queued.
        """
        journal = handle.journal
        if journal.durable_seq >= seq:
            return
        if self._task is None:
            msg = "the keeper is not running; use `async with keeper:` or `await keeper.open()`"
            raise StorageError(msg)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        journal.waiters.append((seq, fut))
        self._watch(loop, fut, handle, seq)
        self.mark(handle)
        try:
            await fut
        finally:
            if not fut.done():
                fut.cancel()
            if fut.cancelled():  # this wait was cancelled; the events stay queued
                journal.waiters = [(s, f) for s, f in journal.waiters if f is not fut]

    def _watch(
        self,
        loop: asyncio.AbstractEventLoop,
        fut: asyncio.Future[None],
        handle: Journaled,
        seq: int,
    ) -> None:
        """Give ``fut`` up after ``timeout`` seconds. One timer serves every wait (they
        all wait as long, so they expire in the order they began): a wait costs a deque
        append, not a timer armed and cancelled per flush."""
        deadlines = self._deadlines
        while deadlines and deadlines[0][1].done():  # settled waits, oldest first
            deadlines.popleft()
        deadlines.append((loop.time() + self._timeout, fut, handle, seq))
        if self._watchdog is None:
            self._watchdog = loop.call_at(deadlines[0][0], self._expire, loop)

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        """Fail the waits whose time is up (their events stay queued); re-arm the timer."""
        self._watchdog = None
        deadlines, now = self._deadlines, loop.time()
        while deadlines:
            deadline, fut, handle, seq = deadlines[0]
            if not fut.done() and deadline > now:
                self._watchdog = loop.call_at(deadline, self._expire, loop)
                return
            deadlines.popleft()
            if fut.done():
                continue
            # the events stay queued and land when the store recovers; only this wait ends
            msg = (
                f"session {handle.id!r}: events up to seq {seq} not durable after "
                f"{self._timeout:.1f}s; the store is failing ({self._last_error!r})"
            )
            error = StorageError(msg)
            error.__cause__ = self._last_error
            fut.set_exception(error)
            journal = handle.journal
            journal.waiters = [(s, f) for s, f in journal.waiters if f is not fut]

    def _take(self, handle: Journaled) -> tuple[Batch, StoredParts | None] | None:
        """The batch of ``handle``'s pending events, and the snapshot parts stored once
        it lands (None without a snapshot)."""
        journal = handle.journal
        pending = journal.pending
        if not pending:
            return None
        state = handle.state
        sealer, sid, personal = self._sealer, state.session_id, state.personal
        try:
            if sealer is None:
                encoded = [encode_event(e) for e in pending]
            else:
                encoded = [
                    encode_event(
                        seal_event(e, sealer, session_id=sid, personal=personal)
                        if type(e) in SEALABLE
                        else e
                    )
                    for e in pending
                ]
        except CodecError as exc:  # a value was mutated into something unencodable
            handle.fence(exc)
            return None
        batch = Batch(
            session_id=state.session_id,
            epoch=state.epoch,
            first_seq=pending[0].seq,
            events=encoded,
            agent=state.agent,
            status=state.status,
            last_interaction_at=state.last_interaction_at,
        )
        if self.carries_packages:
            batch.package = journal.package
        # pending always ends at state.seq, so the snapshot matches the batch's end
        parts = None
        if state.seq - journal.snapshot_seq >= self._snapshot_every:
            try:
                batch.snapshot, batch.snapshot_parts, parts = encode_parted(
                    state, sealer, journal.parts
                )
                batch.snapshot_seq = state.seq
            except (TypeError, ValueError, msgspec.EncodeError):
                pass  # state changed behind the journal's back; the events still land
        return batch, parts

    async def _run(self) -> None:
        backoff = 0.005
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._awake = False
            handles = list(self._dirty.values())
            self._dirty.clear()
            work: list[tuple[Journaled, Batch]] = []
            parted: dict[int, StoredParts] = {}  # id(batch) -> its snapshot parts, stored
            for h in handles:
                taken = self._take(h)
                if taken is not None:
                    batch, parts = taken
                    work.append((h, batch))
                    if parts is not None:
                        parted[id(batch)] = parts
                elif h.journal.waiters:
                    h.journal.settle()
            if not work:
                continue
            t0 = time.perf_counter()
            try:
                results = await self._store.append([b for _, b in work])
                if len(results) != len(work):
                    msg = f"store returned {len(results)} results for {len(work)} batches"
                    raise StorageError(msg)
            except Exception as exc:  # the store is down: keep everything queued
                # any failure, typed or not, must not kill the one task all sessions share
                self._last_error = exc
                for h, _ in work:
                    self._dirty[id(h)] = h
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
                self._kick()
                continue
            backoff = 0.005
            self._last_error = None
            self.rounds += 1
            if self.on_commit is not None:
                self.on_commit(time.perf_counter() - t0)
            for (h, batch), error in zip(work, results, strict=True):
                if error is not None:
                    h.fence(error)
                    continue
                journal = h.journal
                del journal.pending[: len(batch.events)]
                journal.durable_seq = batch.last_seq
                if batch.package is not None and journal.package is batch.package:
                    journal.package = None  # stored
                if batch.snapshot is not None:
                    journal.snapshot_seq = batch.snapshot_seq
                    journal.parts = parted.get(id(batch), journal.parts)
                self.events_written += len(batch.events)
                journal.settle()
                if journal.pending:
                    self._dirty[id(h)] = h
                    self._kick()
