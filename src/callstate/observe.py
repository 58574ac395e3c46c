"""RecoveryEvent: one typed record per recovery decision, fanned out to sinks.

Sinks are plain callables taking a ``RecoveryEvent``. They run on one loop, off the
call path; a sink that raises is isolated and counted, never raised into a call.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, Literal

import msgspec

__all__ = ["RecoveryEvent", "RecoveryKind", "Sink", "Observer"]

RecoveryKind = Literal[
    "interrupt.reconciled",
    "result.held",
    "result.delivered",
    "result.discarded",
    "result.announced",
    "result.compensated",
    "tool.in_doubt",
    "tool.rerun",
    "tool.deduplicated",
    "tool.cancelled",
    "link.lost",
    "link.restored",
    "outbox.dropped",
    "session.resumed",
    "session.expired",
    "session.stale",
    "handoff.offered",
    "handoff.accepted",
    "handoff.reclaimed",
    "followup.run",
    "followup.cancelled",
]


class RecoveryEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One recovery decision: what happened, to which session, and how long it took."""

    kind: RecoveryKind
    session_id: str
    at: float
    call_id: str | None = None
    latency_ms: float | None = None
    data: dict[str, Any] = {}


Sink = Callable[[RecoveryEvent], Any]


class Observer:
    """Queues recovery events and runs sinks from one background task."""

    def __init__(self) -> None:
        self.sinks: list[Sink] = []
        self.sink_errors = 0
        self.counts: dict[str, int] = {}
        self._queue: asyncio.Queue[RecoveryEvent] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def emit(self, event: RecoveryEvent) -> None:
        """Count and queue ``event``; never blocks, never raises."""
        self.counts[event.kind] = self.counts.get(event.kind, 0) + 1
        self._queue.put_nowait(event)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="callstate-observer")

    async def stop(self) -> None:
        if self._task is None:
            return
        await self.drain()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def drain(self) -> None:
        """Wait until every queued event has been given to every sink."""
        if self._task is not None:
            await self._queue.join()

    async def _run(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                for sink in list(self.sinks):
                    try:
                        result = sink(event)
                        if asyncio.iscoroutine(result):
                            await result
                    except Exception:  # a failing sink is isolated and counted
                        self.sink_errors += 1
            finally:
                self._queue.task_done()
