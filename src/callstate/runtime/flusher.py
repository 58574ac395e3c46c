"""The group-commit flusher: commits queued events of all sessions together.

Each live handle keeps its unflushed events in an ``Outgoing`` queue; the flusher
drains every marked queue into one ``Store.append`` call, settles the waiters of what
became durable, and fences a handle whose batch the store refused.

With a coroutine store one background task runs the rounds. A store that appends on
a thread of its own and answers by callback (``AppendsSoon``: SQLite) needs no task: a
``flush`` starts the round itself, and the thread's answer settles the waiters
directly, so a durable turn is one hop to the thread and one back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Protocol

import msgspec

from ..errors import CallstateError, CodecError, StorageError
from ..journal.events import encode_event
from ..journal.sealed import SEALABLE, seal_event
from ..journal.snapshot import StoredParts, encode_parted
from ..sealing import Sealer
from ..storage.abilities import appends_soon
from ..storage.base import Batch, Store

if TYPE_CHECKING:
    from ..journal.state import SessionState
    from .outgoing import Outgoing

__all__ = ["Flusher", "Journaled"]

_FIRST_BACKOFF: Final = 0.005  # seconds before retrying a failed round, doubling
_LAST_BACKOFF: Final = 1.0


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
        #: a wake is on its way (the event is set, a pump is scheduled, or the round in
        #: flight pumps when it ends): a mark need not send another
        self._awake = False
        self._task: asyncio.Task[None] | None = None
        self._running = False
        #: a store whose appends run on its own thread and answer by callback
        self._soon = appends_soon(store)
        self._in_flight = False  # a direct store's round is under way
        self._retry: asyncio.TimerHandle | None = None  # a direct store's next try
        self._pump_soon: asyncio.Handle | None = None  # a direct store's scheduled pump
        self._backoff = _FIRST_BACKOFF
        self._last_error: BaseException | None = None
        self.rounds = 0
        self.events_written = 0

    @property
    def running(self) -> bool:
        """True between ``start`` and ``stop``."""
        return self._running

    def start(self) -> None:
        if self._running:
            return
        self._running = True
        if self._soon is None:  # a coroutine store: one task runs the rounds
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="callstate-flusher"
            )
        else:  # a direct store: what was marked before the start goes now
            self._awake = False
            if self._dirty:
                self._kick()

    async def stop(self) -> None:
        self._running = False
        for timer in (self._linger_timer, self._retry):
            if timer is not None:
                timer.cancel()
        self._linger_timer = self._retry = None
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
        """Wake the flusher's loop (a direct store: start a round on the loop's next turn)."""
        self._awake = True
        if self._soon is None:
            self._wake.set()
        elif not self._in_flight and self._retry is None:  # else the round's end pumps
            self._pump_soon = asyncio.get_running_loop().call_soon(self._pump)

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
        if not self._running:
            msg = "the keeper is not running; use `async with keeper:` or `await keeper.open()`"
            raise StorageError(msg)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        journal.waiters.append((seq, fut))
        self._watch(loop, fut, handle, seq)
        if self._soon is None:
            self.mark(handle)
        else:  # start the round here: no turn of the loop to wake a flusher first
            self._dirty[id(handle)] = handle
            self._awake = True  # if a round is in flight, its end starts the next
            self._pump()
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

    def _collect(self) -> tuple[list[tuple[Journaled, Batch]], dict[int, StoredParts]]:
        """Take every dirty handle's batch; settle the waiters of those with none.

        Returns the (handle, batch) pairs and, by ``id(batch)``, the snapshot parts
        stored once each batch lands.
        """
        handles = list(self._dirty.values())
        self._dirty.clear()
        work: list[tuple[Journaled, Batch]] = []
        parted: dict[int, StoredParts] = {}
        for h in handles:
            taken = self._take(h)
            if taken is not None:
                batch, parts = taken
                work.append((h, batch))
                if parts is not None:
                    parted[id(batch)] = parts
            elif h.journal.waiters:
                h.journal.settle()
        return work, parted

    def _refused(self, work: list[tuple[Journaled, Batch]], exc: BaseException) -> None:
        """The store failed the round: keep everything queued for the next try."""
        self._last_error = exc
        for h, _ in work:
            self._dirty[id(h)] = h

    def _landed(
        self,
        work: list[tuple[Journaled, Batch]],
        parted: dict[int, StoredParts],
        results: list[CallstateError | None],
        t0: float,
    ) -> bool:
        """The round is durable: settle its waiters, fence refused handles, and queue
        again the handles that recorded more meanwhile (then True)."""
        more = False
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
                more = True
        return more

    @staticmethod
    def _miscounted(results: list[CallstateError | None], work: list[Any]) -> StorageError | None:
        if len(results) == len(work):
            return None
        msg = f"store returned {len(results)} results for {len(work)} batches"
        return StorageError(msg)

    async def _run(self) -> None:
        """The rounds of a coroutine store: one task, one ``append`` at a time."""
        backoff = _FIRST_BACKOFF
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._awake = False
            work, parted = self._collect()
            if not work:
                continue
            t0 = time.perf_counter()
            try:
                results = await self._store.append([b for _, b in work])
                miscounted = self._miscounted(results, work)
                if miscounted is not None:
                    raise miscounted
            except Exception as exc:  # the store is down: keep everything queued
                # any failure, typed or not, must not kill the one task all sessions share
                self._refused(work, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _LAST_BACKOFF)
                self._kick()
                continue
            backoff = _FIRST_BACKOFF
            if self._landed(work, parted, results, t0):
                self._kick()

    # -- a direct store: rounds as callbacks, no task ----------------------------------

    def _pump(self) -> None:
        """Start a round of a direct store unless one is in flight or backing off (its
        end starts the next if anything asked meanwhile). The store's thread answers
        through a callback on the loop: no task to wake, none to resume."""
        if self._pump_soon is not None:  # this pump does its work: the loop skips that one
            self._pump_soon.cancel()  # (between a flush's submit and the loop's wait for
            self._pump_soon = None  # the thread, where every step delays the thread)
        soon = self._soon
        if soon is None or self._in_flight or self._retry is not None or not self._running:
            return
        self._awake = False
        work, parted = self._collect()
        if not work:
            return
        self._in_flight = True
        t0 = time.perf_counter()

        def done(ok: bool, value: Any) -> None:
            self._in_flight = False
            error = value if not ok else self._miscounted(value, work)
            if error is not None:  # the store is down: keep everything queued
                self._refused(work, error)
                self._retry = asyncio.get_running_loop().call_later(self._backoff, self._retried)
                self._backoff = min(self._backoff * 2, _LAST_BACKOFF)
                return
            self._backoff = _FIRST_BACKOFF
            if self._landed(work, parted, value, t0) or self._awake:
                self._pump()

        try:
            soon([b for _, b in work], done)
        except Exception as exc:  # e.g. the store is closed: like a failed round
            done(False, exc)

    def _retried(self) -> None:
        self._retry = None
        self._pump()
