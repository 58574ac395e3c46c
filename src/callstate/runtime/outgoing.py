"""One live handle's outgoing journal: the events not yet durable, and who waits for them.

The group-commit flusher (``flusher.py``) drains it into the store and settles its
waiters; the handle appends to it as it records.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ..errors import CallstateError
from ..journal.snapshot import StoredParts

if TYPE_CHECKING:
    from ..journal.events import Event
    from ..storage.base import PackageRow

__all__ = ["Outgoing"]


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
