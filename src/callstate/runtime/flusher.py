"""The group-commit flusher: one background task commits queued events of all sessions."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import msgspec

from ..errors import CodecError, StorageError
from ..journal.events import encode_event
from ..journal.snapshot import encode_snapshot
from ..storage.base import Batch, Store

if TYPE_CHECKING:
    from ..session import Session

__all__ = ["Flusher"]


class Flusher:
    """Collects dirty sessions and appends all their queued events in one store call.

    A transient store failure is retried with backoff; ``wait_durable`` gives up with
    ``StorageError`` after ``timeout`` seconds, leaving the events queued for later.
    """

    def __init__(self, store: Store, *, snapshot_every: int = 100, timeout: float = 10.0) -> None:
        self._store = store
        #: a session's ``_package`` rides with its next batch, in the same transaction
        self.carries_packages = bool(getattr(store, "atomic_packages", False))
        self._snapshot_every = snapshot_every
        self._timeout = timeout
        self._dirty: dict[int, Session] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_error: BaseException | None = None
        self.rounds = 0
        self.events_written = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="callstate-flusher"
            )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def mark(self, session: Session) -> None:
        """Note that ``session`` has queued events (hot path: no I/O, no awaits)."""
        self._dirty[id(session)] = session
        if not self._wake.is_set():
            self._wake.set()

    async def wait_durable(self, session: Session, seq: int) -> None:
        """Return once ``session``'s events up to ``seq`` are durable."""
        if session._durable_seq >= seq:
            return
        if self._task is None:
            msg = "the keeper is not running; use `async with keeper:` or `await keeper.open()`"
            raise StorageError(msg)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        session._waiters.append((seq, fut))
        self.mark(session)
        try:
            await asyncio.wait_for(asyncio.shield(fut), self._timeout)
        except TimeoutError:
            # the events stay queued and land when the store recovers; only this wait ends
            fut.cancel()
            session._waiters = [(s, f) for s, f in session._waiters if f is not fut]
            msg = (
                f"session {session.id!r}: events up to seq {seq} not durable after "
                f"{self._timeout:.1f}s; the store is failing ({self._last_error!r})"
            )
            raise StorageError(msg) from self._last_error

    def _take(self, session: Session) -> Batch | None:
        pending = session._pending
        if not pending:
            return None
        state = session.state
        try:
            encoded = [encode_event(e) for e in pending]
        except CodecError as exc:  # a value was mutated into something unencodable
            session._fence(exc)
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
            batch.package = session._package
        # pending always ends at state.seq, so the snapshot matches the batch's end
        if state.seq - session._snapshot_seq >= self._snapshot_every:
            try:
                batch.snapshot = encode_snapshot(state)
                batch.snapshot_seq = state.seq
            except (TypeError, ValueError, msgspec.EncodeError):
                pass  # state changed behind the journal's back; the events still land
        return batch

    async def _run(self) -> None:
        backoff = 0.005
        while True:
            await self._wake.wait()
            self._wake.clear()
            sessions = list(self._dirty.values())
            self._dirty.clear()
            work: list[tuple[Session, Batch]] = []
            for s in sessions:
                batch = self._take(s)
                if batch is not None:
                    work.append((s, batch))
                elif s._waiters:
                    self._settle(s)
            if not work:
                continue
            try:
                results = await self._store.append([b for _, b in work])
                if len(results) != len(work):
                    msg = f"store returned {len(results)} results for {len(work)} batches"
                    raise StorageError(msg)
            except Exception as exc:  # the store is down: keep everything queued
                # any failure, typed or not, must not kill the one task all sessions share
                self._last_error = exc
                for s, _ in work:
                    self._dirty[id(s)] = s
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
                self._wake.set()
                continue
            backoff = 0.005
            self._last_error = None
            self.rounds += 1
            for (s, batch), error in zip(work, results, strict=True):
                if error is not None:
                    s._fence(error)
                    continue
                del s._pending[: len(batch.events)]
                s._durable_seq = batch.last_seq
                if batch.package is not None and s._package is batch.package:
                    s._package = None  # stored
                if batch.snapshot is not None:
                    s._snapshot_seq = batch.snapshot_seq
                self.events_written += len(batch.events)
                self._settle(s)
                if s._pending:
                    self._dirty[id(s)] = s
                    self._wake.set()

    @staticmethod
    def _settle(session: Session) -> None:
        still = []
        for seq, fut in session._waiters:
            if fut.done():
                continue
            if session._durable_seq >= seq:
                fut.set_result(None)
            else:
                still.append((seq, fut))
        session._waiters = still
